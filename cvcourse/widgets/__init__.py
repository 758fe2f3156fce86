"""Widgets: controls wired to the pure figure functions of each chapter.

Every widget in the course is `interactive_figure(figure_fn, controls)`: changing a
control calls ``figure_fn(**values)`` — the same function the chapter calls for its static
figure and the tests call directly — and shows the Figure it returns, rendered by
`render_png`. One module per chapter holds that chapter's figure functions and widgets.

When the book is built, the same call returns the static version instead
(`cvcourse.widgets.static`): plain HTML controls over frames precomputed for the widget's
`grid`, so the published pages respond with no kernel.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping, Sequence
from typing import Callable

WIDGET_DPI = 100  # the resolution of the chapters' static figures (matplotlib's default)


def check_setting(name: str, value, low=None, high=None, integer: bool = False,
                  open_high: bool = False) -> None:
    """Raise a ValueError unless `value` is a number (an int if `integer`) in [low, high].

    A figure function rejects a setting outside its range instead of wrapping or clipping
    it, so a figure never shows something other than what was asked for.

    Args:
        name: the argument's name, for the message.
        value: the setting.
        low, high: the allowed range (None: unbounded on that side).
        integer: require an int (bools are refused).
        open_high: exclude `high` itself.
    """
    kind = "an int" if integer else "a number"
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    ok = ok and value == value and (low is None or value >= low) and (
        high is None or (value < high if open_high else value <= high))
    if not ok:
        span = f" in [{low}, {high}{')' if open_high else ']'}" if low is not None and high is not None \
            else f" >= {low}" if low is not None else f" <= {high}" if high is not None else ""
        raise ValueError(f"{name} must be {kind}{span}, got {value!r}")


def render_png(fig, dpi: int = WIDGET_DPI) -> bytes:
    """The PNG a widget shows for `fig`: the whole figure at `dpi`, zlib level 1.

    A widget renders its figure itself rather than through the notebook's inline display,
    which adds a second drawing pass (``bbox_inches="tight"``) and zlib level 6: together
    about a third of a redraw, for files 10-20 % smaller.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def interactive_figure(figure_fn: Callable, controls: Mapping[str, object], columns: int = 4,
                       grid: Mapping[str, Sequence] | None = None):
    """Controls above an output area that shows ``figure_fn(**control values)``.

    Args:
        figure_fn: returns a matplotlib Figure for keyword arguments named like `controls`.
        controls: ``{argument name: ipywidgets control}``.
        columns: controls per row.
        grid: the settings the published book precomputes: ``{argument name: values}``;
            controls left out keep their initial value there. None: every control, thinned
            evenly to at most ``static.MAX_FRAMES`` settings. Used only by the book build.

    Returns:
        an ``ipywidgets.VBox``; its ``.figure_fn`` and ``.controls`` are kept for tests and
        ``.last_seconds`` holds how long the latest redraw took. While the book is built
        (``static.static_mode()``): a `static.StaticFigure` for the same controls.
    """
    import ipywidgets as W
    from IPython.display import Image, display

    from . import static

    if not controls:
        raise ValueError("controls must name at least one control")
    if static.static_mode():
        return static.StaticFigure(figure_fn, controls, grid)
    if grid is not None:
        static.axes_of(controls, grid)  # a grid the book build would reject fails here too
    box = None

    def draw(**values):
        t = time.perf_counter()
        display(Image(data=render_png(figure_fn(**values)), format="png"))
        if box is not None:
            box.last_seconds = time.perf_counter() - t

    out = W.interactive_output(draw, dict(controls))
    items = [c for c in controls.values() if isinstance(c, W.DOMWidget)]  # not W.fixed
    rows = [W.HBox(items[i:i + columns]) for i in range(0, len(items), columns)]
    box = W.VBox([*rows, out])
    box.figure_fn, box.controls, box.last_seconds = figure_fn, dict(controls), None
    return box


def time_figure(figure_fn: Callable, settings: list[dict], repeat: int = 1) -> list[float]:
    """Seconds taken by ``render_png(figure_fn(**s))`` for each setting `s`: what a widget
    does on each change, the callback latency the benchmark reports."""
    times = []
    for s in settings:
        for _ in range(repeat):
            t = time.perf_counter()
            render_png(figure_fn(**s))
            times.append(time.perf_counter() - t)
    return times
