"""Chapters on single-object detection, many objects with sliding windows, and R-CNN.

- Windows: `window_shapes`, `count_windows` (the formula), `sliding_windows` (every window
  as a box), `count_all_boxes`, `best_window_iou`; `windows_figure` / `windows_widget`
  draw one window shape slid over a scene.
- Cost: `multiply_adds` of any network's Conv2d and Linear layers, from forward hooks.
- `sweep_figure`: class accuracy and box IoU against the box-loss weight (from
  `cvcourse.experiments.load_sweep`).
- Proposals and R-CNN: `recall_figure`, `proposals_figure`, `warp_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from torch import Tensor, nn

from .. import viz
from ..data import CLASSES, make_scene
from ..inference import evaluating
from ..ops.boxes import box_iou
from . import check_setting, interactive_figure

__all__ = ["window_shapes", "count_windows", "sliding_windows", "count_all_boxes",
           "best_window_iou", "multiply_adds", "windows_figure", "windows_widget",
           "sweep_figure", "recall_figure", "proposals_figure", "warp_figure"]


# ------------------------------------------------------------------------------ windows
def window_shapes(sizes: Sequence[float], ratios: Sequence[float]) -> list[tuple[int, int]]:
    """``(w, h)`` in pixels of each (size, ratio) pair: area about size², w / h = ratio."""
    if not sizes or not ratios or min(sizes) <= 0 or min(ratios) <= 0:
        raise ValueError(f"sizes and ratios must be non-empty and positive, got {sizes}, {ratios}")
    return [(max(1, round(s * r ** 0.5)), max(1, round(s / r ** 0.5))) for s in sizes for r in ratios]


def _check_grid(height: int, width: int, stride: int) -> None:
    if min(height, width) < 1 or stride < 1:
        raise ValueError(f"height, width and stride must be >= 1, got {height}, {width}, {stride}")


def count_windows(height: int, width: int, sizes: Sequence[float], ratios: Sequence[float],
                  stride: int = 1) -> int:
    """Windows inside an ``height x width`` image, over locations x scales x aspect ratios.

    A ``w x h`` window moved by `stride` pixels fits at ``floor((W - w) / stride) + 1``
    horizontal and ``floor((H - h) / stride) + 1`` vertical positions; the total is the
    sum of their products over every shape of `window_shapes(sizes, ratios)`.
    """
    _check_grid(height, width, stride)
    return sum(((width - w) // stride + 1) * ((height - h) // stride + 1)
               for w, h in window_shapes(sizes, ratios) if w <= width and h <= height)


def sliding_windows(height: int, width: int, sizes: Sequence[float], ratios: Sequence[float],
                    stride: int = 1) -> Tensor:
    """Every window of `count_windows` as an xyxy box: Tensor[N, 4], shape by shape."""
    _check_grid(height, width, stride)
    out = [torch.zeros(0, 4)]
    for w, h in window_shapes(sizes, ratios):
        if w <= width and h <= height:
            y, x = torch.meshgrid(torch.arange(0, height - h + 1, stride),
                                  torch.arange(0, width - w + 1, stride), indexing="ij")
            out.append(torch.stack([x, y, x + w, y + h], -1).reshape(-1, 4).float())  # (ny*nx, 4)
    return torch.cat(out)


def count_all_boxes(height: int, width: int) -> int:
    """Every integer box in the image: ``H(H+1)/2 * W(W+1)/2`` (pairs x1 < x2, y1 < y2)."""
    _check_grid(height, width, 1)
    return height * (height + 1) // 2 * (width * (width + 1) // 2)


def best_window_iou(boxes: Tensor, windows: Tensor) -> Tensor:
    """For each box [N, 4], the IoU of the best-fitting window: Tensor[N]."""
    if len(windows) == 0:
        return torch.zeros(len(boxes))
    return box_iou(boxes, windows).max(1).values


# --------------------------------------------------------------------------------- cost
def multiply_adds(model: nn.Module, input_size: Sequence[int]) -> int:
    """Multiply-adds of the Conv2d and Linear layers for one input of `input_size` (C, H, W)."""
    total = [0]

    def conv(m, inputs, out):
        total[0] += out[0].numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, inputs, out):
        total[0] += out[0].numel() * m.in_features

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with evaluating(model), torch.no_grad():  # each module's mode restored afterwards
            model(torch.zeros(1, *input_size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return total[0]


# ------------------------------------------------------------------------------ figures
def _outlines(ax, boxes: Tensor, color, linewidth: float = 1.0, alpha: float = 1.0,
              linestyle: str = "-") -> None:
    """Rectangles for xyxy pixel-edge boxes [N, 4] as one LineCollection (fast for many)."""
    b = boxes.detach().cpu().numpy().reshape(-1, 4) - 0.5
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]], b[:, [0, 1]]], 1)
    ax.add_collection(LineCollection(corners, colors=color, linewidths=linewidth, alpha=alpha,
                                     linestyles=linestyle), autolim=False)  # the image sets the limits


@lru_cache(maxsize=64)
def _scene(index: int, split: str) -> dict:
    return make_scene(index, split=split)


def windows_figure(index: int = 0, size: int = 32, ratio: float = 1.0, stride: int = 8,
                   split: str = "test") -> Figure:
    """One window shape slid over scene `index`: every position (thin), the best window for
    each object (thick) over its true box (dashed), and how many windows that was."""
    check_setting("size", size, 1, None, integer=True)
    check_setting("ratio", ratio, 0, None)
    if ratio == 0:
        raise ValueError("ratio must be a number > 0 (width / height), got 0")
    check_setting("stride", stride, 1, None, integer=True)
    scene = _scene(index, split)
    hh, ww = scene["image"].shape[-2:]
    windows = sliding_windows(hh, ww, [size], [ratio], stride)
    fig = Figure(figsize=(3.6, 4.0))                 # fixed axes: no layout engine, a fast redraw
    ax = fig.add_axes((0.02, 0.02, 0.96, 0.83))
    viz.show_image(scene["image"], ax=ax)
    _outlines(ax, windows, "white", 0.5, alpha=0.35)
    ious = best_window_iou(scene["boxes"], windows)
    _outlines(ax, scene["boxes"], "white", 1.2, linestyle="--")
    if len(windows):
        best = windows[box_iou(scene["boxes"], windows).argmax(1)]          # (N, 4)
        colors = [viz.CLASS_COLORS[lab] for lab in scene["labels"].tolist()]
        _outlines(ax, best, colors, 2.2)
        for b, c, v in zip(best.tolist(), colors, ious.tolist()):
            ax.text(b[0], b[1] - 1.5, f"IoU {v:.2f}", fontsize=7, color="white",
                    bbox=dict(facecolor=c, alpha=0.8, pad=1, linewidth=0))
    w, h = window_shapes([size], [ratio])[0]
    viz.set_title(ax, f"{w}×{h} windows, stride {stride}: {len(windows)} positions\n"
                  f"best IoU per object: {', '.join(f'{v:.2f}' for v in ious.tolist())}", fontsize=9)
    return fig


def windows_widget(split: str = "test", n: int = 50):
    """Sliders for the scene, window size, aspect ratio and stride of `windows_figure`."""
    import ipywidgets as W

    return interactive_figure(windows_figure, {
        "index": W.IntSlider(0, 0, n - 1, description="scene"),
        "size": W.IntSlider(32, 8, 96, 4, description="size"),
        "ratio": W.Dropdown(options=[0.5, 1.0, 2.0], value=1.0, description="w / h"),
        "stride": W.IntSlider(8, 2, 32, 2, description="stride"),
        "split": W.fixed(split)},
        grid={"size": [16, 32, 48, 64], "ratio": [0.5, 1.0, 2.0], "stride": [4, 8, 16]})


def sweep_figure(results: dict) -> Figure:
    """Accuracy and mean box IoU against the box-loss weight, one line per box loss."""
    fig, axes = viz.subplots(1, 2, size=3.2)
    names = {"smooth_l1": "smooth L1", "l2": "L2"}
    for loss in sorted({p["box_loss"] for p in results["points"]}, reverse=True):
        pts = sorted((p for p in results["points"] if p["box_loss"] == loss), key=lambda p: p["box_weight"])
        w = [p["box_weight"] for p in pts]
        for ax, key in zip(axes[0], ("accuracy", "mean_iou")):
            ax.plot(w, [p[key] for p in pts], "o-", label=names.get(loss, loss))
    budget = results["budget"]
    weights = sorted({p["box_weight"] for p in results["points"]})
    for ax, title in zip(axes[0], ("class accuracy", "mean IoU of the box")):
        ax.set_xscale("log")
        ax.set_xticks(weights, [f"{w:g}" for w in weights])
        ax.minorticks_off()
        ax.set_xlabel("box-loss weight λ")
        viz.set_title(ax, title, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"{budget['steps']} steps each, {budget['eval_scenes']} {budget['eval_split']} scenes",
                 fontsize=9)
    return fig


def recall_figure(curves: dict[float, dict[int, float]], title: str = "") -> Figure:
    """Recall against the number of proposals kept, one line per IoU threshold."""
    fig, axes = viz.subplots(1, 1, size=3.6)
    ax = axes[0, 0]
    for iou, curve in sorted(curves.items()):
        ax.plot(list(curve), list(curve.values()), "o-", label=f"IoU ≥ {iou}")
    ax.set_xscale("log")
    ax.set_xlabel("proposals per image (best ranked first)")
    ax.set_ylabel("recall of the true boxes")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    viz.set_title(ax, title, fontsize=9)
    return fig


def proposals_figure(image: Tensor, proposals: Tensor, target: dict,
                     counts: Sequence[int] = (10, 50, 200)) -> Figure:
    """The first `count` proposals of an image (thin) and, per object, the best of them
    (thick, with its IoU) over the true box (dashed), for each count."""
    fig, axes = viz.subplots(1, len(counts), size=3.0)
    for ax, c in zip(axes[0], counts):
        props = proposals[:c]
        viz.show_image(image, ax=ax)
        _outlines(ax, props, "white", 0.5, alpha=0.5)
        iou = box_iou(target["boxes"], props)                    # (G, c)
        for k, lab in enumerate(target["labels"].tolist()):
            _outlines(ax, target["boxes"][k], "white", 1.2, linestyle="--")
            _outlines(ax, props[iou[k].argmax()], viz.CLASS_COLORS[lab % len(viz.CLASS_COLORS)], 2.2)
        viz.set_title(ax, f"first {len(props)}: best IoU " +
                      ", ".join(f"{v:.2f}" for v in iou.max(1).values.tolist()), fontsize=8)
    return fig


@torch.no_grad()
def warp_figure(model, image: Tensor, proposals: Tensor, target: dict, n: int = 8) -> Figure:
    """R-CNN on one image: `n` proposals (the best one for each object, then background
    ones: alternately the largest overlap below 0.5 and the largest area without any),
    each warped to the CNN's input size and classified on its own."""
    from ..models.rcnn import warp_proposals

    iou = box_iou(proposals, target["boxes"]).max(1).values            # (K,)
    area = (proposals[:, 2:] - proposals[:, :2]).prod(1)
    fg = box_iou(target["boxes"], proposals).argmax(1).unique().tolist()
    partial = [i for i in torch.argsort(iou, descending=True).tolist() if 0 < iou[i] < 0.5]
    empty = [i for i in torch.argsort(area, descending=True).tolist() if iou[i] == 0]
    bg = [i for pair in zip(partial, empty) for i in pair] + partial[len(empty):] + empty[len(partial):]
    pick = torch.tensor((fg + bg)[:n])
    crops = warp_proposals(image[None], [proposals[pick]], model.crop_size)  # (n, 3, s, s)
    with evaluating(model):  # the caller's modes are restored afterwards
        probs = model(crops)[0].softmax(1)                            # (n, C+1)
    score, cls = probs.max(1)
    fig = Figure(figsize=(3.2 + 1.4 * ((len(pick) + 1) // 2), 3.2), layout="constrained")
    grid = fig.add_gridspec(2, 2 + (len(pick) + 1) // 2)
    ax = fig.add_subplot(grid[:, :2])
    viz.show_image(image, ax=ax, title=f"{len(pick)} of {len(proposals)} proposals")
    for j, i in enumerate(pick.tolist()):
        _outlines(ax, proposals[i], viz.INSTANCE_COLORS[j % len(viz.INSTANCE_COLORS)], 1.6)
        ax.text(float(proposals[i, 0]), float(proposals[i, 1]) + 6, str(j), fontsize=7, color="white")
    for j in range(len(pick)):
        a = fig.add_subplot(grid[j % 2, 2 + j // 2])
        viz.show_image(crops[j], ax=a, title=f"{j}: {CLASSES[cls[j]]} {score[j]:.2f}\nIoU {iou[pick[j]]:.2f}")
    return fig
