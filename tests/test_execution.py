"""The book executes without stalls: no cell waits on an idle kernel, and a stall fails fast.

Builds sat for minutes with an idle kernel and an idle client after widget cells: nbclient
missed the wake-up of a reply that arrived while it sent an Output-widget update on the
same socket, and read the reply only at the cell's timeout (the whole story is in
`book/_ext/cvcourse_sphinx.py`, `wake_up_client`). These tests check the fix on a fake
socket, then execute `book/tasks.ipynb` (the widget chapter where it was seen) through
nbclient as the book build does, and read nbclient's recorded timestamps: every request
must be picked up by the kernel, and every finished cell's last message must reach the
client, within seconds. They run under each installed kernel (the current ipykernel, and
Colab's pins when `.ci/colab_env.sh` registered them).
"""

import asyncio
import datetime as dt
import sys
import time
from pathlib import Path
from queue import Empty

import nbformat
import pytest
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
sys.path.insert(0, str(BOOK / "_ext"))
import cvcourse_sphinx  # noqa: E402  (the book's Sphinx extension: it applies the fix in the build)

cvcourse_sphinx.wake_up_client()
# A stall lasted minutes; a busy 2-core machine delays a message by well under a second.
IDLE_LIMIT_S = 20.0
KERNELS = [k for k in ("python3", "cvcourse-colab") if k in KernelSpecManager().find_kernel_specs()]


def book_timeout() -> int:
    """The per-cell timeout of the book build (`_config.yml`), used by nbval too (conftest)."""
    return int(yaml.safe_load((ROOT / "_config.yml").read_text())["execute"]["timeout"])


def _seconds(stamp: str) -> float:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def execute_with_waits(path: Path, kernel: str) -> tuple[NotebookClient, list[dict]]:
    """Execute `path` with nbclient; per code cell: how long the kernel took to pick up the
    request (``pickup``) and the client to receive the end of the cell (``delivery``)."""
    nb = nbformat.read(path, as_version=4)
    sent, received = {}, {}
    client = NotebookClient(
        nb, kernel_name=kernel, timeout=book_timeout(), startup_timeout=60,
        iopub_timeout=10, raise_on_iopub_timeout=True,  # lost outputs fail, never pass silently
        record_timing=True, resources={"metadata": {"path": str(path.parent)}},
        on_cell_execute=lambda cell, cell_index: sent.__setitem__(cell_index, time.time()),
        on_cell_executed=lambda cell, cell_index, execute_reply: received.__setitem__(cell_index, time.time()))
    client.execute()
    waits = []
    for i, cell in enumerate(nb.cells):
        if i not in sent:
            continue
        e = cell.metadata["execution"]
        waits.append({"cell": i, "source": cell.source.splitlines()[0],
                      "pickup": _seconds(e["iopub.status.busy"]) - sent[i],
                      "run": _seconds(e["iopub.status.idle"]) - _seconds(e["iopub.status.busy"]),
                      "delivery": received[i] - _seconds(e["iopub.status.idle"])})
    return client, waits


class StrandedSocket:
    """A shell socket whose reply is there but whose wake-up was lost: `poll(t)` reports it
    only when its timeout expires (pyzmq's final check), or at once for `poll(0)`."""

    def __init__(self, ready_after_polls=None):
        self.timeouts_ms, self.ready_after_polls = [], ready_after_polls

    async def poll(self, timeout_ms):
        self.timeouts_ms.append(timeout_ms)
        await asyncio.sleep(0)
        if self.ready_after_polls is None:
            return 0                                       # nothing will ever come
        return int(len(self.timeouts_ms) > self.ready_after_polls)


def _channel(socket):
    from jupyter_client.channels import AsyncZMQSocketChannel

    channel = AsyncZMQSocketChannel.__new__(AsyncZMQSocketChannel)
    channel.socket = socket

    async def recv():
        return {"msg_type": "execute_reply"}
    channel._recv = recv
    return channel


def test_a_stranded_reply_is_read_within_one_wakeup():
    """With the fix, a 240 s wait polls in slices of at most WAKEUP_S: the reply that the
    first poll missed is read by the next slice's final check, not at the 240 s deadline."""
    socket = StrandedSocket(ready_after_polls=1)
    msg = asyncio.run(_channel(socket).get_msg(timeout=240))
    assert msg == {"msg_type": "execute_reply"}
    assert len(socket.timeouts_ms) == 2
    assert max(socket.timeouts_ms) <= cvcourse_sphinx.WAKEUP_S * 1000
    socket = StrandedSocket(ready_after_polls=3)     # iopub waits without a timeout too
    asyncio.run(_channel(socket).get_msg(timeout=None))
    assert socket.timeouts_ms == [int(cvcourse_sphinx.WAKEUP_S * 1000)] * 4


def test_a_message_that_never_comes_still_times_out(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(cvcourse_sphinx.time, "monotonic", lambda: now[0])
    socket = StrandedSocket()

    async def poll(timeout_ms):                      # each poll waits its whole slice
        socket.timeouts_ms.append(timeout_ms)
        now[0] += timeout_ms / 1000
        return 0
    socket.poll = poll
    with pytest.raises(Empty):
        asyncio.run(_channel(socket).get_msg(timeout=2.5))
    assert socket.timeouts_ms == [1000, 1000, 500] and now[0] == 2.5


def test_the_book_build_applies_the_fix():
    from jupyter_client.channels import AsyncZMQSocketChannel

    class App:
        def connect(self, *args, **kwargs):
            pass
    cvcourse_sphinx.setup(App())
    cvcourse_sphinx.wake_up_client()                 # idempotent: one wrapper, not two
    assert AsyncZMQSocketChannel.get_msg.cvcourse_sliced
    assert not getattr(AsyncZMQSocketChannel.get_msg.__wrapped__, "cvcourse_sliced", False)


def test_book_timeout_is_set_and_fails_fast():
    """A stalled cell must fail within minutes (nbclient and nbval default to none / 2000 s)."""
    assert 60 <= book_timeout() <= 300, book_timeout()


def test_nbval_uses_the_book_timeout(pytestconfig):
    """conftest gives nbval the book's per-cell timeout instead of its 2000 s default."""
    if not hasattr(pytestconfig.option, "nbval_cell_timeout"):
        pytest.skip("nbval is not installed")
    assert int(pytestconfig.option.nbval_cell_timeout) == book_timeout()


@pytest.mark.parametrize("kernel", KERNELS)
def test_widget_chapter_never_waits_on_an_idle_kernel(kernel):
    client, waits = execute_with_waits(BOOK / "tasks.ipynb", kernel)
    assert len(waits) >= 10
    widget = [w for w in waits if w["source"].startswith("tasks_widget(")]
    assert len(widget) == 1, "the chapter's widget cell is the case that stalled"
    slow = [w for w in waits if w["pickup"] > IDLE_LIMIT_S or w["delivery"] > IDLE_LIMIT_S]
    assert not slow, f"cells waited on an idle kernel or client ({kernel}): {slow}"
    assert all(w["run"] >= 0 and w["pickup"] > -1 for w in waits), waits  # one clock, sane order
    # the widget's comm messages reached the client and were kept for the static page
    assert client.widget_state, "no widget state recorded: comm messages were lost"
