"""Widgets that work in the published book, with no kernel.

In Jupyter and Colab a widget is live: every change of a control calls its figure function.
The published book has no kernel, so when the book is built each widget also renders its
figure for a grid of control values and the page gets plain HTML controls (``<input
type="range">``, ``<select>``, a checkbox) and an ``<img>`` that switches to the matching
precomputed frame. Frames are PNG files beside the page, loaded only when shown.

The book build (``book/_ext/cvcourse_sphinx.py``) turns this on for each page by setting two
environment variables that the notebook's kernel inherits:

- ``CVCOURSE_WIDGET_FRAMES``: the folder the frames of this page are written to;
- ``CVCOURSE_WIDGET_URL``: the same folder as a URL relative to the page.

Which values are precomputed is declared beside each widget (`interactive_figure`'s `grid`):
a list of values per control; a control left out of `grid` keeps its initial value and is
shown disabled. Without a declaration, every control gets its own values, thinned evenly
until the grid has at most `MAX_FRAMES` settings.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

MAX_FRAMES = 48  # default cap on one widget's precomputed settings
FRAMES_ENV, URL_ENV = "CVCOURSE_WIDGET_FRAMES", "CVCOURSE_WIDGET_URL"


def static_mode() -> bool:
    """True while the book build executes a notebook (the build sets `FRAMES_ENV`)."""
    return bool(os.environ.get(FRAMES_ENV))


@dataclass
class Axis:
    """One control of a static widget: its name, label, kind and the values precomputed."""

    name: str
    label: str
    kind: str  # "range", "select" or "checkbox"
    values: list  # what the figure function receives
    labels: list[str]  # what the reader sees for each value
    initial: int  # index of the control's initial value in `values`
    enabled: bool = True  # False: held at its initial value in the static version


def _label(value, fmt: str | None = None) -> str:
    if fmt and isinstance(value, float):
        return format(value, fmt)
    return str(value)


def _slider_values(control) -> list:
    """Every value an Int/FloatSlider can take (min, min + step, ..., max)."""
    lo, hi, step = control.min, control.max, control.step or 1
    n = int(math.floor((hi - lo) / step + 1e-9)) + 1
    values = [lo + i * step for i in range(n)]
    if isinstance(control.value, float) or isinstance(step, float):
        digits = max(0, -int(math.floor(math.log10(step)))) + 2 if step else 6
        values = [round(v, digits) for v in values]
    return values


def evenly(values: Sequence, keep: int, include=None) -> list:
    """`keep` values spread evenly over `values` (the first and the last among them), with
    `include` (e.g. the control's initial value) in place of the pick nearest to it.

    Args:
        values: the values to choose from, in order.
        keep: how many to keep (all of them if `keep` >= their number).
        include: a value of `values` that must be kept; None: nothing extra.

    Returns:
        the kept values, in the order of `values`.
    """
    values = list(values)
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    if keep >= len(values):
        return values
    if keep == 1:
        picks = [values.index(include) if include is not None else 0]
    else:
        picks = sorted({round(i * (len(values) - 1) / (keep - 1)) for i in range(keep)})
    if include is not None and values.index(include) not in picks:
        j = values.index(include)
        inner = picks[1:-1] if len(picks) > 2 else picks  # keep the ends when there is a choice
        nearest = min(inner, key=lambda p: abs(p - j))
        picks = sorted(set(picks) - {nearest} | {j})
    return [values[i] for i in picks]


def axes_of(controls: Mapping[str, object], grid: Mapping[str, Sequence] | None = None,
            max_frames: int = MAX_FRAMES) -> tuple[list[Axis], dict]:
    """The static controls of a widget and the values held fixed.

    Args:
        controls: ``{argument name: ipywidgets control or W.fixed(value)}``, as given to
            `interactive_figure`.
        grid: ``{argument name: values to precompute}`` for some controls; the others keep
            their initial value (shown disabled). None: every control, thinned evenly until
            the grid has at most `max_frames` settings.
        max_frames: the cap used when `grid` is None.

    Returns:
        ``(axes, fixed)``: one `Axis` per control shown, and ``{name: value}`` of the
        ``W.fixed`` arguments.
    """
    import ipywidgets as W

    if grid is not None:
        names = [n for n, c in controls.items() if not isinstance(c, W.fixed)]
        unknown = set(grid) - set(names)
        if unknown:
            raise ValueError(f"grid names {sorted(unknown)}, which are not controls of this widget "
                             f"(controls: {sorted(names)})")
    axes, fixed = [], {}
    for name, c in controls.items():
        if isinstance(c, W.fixed):
            fixed[name] = c.value
            continue
        label = getattr(c, "description", "") or name
        if isinstance(c, W.Checkbox):
            kind, values, labels = "checkbox", [False, True], ["off", "on"]
        elif hasattr(c, "_options_values"):  # Dropdown, ToggleButtons, Select...
            kind, values, labels = "select", list(c._options_values), [str(x) for x in c._options_labels]
        elif isinstance(c, (W.IntSlider, W.FloatSlider)):
            fmt = getattr(c, "readout_format", None) if isinstance(c, W.FloatSlider) else None
            kind, values = "range", _slider_values(c)
            labels = [_label(v, fmt) for v in values]
        else:
            raise TypeError(f"control {name!r}: a static widget supports sliders, dropdowns, toggle "
                            f"buttons and checkboxes, got {type(c).__name__}")
        initial = _index_of(values, c.value, name)
        enabled = grid is None or name in grid
        if grid is not None and name in grid:
            order = sorted({_index_of(values, v, name) for v in grid[name]} | {initial})
            values, labels, initial = [values[i] for i in order], [labels[i] for i in order], order.index(initial)
        elif grid is not None:
            values, labels, initial = [values[initial]], [labels[initial]], 0
        axes.append(Axis(name, label, kind, values, labels, initial, enabled))
    if grid is None:
        _fit(axes, max_frames)
    return axes, fixed


def _index_of(values: list, value, name: str) -> int:
    for i, v in enumerate(values):
        if v == value or (isinstance(v, float) and isinstance(value, (int, float)) and abs(v - value) < 1e-9):
            return i
    raise ValueError(f"grid value {value!r} for control {name!r} is not one the control can take "
                     f"({values[0]!r} ... {values[-1]!r})")


def _fit(axes: list[Axis], max_frames: int) -> None:
    """Thin the axes evenly until the product of their lengths is at most `max_frames`: first
    choose how many values each axis keeps (one less for the longest, until the product fits),
    then pick that many from each axis's full list with `evenly`, its initial value kept."""
    counts = [len(a.values) for a in axes]
    while math.prod(counts) > max_frames:
        k = max(range(len(counts)), key=lambda k: counts[k])
        if counts[k] <= 2:
            raise ValueError(f"cannot fit the widget's controls in {max_frames} frames; declare a grid")
        counts[k] -= 1
    for a, n in zip(axes, counts):
        if n == len(a.values):
            continue
        idx = evenly(range(len(a.values)), n, a.initial)  # indices into the full list
        a.values, a.labels = [a.values[i] for i in idx], [a.labels[i] for i in idx]
        a.initial = idx.index(a.initial)


def render_frames(figure_fn: Callable, axes: list[Axis], fixed: dict, folder: Path) -> dict:
    """Render ``figure_fn`` for every setting of the grid into PNG files under `folder`.

    Files are named by the hash of their bytes, so settings that draw the same figure share
    one file. Returns ``{"files": [name per setting, in row-major order of the axes],
    "seconds": rendering time, "bytes": total size of the distinct files}``.
    """
    import matplotlib.pyplot as plt

    from . import render_png

    folder.mkdir(parents=True, exist_ok=True)
    files, written, t = [], {}, time.perf_counter()
    for setting in itertools.product(*(a.values for a in axes)):
        fig = figure_fn(**fixed, **{a.name: v for a, v in zip(axes, setting)})
        png = render_png(fig)
        plt.close(fig)
        name = hashlib.sha1(png).hexdigest()[:16] + ".png"
        if name not in written:
            (folder / name).write_bytes(png)
            written[name] = len(png)
        files.append(name)
    return {"files": files, "seconds": time.perf_counter() - t, "bytes": sum(written.values())}


_SCRIPT = """(function () {
  var root = document.currentScript.parentElement;
  var dims = JSON.parse(root.dataset.dims), files = JSON.parse(root.dataset.files);
  var img = root.querySelector('img.cvc-frame'), base = root.dataset.base;
  var controls = root.querySelectorAll('[data-axis]');
  function show() {
    var i = 0;
    controls.forEach(function (c) {
      var k = c.type === 'checkbox' ? (c.checked ? 1 : 0) : parseInt(c.value, 10);
      i = i * dims[+c.dataset.axis] + k;
      var out = c.parentElement.querySelector('output');
      if (out) { out.textContent = JSON.parse(c.dataset.labels)[k]; }
    });
    img.src = base + files[i];
    img.dataset.index = i;
  }
  controls.forEach(function (c) { c.addEventListener('input', show); c.addEventListener('change', show); });
})();"""


def _control_html(i: int, a: Axis) -> str:
    label = html.escape(a.label)
    disabled = "" if a.enabled else " disabled"
    labels = html.escape(json.dumps(a.labels), quote=True)
    if a.kind == "checkbox" and len(a.values) == 2:
        checked = " checked" if a.initial == 1 else ""
        return (f'<label class="cvc-control"><input type="checkbox" data-axis="{i}" data-labels="{labels}"'
                f'{checked}{disabled}> {label}</label>')
    if a.kind == "select" or (a.kind == "checkbox"):
        options = "".join(f'<option value="{k}"{" selected" if k == a.initial else ""}>{html.escape(s)}</option>'
                          for k, s in enumerate(a.labels))
        return (f'<label class="cvc-control">{label} <select data-axis="{i}" data-labels="{labels}"{disabled}>'
                f'{options}</select></label>')
    return (f'<label class="cvc-control">{label} <input type="range" min="0" max="{len(a.values) - 1}" '
            f'step="1" value="{a.initial}" data-axis="{i}" data-labels="{labels}"{disabled}> '
            f'<output>{html.escape(a.labels[a.initial])}</output></label>')


def caption(axes: list[Axis], controls: Mapping[str, object]) -> str:
    """What the static version precomputes, in one sentence for the reader."""
    n = math.prod(len(a.values) for a in axes)
    parts = []
    for a in axes:
        if not a.enabled:
            continue
        c = controls[a.name]
        full = len(_slider_values(c)) if a.kind == "range" else len(a.values)
        if len(a.values) < full:
            parts.append(f"{a.label}: {len(a.values)} of {full} values")
    held = [a.label for a in axes if not a.enabled]
    text = f"Precomputed for {n} setting{'s' if n != 1 else ''}"
    if parts:
        text += " (" + "; ".join(parts) + ")"
    if held:
        text += "; " + ", ".join(held) + (" is" if len(held) == 1 else " are") + " fixed here"
    return text + ". Any setting runs live in Colab."


class StaticFigure:
    """The static version of `interactive_figure`: HTML controls over precomputed frames.

    Displayed as HTML (``_repr_html_``). Keeps ``figure_fn``, ``controls``, ``axes`` and
    ``frames`` for tests.
    """

    def __init__(self, figure_fn: Callable, controls: Mapping[str, object],
                 grid: Mapping[str, Sequence] | None = None, folder: str | Path | None = None,
                 url: str | None = None, max_frames: int = MAX_FRAMES):
        self.figure_fn, self.controls = figure_fn, dict(controls)
        self.axes, self.fixed = axes_of(controls, grid, max_frames)
        folder = Path(folder or os.environ[FRAMES_ENV])
        self.url = url if url is not None else os.environ.get(URL_ENV, folder.as_posix() + "/")
        self.frames = render_frames(figure_fn, self.axes, self.fixed, folder)
        self.caption = caption(self.axes, self.controls)
        self.last_seconds = None
        _record(folder, figure_fn, self)

    def initial_index(self) -> int:
        i = 0
        for a in self.axes:
            i = i * len(a.values) + a.initial
        return i

    def _repr_html_(self) -> str:
        dims = [len(a.values) for a in self.axes]
        controls = "".join(_control_html(i, a) for i, a in enumerate(self.axes))
        files = self.frames["files"]
        src = html.escape(self.url + files[self.initial_index()], quote=True)
        alt = html.escape(f"Figure of {getattr(self.figure_fn, '__name__', 'the widget')} for the chosen settings")
        return (f'<div class="cvc-static-widget" data-dims="{html.escape(json.dumps(dims))}" '
                f'data-files="{html.escape(json.dumps(files))}" data-base="{html.escape(self.url, quote=True)}">'
                f'<div class="cvc-controls" style="display:flex;flex-wrap:wrap;gap:0.4em 1.2em">{controls}</div>'
                f'<img class="cvc-frame" src="{src}" alt="{alt}" data-index="{self.initial_index()}" '
                f'style="max-width:100%">'
                f'<p class="cvc-caption" style="font-size:0.85em">{html.escape(self.caption)}</p>'
                f'<script>{_SCRIPT}</script></div>')

    def __repr__(self) -> str:
        return f"StaticFigure({getattr(self.figure_fn, '__name__', '?')}, {len(self.frames['files'])} frames)"


def _record(folder: Path, figure_fn: Callable, w: StaticFigure) -> None:
    """Append this widget's frame count, size and time to ``folder/widgets.json`` (read by
    the benchmark)."""
    path = folder / "widgets.json"
    rows = json.loads(path.read_text()) if path.exists() else []
    rows.append({"figure": getattr(figure_fn, "__qualname__", str(figure_fn)),
                 "settings": len(w.frames["files"]), "files": len(set(w.frames["files"])),
                 "bytes": w.frames["bytes"], "seconds": round(w.frames["seconds"], 3),
                 "axes": {a.name: len(a.values) for a in w.axes}})
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, path)
