"""The book executes without stalls: no cell waits on an idle kernel, and a stall fails fast.

Builds have sat for minutes with an idle kernel and an idle client, once right after the
widget cell of `book/tasks.ipynb`. This test executes that chapter through nbclient, as the
book build does, with the book's per-cell timeout, and reads nbclient's recorded
timestamps: every request must be picked up by the kernel, and every finished cell's
last message must reach the client, within seconds. It runs under each installed kernel
(the current ipykernel, and Colab's pins when `.ci/colab_env.sh` registered them).
"""

import datetime as dt
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
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
