"""The static widgets of the published book (cvcourse.widgets.static): the grid, the frames,
the HTML controls, and the Sphinx hook that points each page at its frames folder."""

import ast
import hashlib
import importlib.util
import itertools
import json
import os
import re
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as W
import matplotlib.pyplot as plt
import pytest

from cvcourse.widgets import interactive_figure, render_png, static
from cvcourse.widgets.static import FRAMES_ENV, URL_ENV, StaticFigure, axes_of, evenly

ROOT = Path(__file__).resolve().parents[1]


def tiny_figure(a, b, flag=False, text="x"):
    """A cheap figure whose pixels depend on every argument."""
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, a], [0, b], "r-" if flag else "b-")
    ax.set_title(text, fontsize=6)
    return fig


def tiny_controls():
    return {
        "a": W.IntSlider(value=2, min=0, max=4, description="a"),
        "b": W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.25, description="b value"),
        "flag": W.Checkbox(value=False, description="flag"),
        "text": W.fixed("t"),
    }


@pytest.fixture
def static_env(tmp_path, monkeypatch):
    folder = tmp_path / "_widgets" / "book" / "page"
    monkeypatch.setenv(FRAMES_ENV, str(folder))
    monkeypatch.setenv(URL_ENV, "../_widgets/book/page/")
    return folder


def test_frames_are_the_grid_product_in_row_major_order(static_env):
    from cvcourse.widgets.upsampling import upsampling_figure

    grid = {"scale": [2, 3], "seed": [0, 5, 9]}
    w = interactive_figure(upsampling_figure, {
        "scale": W.IntSlider(value=2, min=2, max=4), "seed": W.IntSlider(value=0, min=0, max=20)}, grid=grid)
    assert isinstance(w, StaticFigure)
    files = w.frames["files"]
    assert len(files) == 6
    for name, (scale, seed) in zip(files, itertools.product(grid["scale"], grid["seed"])):
        png = render_png(upsampling_figure(scale=scale, seed=seed))
        assert (static_env / name).read_bytes() == png, (scale, seed)
        assert name == hashlib.sha1(png).hexdigest()[:16] + ".png"
    assert len(set(files)) == 6  # every setting draws a different figure
    assert w.initial_index() == 0


def test_fixed_arguments_and_held_controls_reach_the_figure(static_env):
    w = StaticFigure(tiny_figure, tiny_controls(), grid={"b": [0.0, 1.0]})
    a, b, flag = w.axes
    assert (a.values, a.enabled, b.values, b.enabled, flag.values, flag.enabled) == (
        [2], False, [0.0, 0.5, 1.0], True, [False], False)  # the initial 0.5 is kept
    for name, bv in zip(w.frames["files"], b.values):
        assert (static_env / name).read_bytes() == render_png(tiny_figure(2, bv, False, "t"))
    assert w.initial_index() == 1


def test_default_thinning_is_even_and_keeps_the_initial_value():
    axes, _ = axes_of({"scene": W.IntSlider(value=0, min=0, max=199),
                       "task": W.Dropdown(options=list("abcde"), value="c")}, max_frames=30)
    scene, task = axes
    assert len(scene.values) * len(task.values) <= 30
    assert task.values == list("abcde") and task.initial == 2
    assert scene.values == [0, 40, 80, 119, 159, 199] and scene.initial == 0
    gaps = [y - x for x, y in zip(scene.values, scene.values[1:])]
    assert max(gaps) - min(gaps) <= 1, gaps
    axes, _ = axes_of({"scene": W.IntSlider(value=57, min=0, max=199)}, max_frames=6)
    assert axes[0].values == [0, 57, 80, 119, 159, 199] and axes[0].values[axes[0].initial] == 57


def test_evenly():
    assert evenly(range(11), 3) == [0, 5, 10]
    assert evenly(range(11), 3, include=7) == [0, 7, 10]
    assert evenly(range(11), 20) == list(range(11))
    assert evenly(range(10), 4, include=4) == [0, 4, 6, 9]
    with pytest.raises(ValueError, match="keep"):
        evenly(range(3), 0)


def test_grid_values_outside_a_control_are_rejected_by_name():
    with pytest.raises(ValueError, match="'b'"):
        axes_of(tiny_controls(), grid={"b": [0.3]})
    with pytest.raises(ValueError, match="'a'"):
        axes_of(tiny_controls(), grid={"a": [5]})
    with pytest.raises(ValueError, match="'a'"):  # checked live too, not only in the book build
        interactive_figure(tiny_figure, tiny_controls(), grid={"a": [7]})


def test_unknown_grid_names_are_rejected():
    with pytest.raises(ValueError, match=r"\['c'\]"):
        axes_of(tiny_controls(), grid={"c": [1]})
    with pytest.raises(ValueError, match="text"):  # a W.fixed argument is no control
        axes_of(tiny_controls(), grid={"text": ["t"]})


def test_caption_says_what_is_precomputed(static_env):
    w = StaticFigure(tiny_figure, tiny_controls(), grid={"a": [0, 4], "flag": [False, True]})
    assert w.caption == ("Precomputed for 6 settings (a: 3 of 5 values); b value is fixed here. "
                         "Any setting runs live in Colab.")
    w = StaticFigure(tiny_figure, tiny_controls(), grid={"b": [0.0, 0.25, 0.5, 0.75, 1.0]})
    assert w.caption == "Precomputed for 5 settings; a, flag are fixed here. Any setting runs live in Colab."


def test_html_has_one_control_per_axis_and_marks_held_ones(static_env):
    w = StaticFigure(tiny_figure, tiny_controls(), grid={"a": [0, 4], "flag": [False, True]})
    page = w._repr_html_()
    controls = re.findall(r"<(input|select)[^>]*data-axis=\"(\d)\"[^>]*>", page)
    assert [(tag, int(i)) for tag, i in controls] == [("input", 0), ("input", 1), ("input", 2)]
    tags = re.findall(r"<(?:input|select)[^>]*data-axis[^>]*>", page)
    assert 'type="range"' in tags[0] and "disabled" not in tags[0] and 'max="2"' in tags[0]
    assert 'value="1"' in tags[0]  # the initial 2 is the middle of [0, 2, 4]
    assert 'type="range"' in tags[1] and "disabled" in tags[1] and 'max="0"' in tags[1]
    assert 'type="checkbox"' in tags[2] and "disabled" not in tags[2] and "checked" not in tags[2]
    dims = json.loads(re.search(r'data-dims="([^"]*)"', page).group(1).replace("&quot;", '"'))
    assert dims == [3, 1, 2]
    files = json.loads(re.search(r'data-files="([^"]*)"', page).group(1).replace("&quot;", '"'))
    assert files == w.frames["files"]
    src = re.search(r'<img class="cvc-frame" src="([^"]*)"', page).group(1)
    assert src == "../_widgets/book/page/" + files[w.initial_index()]
    assert page.count("<img") == 1  # only the first frame is loaded with the page
    select = StaticFigure(lambda task: tiny_figure(1, 1, text=task),
                          {"task": W.Dropdown(options=["all", "boxes"], value="boxes")})._repr_html_()
    assert re.search(r'<select data-axis="0"[^>]*><option value="0">all</option>'
                     r'<option value="1" selected>boxes</option></select>', select), select


def test_live_widget_without_the_build(monkeypatch):
    monkeypatch.delenv(FRAMES_ENV, raising=False)
    assert not static.static_mode()
    w = interactive_figure(tiny_figure, tiny_controls(), grid={"a": [0, 4]})
    assert isinstance(w, W.VBox) and w.figure_fn is tiny_figure


def test_widgets_json_records_each_widget(static_env):
    w1 = StaticFigure(tiny_figure, tiny_controls(), grid={"a": [0, 4]})
    w2 = StaticFigure(tiny_figure, tiny_controls(), grid={"flag": [False, True]})
    rows = json.loads((static_env / "widgets.json").read_text())
    assert [r["settings"] for r in rows] == [3, 2]
    assert rows[0]["axes"] == {"a": 3, "b": 1, "flag": 1}
    for r, w in zip(rows, (w1, w2)):
        assert r["files"] == len(set(w.frames["files"]))
        assert r["bytes"] == w.frames["bytes"] == sum(
            (static_env / f).stat().st_size for f in set(w.frames["files"]))
        assert r["seconds"] > 0 and r["figure"] == "tiny_figure"
    # the initial settings of both widgets draw the same figure: one file, shared
    assert w1.frames["files"][1] == w2.frames["files"][0]


def _sphinx_ext():
    spec = importlib.util.spec_from_file_location("cvcourse_sphinx", ROOT / "book/_ext/cvcourse_sphinx.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sphinx_points_each_page_at_a_fresh_frames_folder(tmp_path, monkeypatch):
    ext = _sphinx_ext()
    monkeypatch.delenv(FRAMES_ENV, raising=False)
    monkeypatch.delenv(URL_ENV, raising=False)
    app = SimpleNamespace(builder=SimpleNamespace(format="html"), outdir=str(tmp_path / "html"))
    stale = tmp_path / "html" / "_widgets" / "book" / "tasks" / "old.png"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    ext.widget_frames_for_page(app, "book/tasks", [""])
    assert os.environ[FRAMES_ENV] == str(tmp_path / "html" / "_widgets" / "book" / "tasks")
    assert os.environ[URL_ENV] == "../_widgets/book/tasks/"
    assert not stale.exists()
    ext.widget_frames_for_page(app, "index", [""])
    assert os.environ[URL_ENV] == "_widgets/index/"
    ext.widget_frames_for_page(SimpleNamespace(builder=SimpleNamespace(format="latex"), outdir="x"), "a", [""])
    assert FRAMES_ENV not in os.environ


def test_every_widget_declares_its_grid():
    calls = []
    for path in sorted((ROOT / "cvcourse" / "widgets").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "interactive_figure":
                calls.append((path.name, node.lineno, {k.arg for k in node.keywords}))
    assert len(calls) >= 14, calls  # 12 widget pages, two of them with two widgets
    missing = [(name, line) for name, line, kw in calls if "grid" not in kw]
    assert not missing, f"interactive_figure calls without grid=: {missing}"
