"""Chapter "In-network upsampling": figures and widgets for the four upsampling methods.

- `upsampling_figure` / `upsampling_widget`: nearest, bed of nails, max unpooling and a
  transposed convolution on the same small input, each checked against PyTorch.
- `conv_transpose_figure` / `conv_transpose_widget`: a transposed convolution one input
  position at a time — each scattered, weighted copy of the filter and the running sum.
- `checkerboard_figure`: a constant map upsampled by transposed convolutions and by
  resize-then-convolve; `checkerboard_scores` measures the periodic pattern.

Drawing helpers shared by the segmentation chapters: `annotated_grid` (small value grids
with the values written in the cells) and `panel_strip` (several panels side by side in one
Axes, which redraws several times faster than one Axes per panel).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .. import viz
from ..ops.upsample import (
    bed_of_nails,
    bilinear_padding,
    bilinear_upsample_weight,
    conv_transpose2d,
    max_pool2d_with_indices,
    max_unpool2d,
    nearest_upsample,
)
from . import check_setting

__all__ = [
    "annotated_grid", "panel_strip", "message_figure", "conv_transpose_figure", "conv_transpose_widget",
    "upsampling_outputs", "upsampling_figure", "upsampling_widget", "UPSAMPLERS", "checkerboard_strength",
    "checkerboard_scores", "checkerboard_figure",
]


# ----------------------------------------------------------------------------- drawing helpers
def annotated_grid(values, ax: Axes, title: str | None = None, cmap: str = "Blues", vmin=None,
                   vmax=None, fmt: str = "{:.2g}", highlight: Sequence | None = None,
                   annotate: bool | None = None, at: tuple | None = None, fontsize: float = 6.5) -> Figure:
    """Show a small 2-D array as coloured cells with each value written in its cell.

    Args:
        values: ``[H, W]`` tensor or array.
        ax: axes to draw into: the whole axes, or (with `at`) a place in a `panel_strip`.
        highlight: optional ``(row, col, height, width)`` cells to outline in red.
        annotate: write the values (default: when the grid has at most 64 cells; every
            number is a text object, the slowest thing to draw).
        at: ``(x, y)`` data coordinates of the top-left cell's centre, to draw several grids
            in one axes (see `panel_strip`); the title then goes above the grid as text.
        fontsize: of the values written in the cells.
    """
    v = values.detach().cpu().numpy() if torch.is_tensor(values) else np.asarray(values)
    if v.ndim != 2:
        raise ValueError(f"values must be a 2-D grid, got shape {v.shape}")
    h, w = v.shape
    x0, y0 = (0, 0) if at is None else at
    ax.imshow(v, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
              extent=(x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5))
    if (annotate if annotate is not None else h * w <= 64) and fontsize >= 4:
        lo = np.nanmin(v) if vmin is None else vmin
        hi = np.nanmax(v) if vmax is None else vmax
        mid = (lo + hi) / 2
        for (i, j), x in np.ndenumerate(v):
            if x != 0:
                ax.text(x0 + j, y0 + i, fmt.format(x), ha="center", va="center", fontsize=fontsize,
                        color="white" if x > mid else "black")
    if max(h, w) <= 32:  # cell borders: one LineCollection (tick-based grids are slow to draw)
        segs = [[(x0 - 0.5, y0 + r - 0.5), (x0 + w - 0.5, y0 + r - 0.5)] for r in range(h + 1)]
        segs += [[(x0 + c - 0.5, y0 - 0.5), (x0 + c - 0.5, y0 + h - 0.5)] for c in range(w + 1)]
        ax.add_collection(LineCollection(segs, colors="#bbbbbb", linewidths=0.4))
    if highlight is not None:
        r, c, hh, ww = highlight
        ax.add_patch(Rectangle((x0 + c - 0.5, y0 + r - 0.5), ww, hh, fill=False, edgecolor="red", linewidth=2))
    if at is None:
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            viz.set_title(ax, title, fontsize=9)
    elif title:
        ax.text(x0 + w / 2 - 0.5, y0 - 0.8, title, ha="center", va="bottom", fontsize=8)
    return ax.figure


def panel_strip(shapes: Sequence[tuple], gap: float = 1.5, cell: float = 0.38, max_width: float = 13.0,
                title_lines: int = 2, rows: int = 1, bottom: float = 0.0):
    """One Axes laid out for grids of the given ``(rows, cols)`` shapes side by side, top-aligned,
    each cell a square of at most `cell` inches (smaller if the strip would exceed `max_width`);
    `rows` repeats the strip below itself and `bottom` adds that many inches underneath.

    A single Axes draws several times faster than one Axes per panel, which keeps widget
    redraws quick. Returns ``(fig, ax, places, fontsize)``: `places` holds the ``at=`` of each
    panel (row by row) for `annotated_grid`; `fontsize` suits values written in the cells.
    """
    total_w = sum(w for _, w in shapes) + gap * (len(shapes) - 1)
    max_h = max(h for h, _ in shapes)
    cell = min(cell, max_width / (total_w + 1))
    title_rows = (0.17 * title_lines + 0.1) / cell  # title height in inches, in cells
    row_h = max_h + title_rows + 0.5
    height = rows * row_h + bottom / cell
    fig = Figure(figsize=((total_w + 1) * cell, height * cell))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-1.0, total_w)
    ax.set_ylim(height - 0.5 - title_rows, -0.5 - title_rows)  # y grows downwards, like an image
    ax.axis("off")
    places = []
    for r in range(rows):
        x = 0.0
        for _, w in shapes:
            places.append((x, r * row_h))
            x += w + gap
    return fig, ax, places, min(6.5, 0.3 * cell * 72)


def message_figure(text: str) -> Figure:
    """A small figure that only says `text` (what a widget shows for an impossible setting)."""
    fig = Figure(figsize=(6, 1.2), layout="constrained")
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=10, wrap=True)
    return fig


def _or_message(figure_fn):
    """Wrap a figure function so that a ValueError is shown as a message, not a traceback."""
    def draw(**kw):
        try:
            return figure_fn(**kw)
        except ValueError as e:
            return message_figure(str(e))
    draw.__name__ = figure_fn.__name__
    return draw


# -------------------------------------------------------------------- transposed convolution
def _demo_input(kind: str, size: int) -> torch.Tensor:
    if kind == "ones":
        return torch.ones(size, size)
    if kind == "ramp":
        return torch.arange(1, size * size + 1, dtype=torch.float32).view(size, size)
    raise ValueError(f"input must be 'ones' or 'ramp', got {kind!r}")


def _demo_kernel(kind: str, k: int) -> torch.Tensor:
    if kind == "ones":
        return torch.ones(k, k)
    if kind == "tent":  # a bilinear-like bump, peak 1 in the middle
        t = 1 - (torch.arange(k, dtype=torch.float32) - (k - 1) / 2).abs() / ((k + 1) / 2)
        return t[:, None] * t[None, :]
    raise ValueError(f"kernel must be 'ones' or 'tent', got {kind!r}")


def conv_transpose_figure(kernel_size: int = 3, stride: int = 2, padding: int = 0, step: int = 1,
                          input_size: int = 3, input: str = "ones", kernel: str = "ones") -> Figure:
    """One step of a transposed convolution on a small single-channel input.

    Input position number `step` (1-based, row-major) multiplies the whole filter and adds
    that copy into the output, ``stride`` pixels further than the previous position's copy.
    Panels: the input (current position in red), the filter, this step's copy placed in
    the full output, and the running sum of the first `step` copies. The full output is
    ``(H-1)*stride + kernel_size`` wide; `padding` crops that many rows/columns from each
    side (the dashed box is what ``F.conv_transpose2d(..., padding=padding)`` returns).
    After the last step the cropped sum is compared with ``F.conv_transpose2d``.
    """
    for name, v, lo in (("kernel_size", kernel_size, 1), ("stride", stride, 1), ("padding", padding, 0),
                        ("input_size", input_size, 1)):
        check_setting(name, v, lo, None, integer=True)
    n = input_size * input_size
    if not isinstance(step, int) or not 1 <= step <= n:
        raise ValueError(f"step must be an int in [1, {n}] (one per input position), got {step!r}")
    x, w = _demo_input(input, input_size), _demo_kernel(kernel, kernel_size)
    full = (input_size - 1) * stride + kernel_size
    if full - 2 * padding < 1:
        raise ValueError(f"padding={padding} crops the whole {full}x{full} output: use a smaller padding")
    one_hot = torch.zeros(n)
    one_hot[step - 1] = 1
    first = (torch.arange(n) < step).float()
    i, j = divmod(step - 1, input_size)
    copy = conv_transpose2d((x.flatten() * one_hot).view(1, 1, input_size, input_size), w[None, None],
                            stride=stride)[0, 0]  # (full, full): x[i, j] * w at (i*s, j*s)
    running = conv_transpose2d((x.flatten() * first).view(1, 1, input_size, input_size), w[None, None],
                               stride=stride)[0, 0]
    total = conv_transpose2d(x[None, None], w[None, None], stride=stride)[0, 0]
    vmax = float(total.max())
    fig, ax, at, fs = panel_strip([(input_size,) * 2, (kernel_size,) * 2, (full, full), (full, full)])
    annotated_grid(x, ax, f"input {input_size}×{input_size}\nposition {step}/{n}: x[{i},{j}] = {x[i, j]:.3g}",
                   highlight=(i, j, 1, 1), vmin=0, at=at[0], fontsize=fs)
    annotated_grid(w, ax, f"filter {kernel_size}×{kernel_size}", vmin=0, cmap="Oranges", at=at[1], fontsize=fs)
    annotated_grid(copy, ax, f"copy {step}: x[{i},{j}] × filter\nplaced at ({i}·{stride}, {j}·{stride})",
                   highlight=(i * stride, j * stride, kernel_size, kernel_size), vmin=0, vmax=vmax,
                   at=at[2], annotate=False)  # the values are x[i, j] times the filter's
    title = f"running sum of {step} copies\nfull {full}×{full}"
    if step == n:
        out = running[padding:full - padding, padding:full - padding]
        ref = F.conv_transpose2d(x[None, None], w[None, None], stride=stride, padding=padding)[0, 0]
        err = float((out - ref).abs().max())
        title = f"all {n} copies, cropped {out.shape[0]}×{out.shape[1]}\nvs F.conv_transpose2d: max |err| {err:.1g}"
    annotated_grid(running, ax, title, vmin=0, vmax=vmax, at=at[3], fontsize=fs)
    if padding:  # the part F.conv_transpose2d(..., padding=padding) returns
        for x0, y0 in at[2:]:
            ax.add_patch(Rectangle((x0 + padding - 0.5, y0 + padding - 0.5), full - 2 * padding,
                                   full - 2 * padding, fill=False, edgecolor="black", linestyle="--",
                                   linewidth=1.5))
    return fig


def conv_transpose_widget():
    """Sliders for kernel size, stride, padding and the input position being scattered."""
    import ipywidgets as W

    from . import interactive_figure

    return interactive_figure(_or_message(conv_transpose_figure), {
        "kernel_size": W.IntSlider(value=3, min=1, max=5, description="kernel"),
        "stride": W.IntSlider(value=2, min=1, max=4, description="stride"),
        "padding": W.IntSlider(value=0, min=0, max=2, description="padding"),
        "step": W.IntSlider(value=1, min=1, max=9, description="position"),
        "input": W.Dropdown(options=["ones", "ramp"], value="ones", description="input"),
        "kernel": W.Dropdown(options=["ones", "tent"], value="ones", description="filter"),
    }, grid={"kernel_size": [2, 3, 4], "stride": [1, 2, 3], "step": [1, 3, 5, 9]})


# ------------------------------------------------------------------------ upsampling methods
def upsampling_outputs(scale: int = 2, seed: int = 0, size: int = 4) -> dict:
    """The four upsampling methods on one ``size x size`` map, each next to PyTorch's twin.

    A ``size*scale`` square map is max-pooled by `scale` (recording where the maxima were),
    and the pooled ``size x size`` map is upsampled back by each method.

    Returns:
        dict with "original", "pooled", "indices" and, for "nearest", "bed of nails",
        "max unpooling", "transposed conv": ``(ours [H, W], max |ours - torch|)`` where the
        reference is ``F.interpolate(mode="nearest")``, bed of nails built by strided
        assignment, ``F.max_unpool2d`` and ``F.conv_transpose2d`` (bilinear kernel).
    """
    check_setting("scale", scale, 1, None, integer=True)
    check_setting("seed", seed, 0, None, integer=True)
    check_setting("size", size, 1, None, integer=True)
    g = torch.Generator().manual_seed(seed)
    level = torch.rand(1, 1, size, size, generator=g)  # each window gets its own brightness
    original = torch.rand(1, 1, size * scale, size * scale, generator=g) * nearest_upsample(level, scale)
    pooled, idx = max_pool2d_with_indices(original, scale)  # (1, 1, S, S) each
    w = bilinear_upsample_weight(1, scale)
    p = bilinear_padding(scale)
    nails_ref = torch.zeros_like(original)
    nails_ref[..., ::scale, ::scale] = pooled
    pairs = {
        "nearest": (nearest_upsample(pooled, scale), F.interpolate(pooled, scale_factor=scale, mode="nearest")),
        "bed of nails": (bed_of_nails(pooled, scale), nails_ref),
        "max unpooling": (max_unpool2d(pooled, idx, scale), F.max_unpool2d(pooled, idx, scale)),
        "transposed conv": (conv_transpose2d(pooled, w, stride=scale, padding=p),
                            F.conv_transpose2d(pooled, w, stride=scale, padding=p)),
    }
    out = {"original": original[0, 0], "pooled": pooled[0, 0], "indices": idx[0, 0]}
    for k, (ours, ref) in pairs.items():
        out[k] = (ours[0, 0], float((ours - ref).abs().max()))
    return out


def upsampling_figure(scale: int = 2, seed: int = 0) -> Figure:
    """Original map, its max pooling, and the four upsamplings of the pooled map side by side."""
    out = upsampling_outputs(scale, seed)
    s = out["original"].shape[0]
    k = out["pooled"].shape[0]
    fig, ax, at, fs = panel_strip([(s, s), (k, k)] + [(s, s)] * 4)
    annotated_grid(out["original"], ax, f"original {s}×{s}\no: max of each {scale}×{scale} window",
                   vmin=0, vmax=1, annotate=False, at=at[0])
    rows, cols = np.divmod(out["indices"].flatten().numpy(), s)
    ax.plot(cols + at[0][0], rows + at[0][1], "o", mfc="none", mec="red", ms=max(2.0, 40 / s))
    annotated_grid(out["pooled"], ax, f"max-pooled {k}×{k}\n(input to upsample)", vmin=0, vmax=1,
                   fmt="{:.1f}", at=at[1], fontsize=fs)
    twins = {"nearest": "F.interpolate", "bed of nails": "x[::s, ::s]",
             "max unpooling": "F.max_unpool2d", "transposed conv": "F.conv_transpose2d"}
    for place, name in zip(at[2:], twins):
        ours, err = out[name]
        title = "transposed conv (bilinear)" if name == "transposed conv" else name
        annotated_grid(ours, ax, f"{title}\nvs {twins[name]}: {err:.1g}", vmin=0, vmax=1, annotate=False,
                       at=place)
    return fig


def upsampling_widget():
    """Choose the upsampling factor and a random input; shows `upsampling_figure`."""
    import ipywidgets as W

    from . import interactive_figure

    return interactive_figure(upsampling_figure, {
        "scale": W.IntSlider(value=2, min=2, max=4, description="factor"),
        "seed": W.IntSlider(value=0, min=0, max=20, description="input seed"),
    }, grid={"scale": [2, 3, 4], "seed": [0, 4, 8, 12, 16, 20]})


# ------------------------------------------------------------------------ checkerboard artifacts
def _resize_conv(x, w):
    return F.conv2d(nearest_upsample(x, 2), w)  # nearest x2, then an ordinary (unpadded) conv


UPSAMPLERS = {  # name: (kernel size, upsample a [1, 1, H, W] map by 2 with a [1, 1, k, k] kernel)
    "transposed conv, k=3, s=2": (3, lambda x, w: conv_transpose2d(x, w, stride=2)),
    "transposed conv, k=4, s=2": (4, lambda x, w: conv_transpose2d(x, w, stride=2)),
    "nearest ×2, then conv k=3": (3, _resize_conv),
}


def checkerboard_strength(y: torch.Tensor, stride: int = 2, border: int = 4) -> float:
    """How periodic an upsampled *constant* map is: the variance of the mean value over the
    ``stride x stride`` phases (pixel (i, j) is in phase (i mod s, j mod s)) divided by the
    mean squared value, on the interior (`border` pixels cut from each side).

    0 for a flat map; close to 1 for a pure pattern around zero.
    """
    y = y.reshape(y.shape[-2:])[border:-border, border:-border].double()
    h, w = (y.shape[0] // stride) * stride, (y.shape[1] // stride) * stride
    phases = y[:h, :w].reshape(h // stride, stride, w // stride, stride).mean((0, 2))  # (s, s)
    return float(phases.var(unbiased=False) / y.pow(2).mean().clamp_min(1e-30))


def checkerboard_scores(n_kernels: int = 200, size: int = 16, seed: int = 0) -> dict:
    """`checkerboard_strength` of each upsampler in `UPSAMPLERS` applied to a constant
    ``size x size`` input: with the averaging kernel (all taps 1/k²) and averaged over
    `n_kernels` random kernels (standard normal, as at initialisation).

    Returns:
        ``{name: {"averaging": float, "random": float}}``.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.ones(1, 1, size, size, dtype=torch.float64)
    out = {}
    for name, (k, up) in UPSAMPLERS.items():
        avg = checkerboard_strength(up(x, torch.full((1, 1, k, k), 1.0 / k ** 2, dtype=torch.float64)))
        rnd = [checkerboard_strength(up(x, torch.randn(1, 1, k, k, generator=g, dtype=torch.float64)))
               for _ in range(n_kernels)]
        out[name] = {"averaging": avg, "random": sum(rnd) / n_kernels}
    return out


def checkerboard_figure(seed: int = 0, size: int = 8) -> Figure:
    """A constant input upsampled by each method in `UPSAMPLERS`, with the averaging kernel
    (top row) and one random kernel (bottom row); the strength is in each title."""
    check_setting("seed", seed, 0, None, integer=True)
    check_setting("size", size, 1, None, integer=True)
    g = torch.Generator().manual_seed(seed)
    x = torch.ones(1, 1, size, size, dtype=torch.float64)
    fig, axes = viz.subplots(2, len(UPSAMPLERS), size=2.6)
    for col, (name, (k, up)) in enumerate(UPSAMPLERS.items()):
        kernels = {"averaging kernel": torch.full((1, 1, k, k), 1.0 / k ** 2, dtype=torch.float64),
                   "random kernel": torch.randn(1, 1, k, k, generator=g, dtype=torch.float64)}
        for row, (kind, w) in enumerate(kernels.items()):
            y = up(x, w)[0, 0]
            s = checkerboard_strength(y, border=min(4, size // 2 - 1))
            annotated_grid(y, axes[row, col], f"{name}\n{kind}: strength {s:.2g}", cmap="gray",
                           vmin=min(0.0, float(y.min())), vmax=max(0.0, float(y.max())), annotate=False)
    return fig
