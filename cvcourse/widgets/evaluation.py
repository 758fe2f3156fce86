"""Evaluation chapter: IoU, and precision-recall curves as the IoU threshold moves.

- `iou_pairs`, `iou_pairs_figure`: pairs of boxes built to overlap at a chosen IoU
  (moved sideways, moved diagonally, one too large), drawn for IoU 0.5 and 0.75.
- `held_out_matches`: a shipped detector's detections on held-out scenes, matched to the
  ground truth at every IoU threshold 0.50, 0.55, ..., 0.95 at once; computed once, cached.
- `pr_curve_figure` / `pr_curve_widget`: each class's precision-recall curve at one IoU
  threshold with its AP under the three interpolations, and AP against the threshold.
  The widget redraws from the cache: no network pass and no matching.

The NMS widget of the chapter is `cvcourse.widgets.detection.detection_explorer`.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import viz
from ..data import CLASSES
from ..metrics.ap import (
    AP_METHODS,
    average_precision,
    interpolated_precision,
    match_detections,
    precision_at,
    precision_recall,
    recall_points,
)
from ..ops.boxes import box_iou
from . import interactive_figure

__all__ = ["IOU_GRID", "iou_pairs", "iou_pairs_figure", "held_out_matches", "pr_curve_figure",
           "pr_curve_widget"]

IOU_GRID = np.linspace(0.5, 0.95, 10)           # COCO's thresholds 0.50:0.05:0.95
_METHOD_NAMES = {"voc07": "VOC07 11-point", "voc_all": "VOC all-point", "coco101": "COCO 101-point"}


# ---------------------------------------------------------------------------------- IoU
def iou_pairs(iou: float, side: float = 40.0, centre: float = 50.0) -> dict[str, torch.Tensor]:
    """Pairs of boxes (a reference square and a second box) whose IoU is exactly `iou`.

    - "moved sideways": the same square shifted by d = side (1 - iou) / (1 + iou);
    - "moved diagonally": shifted by d in x and y, with (side - d)² = iou (2 side² - (side - d)²);
    - "too large": a concentric square side / sqrt(iou) wide (the reference lies inside it).

    Returns:
        {name: Tensor[2, 4] xyxy (reference, second box)}.
    """
    if not 0.0 < iou <= 1.0:
        raise ValueError(f"iou must be in (0, 1], got {iou!r}")
    lo, hi = centre - side / 2, centre + side / 2
    ref = torch.tensor([lo, lo, hi, hi], dtype=torch.float64)
    d_side = side * (1 - iou) / (1 + iou)
    d_diag = side - side * (2 * iou / (1 + iou)) ** 0.5
    half = side / iou ** 0.5 / 2
    sideways = torch.tensor([d_side, 0, d_side, 0], dtype=torch.float64)
    return {"moved sideways": torch.stack([ref, ref + sideways]),
            "moved diagonally": torch.stack([ref, ref + d_diag]),
            "too large": torch.stack([ref, torch.tensor([centre - half] * 2 + [centre + half] * 2,
                                                        dtype=torch.float64)])}


def iou_pairs_figure(ious: tuple[float, ...] = (0.5, 0.75)) -> Figure:
    """One row per IoU in `ious`: the three `iou_pairs`, reference solid, second box
    dashed, the intersection shaded; each title gives the IoU measured by `box_iou`."""
    rows = len(ious)
    fig, axes = viz.subplots(rows, 3, size=2.3)
    for r, u in enumerate(ious):
        for ax, (name, pair) in zip(axes[r], iou_pairs(u).items()):
            (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = pair.tolist()
            ax.fill([max(ax1, bx1), min(ax2, bx2), min(ax2, bx2), max(ax1, bx1)],
                    [max(ay1, by1), max(ay1, by1), min(ay2, by2), min(ay2, by2)], color="#4363d8", alpha=0.3)
            ax.plot([ax1, ax2, ax2, ax1, ax1], [ay1, ay1, ay2, ay2, ay1], color="#222222", lw=1.5)
            ax.plot([bx1, bx2, bx2, bx1, bx1], [by1, by1, by2, by2, by1], color="#e6194b", lw=1.5, ls="--")
            measured = float(box_iou(pair[:1], pair[1:])[0, 0])
            if name == "too large":
                how = f"{(bx2 - bx1) / (ax2 - ax1):.2f}× as wide"
            else:
                how = f"by {(bx1 - ax1) / (ax2 - ax1):.0%} of the side"
            ax.set_title(f"{name} {how}\nIoU = {measured:.2f}", fontsize=8)
            ax.set_xlim(0, 100)
            ax.set_ylim(100, 0)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


# ------------------------------------------------------------------- held-out matches
@lru_cache(maxsize=2)
def held_out_matches(name: str = "faster_rcnn", split: str = "test", n: int = 200) -> dict:
    """Detections of checkpoint `name` on the first `n` held-out scenes of `split`, matched at
    every threshold of `IOU_GRID`; computed once and cached.

    Returns:
        {"images" [n, 3, S, S], "targets", "detections" (lists of per-image dicts),
        "matches": {label: `match_detections` output with "tp" [10, D]},
        "ap": {method: float array [10 thresholds, classes]} (classes in label order),
        "curves": {(label, threshold index): (precision, recall) numpy arrays}}.
    """
    from .. import pretrained
    from ..data.scenes import held_out_scenes
    from ..inference import detect

    images, targets = held_out_scenes(split, n)
    detections = detect(pretrained.load(name, device="cpu"), images)
    labels = sorted(set(torch.cat([t["labels"] for t in targets]).tolist()))
    matches = {c: match_detections(detections, targets, c, IOU_GRID.tolist()) for c in labels}
    ap = {m: np.zeros((len(IOU_GRID), len(labels))) for m in AP_METHODS}
    curves = {}
    for k, c in enumerate(labels):
        for t in range(len(IOU_GRID)):
            precision, recall = precision_recall(matches[c]["scores"], matches[c]["tp"][t],
                                                 matches[c]["n_gt"])
            curves[c, t] = (precision.numpy(), recall.numpy())
            for m in AP_METHODS:
                ap[m][t, k] = average_precision(recall, precision, m)
    return {"images": images, "targets": targets, "detections": detections, "matches": matches,
            "ap": ap, "curves": curves}


def _grid_index(iou_threshold: float) -> int:
    t = int(np.argmin(np.abs(IOU_GRID - iou_threshold)))
    if abs(IOU_GRID[t] - iou_threshold) > 1e-6:
        raise ValueError(f"iou_threshold must be one of 0.50, 0.55, ..., 0.95, got {iou_threshold!r}")
    return t


def _label(ax, x: float, y: float, text: str, va: str, rotation: float = 0) -> None:
    ax.text(x, y, text, ha="center", va=va, fontsize=8, rotation=rotation, transform=ax.transAxes)


def pr_curve_figure(iou_threshold: float = 0.5, name: str = "faster_rcnn", split: str = "test",
                    n: int = 200) -> Figure:
    """Precision-recall curves of checkpoint `name` at one IoU threshold, and AP against it.

    Left: for each class, the precision after each detection (thin), the interpolated
    precision (the best precision at any higher recall, thick) and VOC2007's 11 sampled
    points (dots); the legend gives each class's AP under the three interpolations. Right:
    each class's COCO 101-point AP at every threshold of `IOU_GRID`, their mean dashed (COCO
    mAP is the mean of that dashed line), the chosen threshold marked. Two Axes and few
    ticks keep a redraw quick.
    """
    t = _grid_index(iou_threshold)
    data = held_out_matches(name, split, n)
    labels = list(data["matches"])
    fig = Figure(figsize=(8.0, 3.0))
    ax = fig.add_axes((0.07, 0.15, 0.5, 0.72))
    points = recall_points("voc07")
    for k, c in enumerate(labels):
        m = data["matches"][c]
        p, r = data["curves"][c, t]
        envelope = interpolated_precision(torch.from_numpy(p))  # (D,)
        sampled = precision_at(torch.from_numpy(r), envelope, points).numpy()  # (11,)
        envelope = envelope.numpy()
        color = viz.CLASS_COLORS[c]
        ax.plot(r, p, color=color, lw=0.7, alpha=0.5)
        ax.step(np.r_[0, r], np.r_[envelope[0], envelope], where="pre", color=color, lw=1.8)
        ax.plot(points.numpy(), sampled, "o", color=color, ms=3, mec="black", mew=0.5)
        aps = " / ".join(f"{data['ap'][meth][t, k]:.3f}" for meth in AP_METHODS)
        ax.text(0.02, 0.08 + 0.09 * (len(labels) - 1 - k), f"{CLASSES[c]} ({m['n_gt']}): {aps}",
                color=color, fontsize=7, transform=ax.transAxes)
    ax.text(0.02, 0.08 + 0.09 * len(labels), "class (objects): AP VOC07 / all-point / COCO",
            fontsize=7, transform=ax.transAxes)                         # texts: quicker than a legend
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_xticks([0, 0.5, 1])                                        # few ticks: quick redraws
    ax.set_yticks([0, 0.5, 1])
    ax.tick_params(labelsize=7)
    # titles and axis labels as plain texts: set_title and set_xlabel re-measure the axes at
    # every draw, about a quarter of a redraw
    _label(ax, 0.5, 1.03, f"IoU ≥ {IOU_GRID[t]:.2f}: precision (thin), interpolated (thick), "
                          f"VOC07 points", "bottom")
    _label(ax, 0.5, -0.1, "recall", "top")
    _label(ax, -0.07, 0.5, "precision", "center", rotation=90)
    ax = fig.add_axes((0.66, 0.15, 0.32, 0.72))
    for k, c in enumerate(labels):
        ax.plot(IOU_GRID, data["ap"]["coco101"][:, k], "o-", color=viz.CLASS_COLORS[c], ms=3, lw=1)
    ax.plot(IOU_GRID, data["ap"]["coco101"].mean(1), "k--", lw=1)
    ax.plot([IOU_GRID[t]] * 2, [0, 1.05], color="grey", lw=0.8)
    _label(ax, 0.5, 1.03, "AP (COCO) vs IoU threshold; dashed: mean", "bottom")
    _label(ax, 0.5, -0.1, "IoU threshold", "top")
    ax.set_ylim(0, 1.05)
    ax.set_xticks([0.5, 0.75, 0.95])
    ax.set_yticks([0, 0.5, 1])
    ax.tick_params(labelsize=7)
    return fig


def pr_curve_widget(name: str = "faster_rcnn", split: str = "test", n: int = 200):
    """An IoU threshold slider (0.50 to 0.95, COCO's steps) around `pr_curve_figure`."""
    import ipywidgets as W

    return interactive_figure(pr_curve_figure, {
        "iou_threshold": W.FloatSlider(value=0.5, min=0.5, max=0.95, step=0.05, description="IoU ≥",
                                       readout_format=".2f"),
        "name": W.fixed(name), "split": W.fixed(split), "n": W.fixed(n),
    }, grid={"iou_threshold": IOU_GRID})  # every threshold of COCO's mAP: 10 frames
