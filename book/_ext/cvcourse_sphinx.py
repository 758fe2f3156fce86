"""Small Sphinx fixes for the cvcourse book (registered in _config.yml, local_extensions)."""

import os
import re
import shutil
import time
from pathlib import Path
from queue import Empty

from docutils import nodes

# Read by cvcourse.widgets.static in the notebook's kernel (which inherits this process's
# environment): where the widgets of the page being built write their precomputed frames.
FRAMES_ENV, URL_ENV = "CVCOURSE_WIDGET_FRAMES", "CVCOURSE_WIDGET_URL"
FRAMES_DIR = "_widgets"


def widget_frames_for_page(app, docname, source):
    """Before a page is read (and its notebook executed), point the static widgets at a
    fresh folder of the HTML output for this page: ``_widgets/<docname>/``."""
    if app.builder.format != "html":
        os.environ.pop(FRAMES_ENV, None)
        return
    folder = Path(app.outdir) / FRAMES_DIR / docname
    shutil.rmtree(folder, ignore_errors=True)  # no stale frames from an earlier build
    os.environ[FRAMES_ENV] = str(folder)
    os.environ[URL_ENV] = "../" * docname.count("/") + f"{FRAMES_DIR}/{docname}/"


# Longest single wait of the notebook client on one socket (seconds); see `wake_up_client`.
WAKEUP_S = 1.0


def _key(js):
    attributes = getattr(js, "attributes", None) or {}
    # inline scripts come with filename None or '': the same script either way
    filename = (js.filename if hasattr(js, "filename") else str(js)) or ""
    return (filename, getattr(js, "priority", 500),
            tuple(sorted((k, str(v)) for k, v in attributes.items())))


def dedupe_scripts(app, pagename, templatename, context, doctree):
    """Sphinx 7.4 writes inline scripts that extensions add twice on some pages (seen with
    sphinx-thebe: `const THEBE_JS_URL = ...` declared twice is a JavaScript error). Keep
    the first of identical script entries."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for js in scripts:
        key = _key(js)
        if key not in seen:
            seen.add(key)
            kept.append(js)
    context["script_files"] = kept


# Python's default repr, "<Figure size 800x300 with 1 Axes>" or "<... object at 0x...>":
# no description of the image, so not an alt text.
DEFAULT_REPR = re.compile(r"<[^<>]*>")


def _is_mime_bundle(node) -> bool:
    return isinstance(node, nodes.container) and node.get("nb_element") == "mime_bundle"


def image_alt_from_text(app, doctree) -> None:
    """Give a notebook's image output the alt text its ``text/plain`` carries.

    myst-nb puts every mime type of a cell output in one bundle (a later post-transform keeps
    the one the builder prefers) but never reads an alt text from the output. A figure
    whose ``repr`` describes it (`cvcourse.diagrams.Diagram`: its alt text) is stored by
    Jupyter as an ``image/png`` with that ``text/plain``; this copies the text into the
    image's ``alt``, unless the image has one or the text is Python's default ``<...>`` repr.
    Connected to ``doctree-read``, so the cached doctree keeps it.
    """
    for bundle in list(doctree.findall(_is_mime_bundle)):
        by_type = {child.get("mime_type"): child for child in bundle.children}
        plain = by_type.get("text/plain")
        text = " ".join(plain.astext().split()) if plain is not None else ""
        if not text or DEFAULT_REPR.fullmatch(text):
            continue
        for mime_type, child in by_type.items():
            if (mime_type or "").startswith("image/"):
                for image in child.findall(nodes.image):
                    image.setdefault("alt", text)


def wake_up_client():
    """Make nbclient's waits for kernel messages re-check their socket every `WAKEUP_S`.

    The stall this fixes: a cell that displays an ipywidgets Output widget (every widget of
    the book: `interactive_output`) makes nbclient's Output-widget mimic send a comm
    "update" on the shell socket (`nbclient.output_widget.OutputWidget.sync_state`) while
    the same client awaits the cell's `execute_reply` on that socket (`socket.poll(timeout)`,
    pyzmq asyncio, woken by an edge-triggered file descriptor). When the reply lands during
    the send, the send consumes the wake-up: the reply sits unread, kernel and client both
    idle, until the poll's timeout, when pyzmq's final check finds it and the cell "passes"
    exactly `timeout` seconds late (240 s in the book build, 600 s in the benchmark; the
    kernel's version does not matter). jupyter/nbclient#312 reports the same; ipykernel
    7's server-side twin was fixed in ipykernel#1529. Polling in slices of `WAKEUP_S` ends
    each slice with that final check, so a stranded reply is read within a second; a
    message that really does not come still times out at the caller's deadline.
    Idempotent; a no-op if jupyter_client has no `AsyncZMQSocketChannel`.
    """
    try:
        from jupyter_client.channels import AsyncZMQSocketChannel
    except ImportError:
        return
    original = AsyncZMQSocketChannel.get_msg
    if getattr(original, "cvcourse_sliced", False):
        return

    async def get_msg(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WAKEUP_S if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await original(self, min(WAKEUP_S, left))
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    get_msg.cvcourse_sliced = True
    get_msg.__wrapped__ = original
    get_msg.__doc__ = original.__doc__
    AsyncZMQSocketChannel.get_msg = get_msg


def setup(app):
    wake_up_client()  # the build executes the notebooks in this process (myst-nb, nbclient)
    app.connect("html-page-context", dedupe_scripts, priority=900)
    app.connect("source-read", widget_frames_for_page)
    app.connect("doctree-read", image_alt_from_text)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
