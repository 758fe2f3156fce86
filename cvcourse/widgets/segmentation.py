"""Chapters on semantic segmentation: sliding window, FCN and U-Net.

- `sliding_window_cost_figure`: multiply-adds per layer, patch by patch vs in one pass.
- `prediction_figure` / `prediction_widget`: held-out scenes, ground truth, shipped models'
  predictions and where each one is wrong (models loaded and predictions cached once).

The upsampling chapter's figures and widgets (transposed-convolution explorer, upsampling
comparison, checkerboard artifacts) are in `cvcourse.widgets.upsampling` and re-exported
here, so every segmentation widget can be imported from this module.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

from .. import viz
from ..data import CLASSES, NUM_CLASSES
from .upsampling import (  # noqa: F401
    UPSAMPLERS,
    annotated_grid,
    checkerboard_figure,
    checkerboard_scores,
    checkerboard_strength,
    conv_transpose_figure,
    conv_transpose_widget,
    message_figure,
    panel_strip,
    upsampling_figure,
    upsampling_outputs,
    upsampling_widget,
)

__all__ = [
    "held_out_predictions", "per_scene_boundary_f1", "prediction_figure", "prediction_widget",
    "layer_multiply_adds", "layer_times", "sliding_window_cost_figure",
    "conv_transpose_figure", "conv_transpose_widget", "upsampling_outputs", "upsampling_figure",
    "upsampling_widget", "checkerboard_strength", "checkerboard_scores", "checkerboard_figure",
    "UPSAMPLERS", "annotated_grid", "panel_strip", "message_figure",
]


# ------------------------------------------------------------------------ sliding window cost
def layer_multiply_adds(model, height: int, width: int) -> list[dict]:
    """Multiply-adds of each layer of a `PatchClassifier`, patch by patch vs in one pass.

    Returns:
        one dict per layer (FC layers counted as the convolutions they equal) with "layer",
        "sliding_window" and "fully_convolutional" multiply-adds for an ``height x width``
        image; their sums equal ``model.multiply_adds(height, width)``.
    """
    from ..models.sliding_window import stack_multiply_adds

    layers, p = model._layer_specs(), model.patch_size
    names = [f"conv{k}×{k} {cin}→{cout}" for cin, cout, k in layers[:-2]] + \
            [f"fc {layers[-2][0]}·{layers[-2][2]}²→{layers[-2][1]}", f"fc {layers[-1][0]}→{layers[-1][1]}"]
    rows = []
    for n in range(1, len(layers) + 1):  # cost of layer n = cost of the first n layers - first n-1
        def upto(h, w, n=n):
            return stack_multiply_adds(layers[:n], h, w) - stack_multiply_adds(layers[:n - 1], h, w)
        rows.append({"layer": names[n - 1], "sliding_window": height * width * upto(p, p),
                     "fully_convolutional": upto(height + p - 1, width + p - 1)})
    return rows


def layer_times(model, image: torch.Tensor, repeats: int = 3, batch_size: int = 1024) -> list[dict]:
    """Measured seconds and counted multiply-adds of each layer of a `PatchClassifier`
    labelling one image, patch by patch and in one pass.

    Sliding window: cutting the patches (``extract_patches``: it moves data and computes
    nothing) is its own row, then every layer runs on batches of `batch_size` patches, as
    ``sliding_window`` does. One pass: every layer runs once on the border-extended image.
    Each layer is timed alone, on the input it receives, with `cvcourse.timing.median_time`
    (use `cvcourse.timing.threads` around the call to fix the thread count).

    Args:
        model: a `PatchClassifier`.
        image: ``[1, 3, H, W]``.
        repeats: timed calls per layer (the median is kept).
        batch_size: patches per batch in the sliding window.

    Returns:
        one dict per row: "layer", "sliding_window" and "fully_convolutional" multiply-adds
        (0 for cutting the patches), "sliding_window_seconds" and "fully_convolutional_seconds"
        (None where a row does not exist in that form), and "sliding_window_bytes" and
        "fully_convolutional_bytes": the size of what the layer writes (its output).
    """
    from ..models.sliding_window import PatchClassifier, _pad_for_patches, extract_patches
    from ..timing import median_time

    if not isinstance(model, PatchClassifier):
        raise TypeError(f"model must be a PatchClassifier, got {type(model).__name__}")
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or tuple(image.shape[:2]) != (1, 3):
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be one [1, 3, H, W] image, got {got}")
    one_pass = model.to_fully_convolutional().eval()
    model = model.eval()
    p, mode = model.patch_size, model.padding_mode
    f, c, h = model.features, model.classifier, one_pass.head
    patch_stages = [f[0:2], f[2:4], f[4:6], c[0:3], c[3:]]   # conv, conv, conv, flatten+fc+relu, fc
    pass_stages = [f[0:2], f[2:4], f[4:6], h[0:2], h[2:]]    # the same, FC layers as convs

    def timed(stage, inputs):  # the untimed first call (warm-up) gives the next layer's inputs
        outputs = [stage(x) for x in inputs]
        return median_time(lambda: [stage(x) for x in inputs], repeats=repeats, warmup=0).median, outputs

    def size(tensors):
        return sum(t.numel() * t.element_size() for t in tensors)

    rows = [{"layer": "cut patches", "sliding_window": 0, "fully_convolutional": 0,
             "sliding_window_seconds": None, "fully_convolutional_seconds": None,
             "sliding_window_bytes": None, "fully_convolutional_bytes": None}]
    with torch.no_grad():
        seconds, patches = timed(lambda x: extract_patches(x, p, mode), [image])
        rows[0]["sliding_window_seconds"], rows[0]["sliding_window_bytes"] = seconds, size(patches)
        patches = list(patches[0].split(batch_size))                        # [batch, 3, P, P] each
        padded = [_pad_for_patches(image, p, mode)]                         # [1, 3, H+P-1, W+P-1]
        for counts, a, b in zip(layer_multiply_adds(model, *image.shape[-2:]), patch_stages, pass_stages):
            seconds_a, patches = timed(a, patches)
            seconds_b, padded = timed(b, padded)
            rows.append({**counts, "sliding_window_seconds": seconds_a,
                         "fully_convolutional_seconds": seconds_b,
                         "sliding_window_bytes": size(patches), "fully_convolutional_bytes": size(padded)})
    return rows


def sliding_window_cost_figure(model, height: int = 64, width: int = 64) -> Figure:
    """Bar chart of each layer's multiply-adds for one image: sliding window vs one pass."""
    rows = layer_multiply_adds(model, height, width)
    fig = Figure(figsize=(7, 3), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    sw = np.array([r["sliding_window"] for r in rows], dtype=float)
    fc = np.array([r["fully_convolutional"] for r in rows], dtype=float)
    ax.bar(x - 0.2, sw, 0.4, label="sliding window (one patch per pixel)", color="#e6194b")
    ax.bar(x + 0.2, fc, 0.4, label="fully convolutional (one pass)", color="#4363d8")
    for xi, a, b in zip(x, sw, fc):
        ax.text(xi, max(a, b) * 1.3, f"×{a / b:.0f}", ha="center", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(top=max(sw.max(), fc.max()) * 5)
    ax.set_xticks(x, [r["layer"] for r in rows], fontsize=7)
    ax.set_ylabel("multiply-adds")
    viz.set_title(ax, f"cost of labelling one {height}×{width} image, per layer (ratio above the bars)")
    ax.legend(fontsize=7, loc="lower left")
    return fig


# -------------------------------------------------------------------------- predictions
@lru_cache(maxsize=8)
def held_out_predictions(models: tuple = ("unet", "unet_noskip"), split: str = "test", n: int = 200) -> dict:
    """Shipped models' predictions on the first `n` held-out scenes, computed once and cached.

    Returns:
        dict with "images" ``[n, 3, 64, 64]``, "target" ``[n, 64, 64]`` and one ``[n, 64, 64]``
        prediction per model name.
    """
    from .. import pretrained
    from ..inference import predict
    from ..recipes.segmentation import held_out

    images, target = held_out(split, n)
    out = {"images": images, "target": target}
    for name in models:
        out[name] = predict(pretrained.load(name), images)
    return out


def per_scene_boundary_f1(pred: torch.Tensor, target: torch.Tensor, tolerance: float | None = None) -> torch.Tensor:
    """Boundary F1 of each scene, ``[n]`` (the metric averages these); the tolerance defaults
    to the recipes' `BOUNDARY_TOLERANCE`."""
    from ..metrics import boundary_f1
    from ..recipes.segmentation import BOUNDARY_TOLERANCE

    tol = BOUNDARY_TOLERANCE if tolerance is None else tolerance
    return torch.stack([boundary_f1(p, t, NUM_CLASSES, tol) for p, t in zip(pred, target)])


ERROR_COLORS = ["#f2f2f2", "#f58231", "#4363d8", "#e6194b"]  # both right, only A wrong, only B wrong, both


def _rgb(labels: torch.Tensor, colors) -> np.ndarray:
    """``[H, W]`` integer labels as an ``[H, W, 3]`` image, label k in ``colors[k]``."""
    table = np.array([mcolors.to_rgb(c) for c in colors])
    return table[labels.numpy()]


def _panel(ax, rgb: np.ndarray, at: tuple, title: str) -> None:
    x0, y0 = at
    h, w = rgb.shape[:2]
    ax.imshow(rgb, interpolation="nearest", extent=(x0 - 0.5, x0 + w - 0.5, y0 + h - 0.5, y0 - 0.5))
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, edgecolor="#999999", linewidth=0.6))
    ax.text(x0 + w / 2 - 0.5, y0 - 1.5, title, ha="center", va="bottom", fontsize=8)


def prediction_figure(index=0, models: tuple = ("unet", "unet_noskip"), split: str = "test",
                      n: int = 200) -> Figure:
    """Held-out scene(s) `index` (an int or a list of ints, one row each): image, ground truth,
    each model's prediction with its boundary F1 and number of wrong pixels on that scene,
    and (for two models) an error map of where only the first, only the second, or both are
    wrong."""
    indices = [index] if isinstance(index, int) else list(index)
    if not indices or any(not isinstance(i, int) or not 0 <= i < n for i in indices):
        raise ValueError(f"index must be an int (or list of ints) in [0, {n}), got {index!r}")
    data = held_out_predictions(tuple(models), split, n)
    two = len(models) == 2
    size = data["target"].shape[-1]
    # one Axes for all panels: several times quicker to redraw than one Axes per panel
    fig, ax, places, _ = panel_strip([(size, size)] * (2 + len(models) + two), gap=size / 8, cell=2.1 / size,
                                     max_width=11.0, rows=len(indices), bottom=0.25)
    ncols = len(places) // len(indices)
    for r, i in enumerate(indices):
        at = places[r * ncols:(r + 1) * ncols]
        target = data["target"][i]
        _panel(ax, viz.to_numpy_image(data["images"][i]), at[0], f"{split} scene {i}")
        _panel(ax, _rgb(target, viz.CLASS_COLORS), at[1], "ground truth")
        wrong = []
        for place, name in zip(at[2:], models):
            pred = data[name][i]
            bf1 = float(per_scene_boundary_f1(pred[None], target[None])[0])
            wrong.append(pred != target)
            _panel(ax, _rgb(pred, viz.CLASS_COLORS), place,
                   f"{name}: {int(wrong[-1].sum())} px wrong\nboundary F1 {bf1:.2f}")
        if two:
            code = wrong[0].long() + 2 * wrong[1].long()  # 0 both right, 1 only A, 2 only B, 3 both
            _panel(ax, _rgb(code, ERROR_COLORS), at[-1], "where each is wrong")
    fig.legend(handles=[Patch(color=viz.CLASS_COLORS[c], label=name) for c, name in enumerate(CLASSES)],
               loc="lower left", ncol=len(CLASSES), fontsize=7, frameon=False)
    if two:
        labels = [f"only {models[0]} wrong", f"only {models[1]} wrong", "both wrong"]
        fig.legend(handles=[Patch(color=c, label=lab) for c, lab in zip(ERROR_COLORS[1:], labels)],
                   loc="lower right", ncol=3, fontsize=7, frameon=False)
    return fig


def prediction_widget(models: tuple = ("unet", "unet_noskip"), split: str = "test", n: int = 200):
    """Browse held-out scenes; shows `prediction_figure` (predictions are cached)."""
    import ipywidgets as W

    from . import interactive_figure
    from .static import evenly

    return interactive_figure(prediction_figure, {
        "index": W.IntSlider(value=0, min=0, max=n - 1, description="scene"),
        "models": W.fixed(tuple(models)), "split": W.fixed(split), "n": W.fixed(n),
    }, grid={"index": evenly(range(n), 20)})
