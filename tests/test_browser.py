"""The built book in a real browser (headless Chromium), offline.

The book is built once per run (``jupyter-book build . -W -n --keep-going`` into a
pytest temporary folder, every notebook executed), served on 127.0.0.1, and every page is
opened with every request to another host blocked. Each page must show no JavaScript
error and no failed request, decode every image, typeset its math with the vendored
MathJax without error, and its widgets must respond: the book's widgets are static
(``cvcourse.widgets.static``: HTML controls over precomputed frames), and moving each
control must show the frame precomputed for the new setting. Live ipywidgets, if a page
saved any, are drawn with the vendored ipywidgets HTML manager. Screenshots of a few pages
are saved to ``_build/screenshots/``. `test_static_widget_html_responds` checks the static
widgets' JavaScript on a generated page, without the book build.

Needs Chromium (``apt-get install chromium``), the ``playwright`` package (it drives the
system Chromium; no browser download) and the JavaScript fetched by ``.ci/fetch_js.sh``
(run here; it does nothing when up to date). Without Chromium or Playwright the tests skip, unless
``CVCOURSE_REQUIRE_BROWSER=1`` (set by ``.ci/run``): then that is a failure.
``CVCOURSE_BOOK_HTML=path/to/_build/html`` tests an existing build instead of building;
``CVCOURSE_CHROMIUM=/path/to/chromium`` picks the browser.
"""

import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from book_toc import TOC, toc_files

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = os.environ.get("CVCOURSE_REQUIRE_BROWSER") == "1"
SCREENSHOTS = ROOT / "_build" / "screenshots"
SCREENSHOT_PAGES = ("book/intro", "book/tasks", "book/glossary")
# The only vendored files a page may load with a <script> tag; the rest of MathJax is
# loaded lazily by MathJax itself (a top-level _static/ folder would add them all).
VENDOR_ENTRY_POINTS = {
    "mathjax/tex-mml-chtml.js",
    "requirejs/require.js",
    "html-manager/embed-amd.js",
}
MATHJAX_VERSION = "3.2.2"  # the version .ci/fetch_js.sh vendors
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SLIDER_MODELS = re.compile(r"(Int|Float|FloatLog|Selection)(Range)?SliderModel$")
TIMES = {}


# Every page of the build: the index redirect, the table of contents, and Sphinx's pages.
PAGES = [
    "index",
    TOC["root"],
    *[f for f in toc_files() if f != TOC["root"]],
    "genindex",
    "search",
]


def _diagram_calls():
    """{page: [function, ...]}: the `cvcourse.diagrams` functions each chapter's cells call."""
    calls = {}
    for name in PAGES:
        path = ROOT / f"{name}.ipynb"
        if path.exists():
            cells = json.loads(path.read_text())["cells"]
            code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
            found = re.findall(r"\bdiagrams\.(\w+)\(\)", code)
            if found:
                calls[name] = found
    return calls


DIAGRAMS = _diagram_calls()


def _unavailable(reason):
    if REQUIRED:
        pytest.fail(
            f"{reason} (CVCOURSE_REQUIRE_BROWSER=1: the browser tests must run)", pytrace=False
        )
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium():
    exe = os.environ.get("CVCOURSE_CHROMIUM") or next(
        filter(None, map(shutil.which, ["chromium", "chromium-browser", "google-chrome"])), None
    )
    if not exe:
        _unavailable("no Chromium found (apt-get install chromium, or set CVCOURSE_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -r requirements.txt)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def start_book_build(out):
    """Start ``jupyter-book build . -W -n --keep-going`` into `out` in the background.

    Returns ``(process, log_path, start_time)``. conftest.py starts it as soon as the
    browser tests are collected, so the build (which executes every notebook) runs beside
    the unit tests and nbval, one torch thread each, and the browser tests run last.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jb = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", ".", "-W", "-n", "--keep-going",
           "--path-output", str(out)]
    log = out / "build.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    proc.args_text = " ".join(cmd)
    return proc, log, time.perf_counter()


def fetch_js():
    """Run .ci/fetch_js.sh (does nothing when up to date); the error text, or None."""
    fetch = subprocess.run(["bash", ".ci/fetch_js.sh"], cwd=ROOT, capture_output=True, text=True)
    return fetch.stderr[-2000:] if fetch.returncode else None


@pytest.fixture(scope="module")
def book_html(chromium, tmp_path_factory, request):
    """The built HTML folder: the build conftest.py started in the background, else built
    here (vendored JavaScript fetched first), unless CVCOURSE_BOOK_HTML names one."""
    if os.environ.get("CVCOURSE_BOOK_HTML"):
        return Path(os.environ["CVCOURSE_BOOK_HTML"]).resolve()
    started = getattr(request.config, "_cvcourse_book_build", None)
    if started is None:
        error = fetch_js()
        if error:
            _unavailable(f".ci/fetch_js.sh could not fetch the book's JavaScript:\n{error}")
        out = tmp_path_factory.mktemp("book")
        started = (*start_book_build(out), out)
    elif isinstance(started, str):  # the fetch failed when conftest tried
        _unavailable(f".ci/fetch_js.sh could not fetch the book's JavaScript:\n{started}")
    proc, log, t0, out = started
    try:
        proc.wait(timeout=1800)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"{proc.args_text} ran past 30 minutes", pytrace=False)
    TIMES["build"] = time.perf_counter() - t0
    if proc.returncode:
        pytest.fail(
            f"{proc.args_text} failed (exit {proc.returncode}):\n{log.read_text()[-6000:]}",
            pytrace=False,
        )
    return out / "_build" / "html"


@pytest.fixture(scope="module")
def base_url(book_html):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(book_html))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()


# What a page shows once loaded: read in the page after math and widgets are done.
_INSPECT = """() => {
  const shown = el => { const r = el.getBoundingClientRect(), s = getComputedStyle(el);
                        return r.width > 0 && r.height > 0 && s.visibility !== 'hidden'; };
  const all = sel => [...document.querySelectorAll(sel)];
  const state = all('script[type="application/vnd.jupyter.widget-state+json"]')
      .flatMap(t => Object.values(JSON.parse(t.textContent).state));
  return {
    url: location.href,
    brokenImages: all('img').filter(i => !(i.complete && i.naturalWidth > 0))
                            .map(i => i.currentSrc || i.src || i.outerHTML.slice(0, 120)),
    imageAlts: all('img').map(i => i.getAttribute('alt')),
    math: all('.math').length,
    mathUntypeset: all('.math').filter(e => !e.querySelector('mjx-container'))
                               .map(e => e.textContent.slice(0, 80)),
    mjxContainers: all('mjx-container').length,
    mathErrors: [...new Set(all('mjx-merror, [data-mjx-error]')
        .map(e => e.getAttribute('data-mjx-error') || e.textContent.slice(0, 80)))],
    mathjaxVersion: (window.MathJax && window.MathJax.version) || null,
    widgetViews: all('script[type="application/vnd.jupyter.widget-view+json"]').length,
    widgetsShown: all('.widget-subarea').filter(e => e.firstElementChild && shown(e.firstElementChild)).length,
    widgetErrors: all('.widget-subarea').filter(e => /error displaying widget/i.test(e.textContent)).length,
    models: state.map(m => m.model_name),
    outputImagesSaved: state.filter(m => m.model_name === 'OutputModel')
        .flatMap(m => m.state.outputs || []).filter(o => o.data && o.data['image/png']).length,
    slidersShown: all('.widget-subarea .widget-slider').filter(shown).length,
    dropdownsShown: all('.widget-subarea .widget-dropdown select').filter(shown).length,
    outputImagesShown: all('.widget-subarea .widget-output img')
        .filter(i => shown(i) && i.naturalWidth > 0).length,
    staticWidgets: all('.cvc-static-widget').length,
    staticFramesShown: all('.cvc-static-widget img.cvc-frame')
        .filter(i => shown(i) && i.naturalWidth > 0).length,
    staticRangesShown: all('.cvc-static-widget input[type=range]').filter(shown).length,
    staticSelectsShown: all('.cvc-static-widget select').filter(shown).length,
  };
}"""


# Moves every enabled control of every static widget once (to its last value, or to its
# first when already there) and reports what the widget shows after each move.
STATIC_PROBE = """async () => {
  const out = [];
  for (const root of document.querySelectorAll('.cvc-static-widget')) {
    const img = root.querySelector('img.cvc-frame');
    const controls = [...root.querySelectorAll('[data-axis]')];
    const value = c => c.type === 'checkbox' ? (c.checked ? 1 : 0) : parseInt(c.value, 10);
    const w = {dims: JSON.parse(root.dataset.dims), files: JSON.parse(root.dataset.files),
               base: root.dataset.base, page: location.href, initialSrc: img.src,
               axes: controls.map(c => +c.dataset.axis), disabled: controls.map(c => c.disabled),
               moves: []};
    for (const c of controls) {
      if (c.disabled) continue;
      const n = w.dims[+c.dataset.axis], now = value(c), next = now === n - 1 ? 0 : n - 1;
      const t = performance.now();
      if (c.type === 'checkbox') {
        c.click();  // fires input and change itself
      } else {
        c.value = String(next);
        c.dispatchEvent(new Event('input', {bubbles: true}));
        c.dispatchEvent(new Event('change', {bubbles: true}));
      }
      let decoded = true;
      try { await img.decode(); } catch (e) { decoded = false; }
      w.moves.push({axis: +c.dataset.axis, values: controls.map(value), src: img.src,
                    naturalWidth: img.naturalWidth, decoded: decoded, ms: performance.now() - t});
    }
    out.push(w);
  }
  return out;
}"""


def static_widget_problems(widgets):
    """What went wrong in STATIC_PROBE's report: a control missing or out of order, a move
    that shows another frame than the row-major index of the controls' values says, or a
    frame that does not decode."""
    from urllib.parse import urljoin

    problems = []
    for k, w in enumerate(widgets):
        dims, files = w["dims"], w["files"]
        if w["axes"] != list(range(len(dims))):
            problems.append(f"widget {k}: controls for axes {w['axes']}, expected one per axis of {dims}")
        if len(files) != _prod(dims):
            problems.append(f"widget {k}: {len(files)} frames for a grid of {dims}")
        enabled = [n for n, off in zip(dims, w["disabled"]) if not off]
        if len(w["moves"]) != len(enabled) or not any(n > 1 for n in enabled):
            problems.append(f"widget {k}: {len(w['moves'])} controls moved, dims {dims}, disabled {w['disabled']}")
        for m in w["moves"]:
            index = 0
            for n, v in zip(dims, m["values"]):
                index = index * n + v
            want = urljoin(w["page"], w["base"] + files[index])
            if m["src"] != want:
                problems.append(f"widget {k}, axis {m['axis']} moved to {m['values']}: shows {m['src']}, "
                                f"expected frame {index} {want}")
            if not (m["decoded"] and m["naturalWidth"] > 0):
                problems.append(f"widget {k}, axis {m['axis']}: frame {m['src']} did not decode")
    return problems


def _prod(values):
    out = 1
    for v in values:
        out *= v
    return out


def _soft(problems, what, wait):
    """Run a wait; a timeout becomes a reported problem, so the page is still inspected."""
    try:
        wait()
    except Exception as e:  # playwright's TimeoutError and errors raised inside the page
        problems.append(f"{what}: {type(e).__name__}: {str(e).splitlines()[0]}")


def _open(page, url, name, problems):
    """Load the page, wait for its images, math and widgets, and return _INSPECT's facts."""
    page.goto(url, wait_until="load", timeout=60_000)
    if name == "index":  # a redirect to the first page
        _soft(
            problems,
            "index.html did not redirect to the first page",
            lambda: page.wait_for_url(
                url.replace("index.html", f"{TOC['root']}.html"), timeout=20_000
            ),
        )
    _soft(
        problems,
        "the network never went idle",
        lambda: page.wait_for_load_state("networkidle", timeout=30_000),
    )
    page.evaluate(
        "() => document.querySelectorAll('img[loading=lazy]').forEach(i => i.loading = 'eager')"
    )
    _soft(
        problems,
        "images still loading after 20 s",
        lambda: page.wait_for_function(
            "() => [...document.images].every(i => i.complete)", timeout=20_000
        ),
    )
    def typeset():
        page.wait_for_function(
            "() => window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=20_000
        )
        page.evaluate("() => MathJax.startup.promise.then(() => true)")  # awaits the typesetting

    if page.locator(".math").count():
        _soft(problems, "MathJax did not load or typeset", typeset)
    views = page.locator('script[type="application/vnd.jupyter.widget-view+json"]').count()
    if views:  # embed-amd.js draws each view into a .widget-subarea before its <script>
        _soft(
            problems,
            "widgets not drawn in 20 s",
            lambda: page.wait_for_function(
                "n => document.querySelectorAll('.widget-subarea > *').length >= n"
                " && [...document.querySelectorAll('.widget-subarea img')].every(i => i.complete)",
                arg=views,
                timeout=20_000,
            ),
        )
    _soft(
        problems,
        "the network never went idle",
        lambda: page.wait_for_load_state("networkidle", timeout=30_000),
    )
    facts = page.evaluate(_INSPECT)
    facts["screenshots"] = []
    if name in SCREENSHOT_PAGES:
        shot = SCREENSHOTS / f"{Path(name).name}.png"
        page.screenshot(path=str(shot), full_page=True)
        facts["screenshots"].append(shot)
        for selector, shown in ((".cvc-static-widget", facts["staticFramesShown"]),
                                (".widget-subarea", facts["widgetsShown"])):
            if shown:
                shot = SCREENSHOTS / f"{Path(name).name}-widget.png"
                page.locator(selector).first.screenshot(path=str(shot))
                facts["screenshots"].append(shot)
                break
    if facts["staticWidgets"]:
        facts["staticMoves"] = page.evaluate(STATIC_PROBE)
    return facts


@pytest.fixture(scope="module")
def visit(chromium, base_url):
    """visit(name) -> (problems, facts): opens the page once (cached) and records what went
    wrong; facts is None when the page could not be loaded at all."""
    cache = {}
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()

    def run(name):
        if name in cache:
            return cache[name]
        t = time.perf_counter()
        problems, external = [], []
        context = chromium.new_context(viewport={"width": 1280, "height": 900})

        def route(r):
            if r.request.url.startswith(base_url):
                r.continue_()
            else:  # offline: nothing may leave 127.0.0.1
                external.append(r.request.url)
                r.abort("blockedbyclient")

        context.route("**/*", route)
        page = context.new_page()
        page.on("pageerror", lambda e: problems.append(f"JavaScript exception: {e}"))
        page.on(
            "console",
            lambda m: (
                m.type == "error"
                and problems.append(
                    f"console error: {m.text} ({m.location.get('url')}:{m.location.get('lineNumber')})"
                )
            ),
        )
        page.on(
            "requestfailed",
            lambda r: (
                r.url.startswith(base_url)
                and problems.append(f"request failed: {r.url} ({r.failure})")
            ),
        )
        page.on(
            "response",
            lambda r: (
                r.status >= 400
                and not r.url.endswith("/favicon.ico")
                and problems.append(f"HTTP {r.status}: {r.url}")
            ),
        )
        try:
            facts = _open(page, f"{base_url}{name}.html", name, problems)
        except Exception as e:
            problems.append(f"{base_url}{name}.html could not be loaded: {type(e).__name__}: {e}")
            facts = None
        finally:
            context.close()
        problems += [f"request to another host (offline, blocked): {u}" for u in external]
        TIMES[name] = time.perf_counter() - t
        cache[name] = (problems, facts)
        return cache[name]

    return run


def test_every_page_of_the_table_of_contents_was_built(book_html):
    built = {
        str(p.relative_to(book_html).with_suffix(""))
        for p in book_html.rglob("*.html")
        if p.relative_to(book_html).parts[0] not in ("_static", "_sources", "_images", "reports")
    }
    assert built == set(PAGES), f"pages built {sorted(built)}, pages tested {PAGES}"


@pytest.mark.parametrize("name", PAGES)
def test_page_works_offline(visit, book_html, name):
    problems, facts = visit(name)
    assert facts is not None, "\n".join(problems)
    if facts["math"]:
        if facts["mathjaxVersion"] != MATHJAX_VERSION:
            problems.append(
                f"MathJax {facts['mathjaxVersion']} loaded, expected the vendored {MATHJAX_VERSION}"
            )
        problems += [f"math not typeset: {m}" for m in facts["mathUntypeset"]]
    problems += [f"MathJax error: {m}" for m in facts["mathErrors"]]
    problems += [f"image not loaded: {src}" for src in facts["brokenImages"]]
    scripts = re.findall(r'<script[^>]*\ssrc="([^"]*)"', (book_html / f"{name}.html").read_text())
    vendored = {
        re.sub(r"^.*_static/vendor/|\?.*$", "", s) for s in scripts if "_static/vendor/" in s
    }
    if vendored - VENDOR_ENTRY_POINTS:
        problems.append(
            f"<script> tags for vendored files that are not entry points: {sorted(vendored - VENDOR_ENTRY_POINTS)}"
        )
    problems += [f"a <script> from another host: {s}" for s in scripts if "://" in s]
    if facts["widgetViews"]:
        if facts["widgetsShown"] < facts["widgetViews"] or facts["widgetErrors"]:
            problems.append(
                f"{facts['widgetViews']} widgets saved, {facts['widgetsShown']} drawn, "
                f"{facts['widgetErrors']} drawn as errors"
            )
        if any(SLIDER_MODELS.search(m) for m in facts["models"]) and not facts["slidersShown"]:
            problems.append("the widgets have a slider but none is visible")
        if "DropdownModel" in facts["models"] and not facts["dropdownsShown"]:
            problems.append("the widgets have a dropdown but none is visible")
        if facts["outputImagesSaved"] and not facts["outputImagesShown"]:
            problems.append("the widget output holds a figure but no image is visible in it")
    if facts["staticWidgets"] and facts["staticFramesShown"] < facts["staticWidgets"]:
        problems.append(f"{facts['staticWidgets']} static widgets, {facts['staticFramesShown']} frames shown")
    assert not problems, f"{facts['url']}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", PAGES)
def test_static_widgets_respond(visit, name):
    """Every control of every widget moves the figure to the frame precomputed for it (no
    console error and no request leaving 127.0.0.1 while it does: the page's problems)."""
    problems, facts = visit(name)
    assert facts is not None, "\n".join(problems)
    moves = facts.get("staticMoves", [])
    assert len(moves) == facts["staticWidgets"]
    problems = problems + static_widget_problems(moves)
    assert not problems, f"{facts['url']}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_diagrams_have_their_alt_text(visit, name):
    """Each architecture diagram's <img> has the diagram's own alt text (`Diagram.cvcourse_alt`,
    computed here again), which the book's Sphinx extension takes from the output's text/plain."""
    from cvcourse import diagrams

    problems, facts = visit(name)
    assert facts is not None, "\n".join(problems)
    alts = [" ".join((a or "").split()) for a in facts["imageAlts"]]
    for function in DIAGRAMS[name]:
        alt = " ".join(diagrams.alt_text(getattr(diagrams, function)()).split())
        assert alt.startswith("Diagram: ") and alt in alts, \
            f"{facts['url']}: no <img> with the alt text of diagrams.{function}() ({alt[:80]}...); alts: {alts}"


def test_checks_are_not_vacuous(visit):
    """The intro has inline math and the tasks chapter a static widget (a slider and a
    dropdown): both must be rendered, and moving the controls must change the frame."""
    _, intro = visit("book/intro")
    _, tasks = visit("book/tasks")
    assert intro and tasks, "see test_page_works_offline"
    assert intro["math"] >= 3 and intro["mjxContainers"] >= intro["math"], intro
    assert tasks["staticWidgets"] >= 1 and tasks["staticFramesShown"] >= tasks["staticWidgets"], tasks
    assert tasks["staticRangesShown"] >= 1 and tasks["staticSelectsShown"] >= 1, tasks
    moved = [m for w in tasks["staticMoves"] for m in w["moves"]]
    assert len(moved) >= 2 and len({m["src"] for m in moved}) >= 2, tasks["staticMoves"]


def test_screenshots_are_saved(visit, capsys):
    shots = [s for name in SCREENSHOT_PAGES for s in (visit(name)[1] or {}).get("screenshots", [])]
    assert len(shots) > len(SCREENSHOT_PAGES), shots  # every page, and the tasks widget
    for s in shots:
        assert s.stat().st_size > 10_000, s
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in TIMES.items())
    with capsys.disabled():
        print(
            f"\nbrowser test: {timing}\nscreenshots: "
            + " ".join(str(s.relative_to(ROOT)) for s in shots)
        )
