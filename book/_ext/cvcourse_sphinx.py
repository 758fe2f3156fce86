"""Small Sphinx fixes for the cvcourse book (registered in _config.yml, local_extensions)."""

import os
import shutil
from pathlib import Path

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


def setup(app):
    app.connect("html-page-context", dedupe_scripts, priority=900)
    app.connect("source-read", widget_frames_for_page)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
