import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")


NBVAL_DEFAULT_CELL_TIMEOUT = 2000  # nbval's own default, in seconds


def pytest_configure(config):
    """nbval waits 2000 s for a cell unless told: a stalled kernel would hold the test run
    for half an hour before failing. Unless `--nbval-cell-timeout` is given, use the book
    build's per-cell timeout (`_config.yml`, `execute.timeout`), so a stall fails within
    minutes, naming the cell ("Timeout of N seconds exceeded executing cell"), and never
    retries."""
    if getattr(config.option, "nbval_cell_timeout", None) == NBVAL_DEFAULT_CELL_TIMEOUT:
        import yaml

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with open(os.path.join(root, "_config.yml")) as f:
            config.option.nbval_cell_timeout = int(yaml.safe_load(f)["execute"]["timeout"])


def pytest_collection_modifyitems(session, config, items):
    _browser_last(config, items)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread, and far faster on a shared, busy CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _browser_last(config, items):
    """Run the browser tests last, and start their book build now in the background.

    The build executes every notebook, as nbval does; started right after collection it
    overlaps the unit tests and nbval instead of following them (one torch thread each
    on a 2-core machine). Without Chromium or with CVCOURSE_BOOK_HTML nothing starts here.
    """
    browser = [it for it in items if it.nodeid.startswith("tests/test_browser.py")]
    if not browser:
        return
    items[:] = [it for it in items if it not in browser] + browser
    import shutil

    if os.environ.get("CVCOURSE_BOOK_HTML") or not (
        os.environ.get("CVCOURSE_CHROMIUM") or shutil.which("chromium")
        or shutil.which("chromium-browser") or shutil.which("google-chrome")
    ):
        return
    module = browser[0].module
    error = module.fetch_js()
    if error:
        config._cvcourse_book_build = error
        return
    out = config._tmp_path_factory.mktemp("book")
    config._cvcourse_book_build = (*module.start_book_build(out), out)
    # nbval's kernels start after this and inherit it: two processes, one thread each.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def pytest_unconfigure(config):
    started = getattr(config, "_cvcourse_book_build", None)
    if isinstance(started, tuple) and started[0].poll() is None:
        started[0].kill()  # the run was interrupted before the browser tests
