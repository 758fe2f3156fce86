"""The static widgets' JavaScript in headless Chromium, offline, without the book build:
a page generated from `StaticFigure`s (a slider, a dropdown, a checkbox and a held control)
laid out like the book (the page in ``book/``, its frames in ``_widgets/book/page/``) is
served on 127.0.0.1; every control is moved and must show the frame precomputed for the
controls' values. Skips like tests/test_browser.py without Chromium or Playwright."""

import functools
import http.server
import threading

import ipywidgets as W
import matplotlib.pyplot as plt
import pytest
from test_browser import STATIC_PROBE, chromium, static_widget_problems  # noqa: F401 (fixture)

from cvcourse.widgets.static import StaticFigure


def figure(a, b, flag, text, task):
    fig, ax = plt.subplots(figsize=(1.2, 1.2))
    ax.plot([0, a], [0, b], "r-" if flag else "b-")
    ax.set_title(f"{task} {text}", fontsize=6)
    return fig


def controls():
    return {
        "a": W.IntSlider(value=1, min=0, max=3, description="a"),
        "b": W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.25, description="b"),
        "flag": W.Checkbox(value=True, description="flag"),
        "task": W.Dropdown(options=["all", "boxes", "masks"], value="boxes", description="task"),
        "text": W.fixed("t"),
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    frames, url = root / "_widgets" / "book" / "page", "../_widgets/book/page/"
    widgets = [StaticFigure(figure, controls(), grid={"a": [0, 1, 3], "flag": [False, True],
                                                      "task": ["all", "boxes", "masks"]},
                            folder=frames, url=url),
               StaticFigure(figure, controls(), grid={"b": [0.0, 0.5, 1.0]}, folder=frames, url=url)]
    (root / "book").mkdir()
    (root / "book" / "page.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>static widgets</title></head><body>"
        + "".join(w._repr_html_() for w in widgets) + "</body></html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", widgets
    server.shutdown()
    server.server_close()


def test_static_widget_html_responds(chromium, site):  # noqa: F811
    base, widgets = site
    problems, external, requested = [], [], []
    context = chromium.new_context()

    def route(r):
        if r.request.url.startswith(base):
            requested.append(r.request.url)
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort("blockedbyclient")

    context.route("**/*", route)
    page = context.new_page()
    page.on("pageerror", lambda e: problems.append(f"JavaScript exception: {e}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    try:
        page.goto(base + "book/page.html", wait_until="load")
        page.wait_for_function("() => [...document.images].every(i => i.complete && i.naturalWidth > 0)",
                               timeout=10_000)
        loaded = [u for u in requested if u.endswith(".png")]
        report = page.evaluate(STATIC_PROBE)
        labels = page.evaluate("() => [...document.querySelectorAll('.cvc-static-widget output')]"
                               ".map(o => o.textContent)")
    finally:
        context.close()
    assert not problems and not external, problems + external
    # only each widget's first frame is loaded with the page
    assert sorted(loaded) == sorted({base + "_widgets/book/page/" + w.frames["files"][w.initial_index()]
                                     for w in widgets})
    assert [w["dims"] for w in report] == [[3, 1, 2, 3], [1, 3, 1, 1]]
    assert [len(w["moves"]) for w in report] == [3, 1]
    assert static_widget_problems(report) == []
    # the moves reach the expected settings: a to its last value, flag off, task to its last
    assert report[0]["moves"][-1]["values"] == [2, 0, 0, 2]
    assert report[1]["moves"][0]["values"] == [0, 2, 0, 0]
    assert len({m["src"] for w in report for m in w["moves"]}) == 4
    assert labels == ["3", "0.50", "1", "1.00"]  # a slider's readout follows it (FloatSlider: .2f)
