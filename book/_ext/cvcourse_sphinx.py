"""Small Sphinx fixes for the cvcourse book (registered in _config.yml, local_extensions)."""


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
    return {"parallel_read_safe": True, "parallel_write_safe": True}
