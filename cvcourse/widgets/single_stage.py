"""Chapters on single-stage detectors: YOLO's grid, SSD's default boxes, RetinaNet's focal loss.

- `grid_outputs` + `grid_figure` / `grid_widget` ("Grid explorer"): the S x S grid over a
  scene, the cell responsible for each object, a chosen cell's B predicted boxes with their
  confidences and its class probabilities, and the objectness of every cell.
- `default_boxes_figure`: SSD's default boxes of one cell on each feature map.
- `focal_loss_figure` / `focal_loss_widget` ("Focal loss explorer"): gamma and alpha against
  the loss curve, the weight left on easy examples, and (given a detector's anchor
  probabilities) the share of the whole classification loss that easy negatives carry.

Figure functions are pure (tensors in, Figure out); the widgets compute model outputs once
and only redraw.
"""

from __future__ import annotations

import numpy as np
import torch
from matplotlib import colors as mcolors
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .. import viz
from ..data import CLASSES
from ..inference import evaluating
from . import check_setting

__all__ = ["grid_outputs", "grid_figure", "grid_widget", "default_boxes_figure",
           "focal_loss_curves", "loss_shares_np", "focal_loss_figure", "focal_loss_widget",
           "anchor_probabilities"]


# ------------------------------------------------------------------------------ grid explorer
@torch.no_grad()
def grid_outputs(model, images: torch.Tensor) -> list[dict]:
    """A YOLO model's decoded grid for each image, on the CPU (what `grid_figure` draws).

    Returns:
        one dict per image: "boxes" [S, S, B, 4] xyxy px, "confidence" [S, S, B] probabilities,
        "class_probs" [S, S, C].
    """
    dev = next(model.parameters()).device
    with evaluating(model):  # the caller's modes are restored afterwards
        g = model.grid(images.to(dev))
    conf, probs = g.confidence.sigmoid().cpu(), g.class_logits.softmax(-1).cpu()
    return [{"boxes": b, "confidence": c, "class_probs": p}
            for b, c, p in zip(g.boxes.cpu(), conf, probs)]


def _cell_outlines(boxes) -> np.ndarray:
    """xyxy boxes ``[N, 4]`` (pixel edges) as closed outlines ``[N, 5, 2]`` in imshow coordinates."""
    x1, y1, x2, y2 = (np.asarray(boxes, dtype=np.float64).reshape(-1, 4) - 0.5).T
    return np.stack([np.stack(p, 1) for p in ((x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1))], 1)


def grid_figure(image: torch.Tensor, target: dict, grid: dict | None = None, row: int | None = None,
                col: int | None = None, grid_size: int = 16) -> Figure:
    """The grid over `image`: responsible cells, and one cell's predictions.

    Args:
        image: [3, H, W]. target: {"boxes" [N, 4], "labels" [N]} ground truth.
        grid: one entry of `grid_outputs` (None: ground truth only).
        row, col: the cell to inspect (default: the cell responsible for the first object).
        grid_size: S when `grid` is None (else read from it).

    Drawn with a fixed layout, one image per panel and line collections, so that a widget
    redraw stays fast.
    """
    from ..models.yolo import assign_cells, responsible_cells

    size = image.shape[-1]
    s = grid["confidence"].shape[0] if grid is not None else grid_size
    cell = size / s
    boxes, labels = target["boxes"], target["labels"]
    rc = responsible_cells(boxes, s, size) if len(boxes) else torch.zeros(0, 2, dtype=torch.long)
    kept = set(assign_cells(boxes, s, size).tolist()) if len(boxes) else set()
    if row is None or col is None:
        row, col = (int(rc[0, 0]), int(rc[0, 1])) if len(rc) else (s // 2, s // 2)
    for v in (row, col):
        if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < s:
            raise ValueError(f"row and col must be ints in [0, {s}), got {row!r} and {col!r}")

    fig = Figure(figsize=(6.8, 3.8) if grid is not None else (3.4, 3.8))
    width = 0.46 if grid is not None else 0.96
    ax = fig.add_axes((0.02, 0.02, width, 0.78))
    rgb = viz.to_numpy_image(image)
    overlay = np.zeros((s, s, 4))                                     # responsible cells, RGBA
    for i, ((r, c), lab) in enumerate(zip(rc.tolist(), labels.tolist())):
        colour = viz.CLASS_COLORS[lab] if i in kept else "#aaaaaa"     # grey: lost to a larger object
        overlay[r, c] = (*mcolors.to_rgb(colour), 0.6)
    ax.imshow(rgb, interpolation="nearest")
    ax.imshow(overlay, extent=(-0.5, size - 0.5, size - 0.5, -0.5), interpolation="nearest")
    ticks = np.arange(1, s) * cell - 0.5
    lines = [[(t, -0.5), (t, size - 0.5)] for t in ticks] + [[(-0.5, t), (size - 0.5, t)] for t in ticks]
    ax.add_collection(LineCollection(lines, colors="white", linewidths=0.4, alpha=0.6))
    if len(boxes):
        ax.add_collection(LineCollection(_cell_outlines(boxes), colors=[viz.CLASS_COLORS[k] for k in labels.tolist()],
                                         linewidths=1.5))
        centres = ((boxes[:, :2] + boxes[:, 2:]) / 2 - 0.5).numpy()
        ax.plot(centres[:, 0], centres[:, 1], "o", ms=3.5, color="white", mec="black", mew=0.6)
    ax.add_collection(LineCollection(_cell_outlines([[col * cell, row * cell, (col + 1) * cell, (row + 1) * cell]]),
                                     colors="yellow", linewidths=2.2))
    # fig.text, not ax.set_title: placing a title measures the axes' contents, which is slow
    fig.text(0.02 + width / 2, 0.82, f"{s}x{s} grid: responsible cells filled\nyellow: cell ({row}, {col}) and "
             f"its boxes", fontsize=8, ha="center", va="bottom")
    if grid is not None:
        conf, pred = grid["confidence"][row, col], grid["boxes"][row, col]   # (B,), (B, 4)
        ax.add_collection(LineCollection(_cell_outlines(pred.clamp(0, size)), colors="yellow",
                                         linewidths=1.4, linestyles="--"))
        # a box of width or height 0 (a negative sqrt output, clamped) outlines as a line or
        # a point: its centre marker and its size in the label keep it visible
        centres = ((pred[:, :2] + pred[:, 2:]) / 2).clamp(0, size - 1) - 0.5         # (B, 2)
        ax.plot(centres[:, 0].numpy(), centres[:, 1].numpy(), "x", color="yellow", ms=6, mew=1.5)
        for b, (box, p) in enumerate(zip(pred.tolist(), conf.tolist())):
            w, h = box[2] - box[0], box[3] - box[1]
            ax.text(min(max(box[0], 0), size - 58), min(max(box[3], 8), size - 1),
                    f"box {b}: {p:.2f}, {w:.0f}x{h:.0f} px", color="yellow", fontsize=7, va="top",
                    bbox=dict(facecolor="black", alpha=0.6, pad=1, lw=0))
    ax.set_xlim(-0.5, size - 0.5)
    ax.set_ylim(size - 0.5, -0.5)
    ax.set_axis_off()
    if grid is None:
        return fig

    ax = fig.add_axes((0.52, 0.02, 0.46, 0.78))
    objectness = grid["confidence"].max(-1).values                       # (S, S)
    ax.imshow(objectness.numpy(), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    ax.plot(rc[:, 1].numpy(), rc[:, 0].numpy(), "o", mfc="none", mec="cyan", ms=8, mew=1.4)
    ax.add_collection(LineCollection(_cell_outlines([[col, row, col + 1, row + 1]]), colors="yellow",
                                     linewidths=2))
    probs = grid["class_probs"][row, col]                                 # (C,)
    classes = ", ".join(f"{CLASSES[k + 1]} {p:.2f}" for k, p in enumerate(probs.tolist()))
    confs = ", ".join(f"{p:.2f}" for p in conf.tolist())
    fig.text(0.75, 0.82, f"objectness of every cell (black 0, white 1)\ncell ({row}, {col}): {classes}\n"
             f"confidence of its boxes: {confs}", fontsize=8, ha="center", va="bottom")
    ax.set_axis_off()
    return fig


def grid_widget(model, images: torch.Tensor, targets: list[dict]):
    """Grid explorer: pick a scene and a cell; the model's grid is computed once for all scenes."""
    import ipywidgets as W

    from . import interactive_figure

    outputs = grid_outputs(model, images)
    s = outputs[0]["confidence"].shape[0]

    def figure(index, row, col):
        return grid_figure(images[index], targets[index], outputs[index], row, col)

    from ..models.yolo import responsible_cells
    from .static import evenly

    r0, c0 = responsible_cells(targets[0]["boxes"], s, images.shape[-1])[0].tolist()
    return interactive_figure(figure, {
        "index": W.IntSlider(value=0, min=0, max=len(images) - 1, description="scene"),
        "row": W.IntSlider(value=r0, min=0, max=s - 1, description="row"),
        "col": W.IntSlider(value=c0, min=0, max=s - 1, description="col"),
    }, grid={"index": evenly(range(len(images)), 2), "row": evenly(range(s), 4, r0),
             "col": evenly(range(s), 4, c0)})


# ------------------------------------------------------------------------------ default boxes
def default_boxes_figure(image: torch.Tensor, scales=(12, 24, 48, 96), aspect_ratios=(0.5, 2.0),
                         strides=(8, 16, 32), cell: tuple[float, float] = (0.5, 0.5)) -> Figure:
    """SSD's default boxes of one cell (at relative position `cell` of the image) on each map."""
    from ..models.ssd import default_boxes

    size = image.shape[-1]
    fig, axes = viz.subplots(1, len(strides), size=3.0)
    for k, (ax, stride) in enumerate(zip(axes[0], strides)):
        n = size // stride
        r, c = min(int(cell[0] * n), n - 1), min(int(cell[1] * n), n - 1)
        boxes = default_boxes((n, n), stride, scales[k], scales[k + 1], aspect_ratios)
        a = len(boxes) // (n * n)
        mine = boxes[(r * n + c) * a:(r * n + c + 1) * a]
        viz.show_image(image, ax=ax, title=f"stride {stride}: {n}x{n} map, {a} boxes/cell\n"
                                            f"scale {scales[k]} px")
        for j in range(1, n):
            ax.axhline(j * stride - 0.5, color="white", lw=0.3, alpha=0.5)
            ax.axvline(j * stride - 0.5, color="white", lw=0.3, alpha=0.5)
        ax.add_patch(Rectangle((c * stride - 0.5, r * stride - 0.5), stride, stride,
                               facecolor="yellow", alpha=0.4))
        for i, box in enumerate(mine.tolist()):
            viz.draw_box(ax, box, viz.INSTANCE_COLORS[i], linewidth=1.5)
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
    return fig


# ------------------------------------------------------------------------ focal loss explorer
def focal_loss_curves(p_t: np.ndarray, gamma: float, alpha_t: float = 1.0) -> np.ndarray:
    """``alpha_t (1 - p_t)^gamma (-log p_t)``: the focal loss of an example whose true label
    gets probability `p_t` (gamma 0, alpha_t 1: cross-entropy)."""
    p_t = np.clip(np.asarray(p_t, dtype=np.float64), 1e-12, 1.0)
    return alpha_t * (1 - p_t) ** gamma * -np.log(p_t)


def loss_shares_np(probs: np.ndarray, targets: np.ndarray, gamma: float, alpha: float,
                   easy: float = 0.9) -> dict:
    """Shares of the summed loss from positives, hard and easy negatives (p_t >= `easy`).

    `probs` and `targets` are flat arrays of (anchor, class) probabilities and 0/1 labels;
    ``alpha < 0`` disables the alpha weighting (as in `sigmoid_focal_loss`).
    """
    probs, targets = np.asarray(probs, np.float64), np.asarray(targets) > 0.5
    p_t = np.where(targets, probs, 1 - probs)
    a_t = 1.0 if alpha < 0 else np.where(targets, alpha, 1 - alpha)
    loss = focal_loss_curves(p_t, gamma, a_t)
    total = max(loss.sum(), 1e-300)
    easy_neg = ~targets & (p_t >= easy)
    return {"positives": loss[targets].sum() / total,
            "hard_negatives": loss[~targets & ~easy_neg].sum() / total,
            "easy_negatives": loss[easy_neg].sum() / total}


def focal_loss_figure(gamma: float = 2.0, alpha: float = 0.25, probs=None, targets=None,
                      easy: float = 0.9) -> Figure:
    """The focal loss FL(gamma, alpha) against cross-entropy, and the weight it leaves on easy
    negatives; given a detector's (anchor, class) `probs` and 0/1 `targets`, also where the
    summed loss comes from under each (positives, hard negatives, easy negatives).

    Drawn with a fixed layout and few text elements, so that a widget redraw stays fast.
    """
    check_setting("gamma", gamma, 0, 20)
    if alpha != -1:  # -1: no class weighting (torchvision's convention)
        check_setting("alpha", alpha, 0, 1)
    check_setting("easy", easy, 0, 1, open_high=True)
    p_t = np.linspace(0.001, 0.999, 100)
    a_neg, a_pos = (1.0, 1.0) if alpha < 0 else (1 - alpha, alpha)
    fig = Figure(figsize=(7.6, 3.2))
    ax = fig.add_axes((0.07, 0.14, 0.40, 0.68))
    ax.axvspan(easy, 1, color="#dddddd", zorder=0)
    ax.plot(p_t, focal_loss_curves(p_t, 0.0), color="black", lw=1.5, label="cross-entropy")
    ax.plot(p_t, focal_loss_curves(p_t, gamma, a_neg), color="#4363d8", lw=1.8, label=f"FL, negative (x{a_neg:g})")
    ax.plot(p_t, focal_loss_curves(p_t, gamma, a_pos), color="#3cb44b", lw=1.2, ls="--",
            label=f"FL, positive (x{a_pos:g})")
    ax.set_ylim(0, 4)
    ax.set_xlim(0, 1)
    ax.set_xticks([0, 0.5, 1], ["p_t = 0", "0.5", "1"], fontsize=8)   # few fixed ticks: quick to draw
    ax.set_yticks([0, 2, 4], ["0", "2", "4"], fontsize=8)
    ax.text(0.98, 3.9, "black: CE\nblue: FL, negative\ngreen: FL, positive",
            fontsize=7, ha="right", va="top")                 # (a legend is slower to draw)
    w9, w99 = (a_neg * (1 - q) ** gamma for q in (0.9, 0.99))
    # fig.text, not ax.set_title: placing a title measures the tick labels, which is slow
    fig.text(0.27, 0.86, f"γ = {gamma:g}, α = {alpha:g}: a negative keeps x{w9:.2g} of its\ncross-entropy at "
             f"p_t = 0.9, x{w99:.2g} at 0.99 (grey: easy)", fontsize=8, ha="center", va="bottom")
    ax = fig.add_axes((0.58, 0.26, 0.38, 0.54))
    if probs is None:                                        # the weight curve alone, log scale
        ax.semilogy(p_t, a_neg * (1 - p_t) ** gamma + 1e-12, color="#4363d8", lw=1.8)
        ax.axvspan(easy, 1, color="#dddddd", zorder=0)
        ax.set_ylim(1e-7, 2)
        ax.set_yticks([1e-6, 1e-4, 1e-2, 1], ["1e-6", "1e-4", "0.01", "1"], fontsize=8)
        ax.minorticks_off()                                  # (log-scale tick labels are slow)
        ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"], fontsize=8)
        fig.text(0.77, 0.86, "weight on a negative, FL / CE", fontsize=9, ha="center", va="bottom")
        return fig
    rows = [loss_shares_np(probs, targets, 0.0, -1, easy), loss_shares_np(probs, targets, gamma, alpha, easy)]
    parts = ("easy_negatives", "hard_negatives", "positives")
    widths = np.array([[r[p] for p in parts] for r in rows])                 # (2, 3)
    lefts = np.cumsum(widths, axis=1) - widths
    ax.barh(np.repeat([0, 1], 3), widths.ravel(), left=lefts.ravel(), height=0.45,   # one call: quicker
            color=["#bbbbbb", "#4363d8", "#3cb44b"] * 2)
    for y, (name, r) in enumerate(zip(("CE", "FL"), rows)):
        ax.text(0.0, y + 0.26, f"{name}: easy {r['easy_negatives']:.0%}, hard {r['hard_negatives']:.0%}, "
                f"positives {r['positives']:.0%}", fontsize=7.5, va="bottom")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.3, 1.75)
    ax.set_axis_off()                                        # (the text says it all; ticks are slow)
    fig.text(0.77, 0.86, f"share of the loss of {len(probs):,} anchor-class pairs:\ngrey easy negatives, "
             f"blue hard negatives, green positives", fontsize=8, ha="center", va="bottom")
    return fig


def anchor_probabilities(model, images: torch.Tensor, targets: list[dict]):
    """A RetinaNet's (anchor, class) probabilities and 0/1 targets on `images`, ignored
    anchors left out: two flat numpy arrays (what `focal_loss_figure` takes)."""
    logits, onehot = model.anchor_logits(images, targets)
    return logits.sigmoid().cpu().numpy().ravel(), onehot.cpu().numpy().ravel()


def focal_loss_widget(probs=None, targets=None):
    """Focal loss explorer: gamma and alpha sliders over `focal_loss_figure`."""
    import ipywidgets as W

    from . import interactive_figure

    return interactive_figure(focal_loss_figure, {
        "gamma": W.FloatSlider(value=2.0, min=0.0, max=5.0, step=0.5, description="gamma"),
        "alpha": W.FloatSlider(value=0.25, min=0.05, max=0.95, step=0.05, description="alpha"),
        "probs": W.fixed(probs), "targets": W.fixed(targets),
    }, grid={"gamma": [0.5 * k for k in range(11)], "alpha": [0.25, 0.5, 0.75]})
