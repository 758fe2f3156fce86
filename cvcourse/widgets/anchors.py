"""Chapter "Region Proposal Network": the anchor explorer.

- `anchor_figure` / `anchor_widget`: the anchors of one feature-map location on a scene,
  each coloured by the label the RPN's training would give it (positive: IoU >= `high`
  with some ground truth, or the best anchor of a ground truth; negative: IoU < `low`;
  ignored otherwise), and, over the whole image, every positive and ignored anchor with the
  best IoU reached at each location.

Anchors follow torchvision's convention (`cvcourse.ops.anchors.anchors_for`): the anchors
of cell (row, col) are centred on the pixel ``(col * stride, row * stride)``, the top-left
corner of the cell's patch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure

from .. import viz
from ..data import make_scene
from ..ops.anchors import anchors_for
from ..ops.boxes import box_iou
from ..ops.matching import label_anchors
from . import check_setting

__all__ = ["LABEL_COLORS", "anchor_labels", "anchor_figure", "anchor_widget"]

LABEL_COLORS = {1: "#2ca02c", 0: "#d62728", -1: "#ff9f1a"}  # positive, negative, ignored
LABEL_NAMES = {1: "positive", 0: "negative", -1: "ignored"}
SIZE_CHOICES = {"16, 32, 64": (16, 32, 64), "32": (32,), "8, 16": (8, 16), "24, 48, 96": (24, 48, 96)}
RATIO_CHOICES = {"0.5, 1, 2": (0.5, 1.0, 2.0), "1": (1.0,), "0.33, 1, 3": (1 / 3, 1.0, 3.0)}


def anchor_labels(gt_boxes: torch.Tensor, sizes: Sequence[float] = (16, 32, 64),
                  ratios: Sequence[float] = (0.5, 1.0, 2.0), stride: int = 8, size: int = 128,
                  high: float = 0.7, low: float = 0.3):
    """All anchors of a ``size x size`` image at `stride` and their RPN training labels.

    Returns:
        (anchors [h * w * A, 4], AnchorLabels with ``labels``, ``matched_gt``, ``iou`` [h * w * A]).
    """
    if not isinstance(stride, int) or stride < 1 or size % stride:
        raise ValueError(f"stride must be a positive int dividing the image size {size}, got {stride!r}")
    anchors = anchors_for((size // stride, size // stride), stride, sizes, ratios)
    return anchors, label_anchors(anchors, gt_boxes.float(), high, low)


def _outlines(boxes: torch.Tensor) -> list:
    """xyxy pixel-edge boxes as polygons in imshow coordinates (pixel j centred at j)."""
    x1, y1, x2, y2 = (boxes - 0.5).T.tolist()
    return [[(a, b), (c, b), (c, d), (a, d)] for a, b, c, d in zip(x1, y1, x2, y2)]


def anchor_figure(scene: int = 0, sizes: Sequence[float] = (16, 32, 64),
                  ratios: Sequence[float] = (0.5, 1.0, 2.0), row: int = 7, col: int = 10,
                  high: float = 0.7, low: float = 0.3, stride: int = 8, split: str = "test") -> Figure:
    """The anchors at cell (`row`, `col`) of scene `scene`, and all anchors' labels.

    Args:
        scene, split: the shapes scene (128 x 128) and its split.
        sizes, ratios: anchor sizes (pixels) and aspect ratios (height / width).
        row, col: the feature-map location whose anchors are drawn on the left.
        high, low: IoU thresholds for positive (>=) and negative (<) anchors.
        stride: image pixels per feature cell.

    Returns:
        Figure: left, the location's anchors with their IoU and label; right, every positive
        anchor (green), the locations with an ignored one (orange dots) and the best IoU at
        each location (shading).
    """
    check_setting("high", high, 0, 1)
    check_setting("low", low, 0, 1)  # low <= high is label_anchors' check
    check_setting("row", row, 0, None, integer=True)
    check_setting("col", col, 0, None, integer=True)
    data = make_scene(scene, split=split)
    image, gt = data["image"], data["boxes"]
    size = image.shape[-1]
    anchors, lab = anchor_labels(gt, sizes, ratios, stride, size, high, low)
    cells, a = size // stride, len(sizes) * len(ratios)
    if not (0 <= row < cells and 0 <= col < cells):
        raise ValueError(f"row and col must be in [0, {cells}), got ({row}, {col})")
    fig = Figure(figsize=(8.4, 4.6))  # fixed axes: a layout engine would double the redraw time
    ax_cell = fig.add_axes((0.01, 0.01, 0.48, 0.87))
    ax_all = fig.add_axes((0.51, 0.01, 0.48, 0.87))

    # Left: one location's anchors.
    k = (row * cells + col) * a + torch.arange(a)  # location-major, then the A anchors
    here = anchors[k]
    iou = box_iou(gt, here) if len(gt) else torch.zeros(0, a)  # (G, A)
    viz.draw_boxes(image, gt, ax=ax_cell, color_by="instance", linestyle="--")
    colors = [LABEL_COLORS[int(v)] for v in lab.labels[k]]
    ax_cell.add_collection(PolyCollection(_outlines(here), facecolors="none", edgecolors=colors,
                                          linewidths=1.6))
    ax_cell.plot([col * stride - 0.5], [row * stride - 0.5], "w+", markersize=9, mew=2)
    best = iou.max(0).values if len(gt) else torch.zeros(a)
    for j, (box, v) in enumerate(zip(here.tolist(), best.tolist())):
        ax_cell.text(min(max(box[0], 0), size - 14), min(max(box[3], 8), size - 1), f"{v:.2f}",
                     fontsize=6, color="white", bbox=dict(facecolor=colors[j], alpha=0.8, pad=0.5,
                                                          linewidth=0))
    ax_cell.set_xlim(-0.5, size - 0.5)
    ax_cell.set_ylim(size - 0.5, -0.5)
    counts_here = ", ".join(f"{int((lab.labels[k] == v).sum())} {LABEL_NAMES[v]}" for v in (1, -1, 0))
    viz.set_title(ax_cell, f"the {a} anchors of cell ({row}, {col}), best IoU written\n{counts_here}",
                  fontsize=8)

    # Right: every anchor's label over the image.
    viz.show_image(image, ax=ax_all)
    best_map = lab.iou.view(cells, cells, a).amax(-1)  # (cells, cells) best IoU at each location
    ax_all.imshow(best_map.numpy(), cmap="viridis", vmin=0, vmax=1, alpha=0.45,
                  interpolation="nearest", extent=(-0.5 * stride - 0.5, size - 0.5 * stride - 0.5,
                                                   size - 0.5 * stride - 0.5, -0.5 * stride - 0.5))
    ignored = lab.labels.view(cells, cells, a).eq(-1).any(-1).nonzero()  # (M, 2) cells (row, col)
    ax_all.plot(ignored[:, 1] * stride - 0.5, ignored[:, 0] * stride - 0.5, ".",
                color=LABEL_COLORS[-1], markersize=4)
    ax_all.add_collection(PolyCollection(_outlines(anchors[lab.labels == 1]), facecolors="none",
                                         edgecolors=LABEL_COLORS[1], linewidths=1.3))
    ax_all.set_xlim(-0.5, size - 0.5)
    ax_all.set_ylim(size - 0.5, -0.5)
    counts = {v: int((lab.labels == v).sum()) for v in (1, -1, 0)}
    viz.set_title(ax_all, f"{len(anchors)} anchors ({cells}×{cells} cells × {a}): "
                  f"{counts[1]} positive (boxes),\n"
                  f"{counts[-1]} ignored (dots: their cells), {counts[0]} negative; shading: best IoU",
                  fontsize=8)
    return fig


def anchor_widget(scene: int = 0):
    """Scene, anchor sizes and ratios, location and IoU thresholds -> `anchor_figure`."""
    import ipywidgets as W

    from . import interactive_figure
    from .upsampling import message_figure

    def draw(**kw):
        try:
            return anchor_figure(**kw)
        except ValueError as e:  # e.g. low > high: say so instead of a traceback
            return message_figure(str(e))

    cells = 128 // 8 - 1
    return interactive_figure(draw, {
        "scene": W.IntSlider(value=scene, min=0, max=199, description="scene", continuous_update=False),
        "sizes": W.Dropdown(options=list(SIZE_CHOICES.items()), value=(16, 32, 64), description="sizes"),
        "ratios": W.Dropdown(options=list(RATIO_CHOICES.items()), value=(0.5, 1.0, 2.0),
                             description="ratios h/w"),
        "row": W.IntSlider(value=7, min=0, max=cells, description="row", continuous_update=False),
        "col": W.IntSlider(value=10, min=0, max=cells, description="col", continuous_update=False),
        "high": W.FloatSlider(value=0.7, min=0.3, max=0.9, step=0.05, description="positive ≥",
                              continuous_update=False),
        "low": W.FloatSlider(value=0.3, min=0.05, max=0.7, step=0.05, description="negative <",
                             continuous_update=False),
        "stride": W.fixed(8),
    }, grid={"scene": sorted({scene, (scene + 1) % 200, (scene + 2) % 200}), "row": [3, 7, 11],
             "col": [6, 10], "high": [0.5, 0.7]})
