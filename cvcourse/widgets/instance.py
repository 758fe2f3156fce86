"""The instance segmentation chapter (Mask R-CNN): figures and the mask browser.

- `held_out_instances`: a shipped Mask R-CNN's detections on held-out scenes (cached).
- `semantic_vs_instance_figure`: one region from a semantic segmenter, two instance masks.
- `mask_target_figure`: a ground-truth mask, a RoI, and the 28x28 target cut along the RoI.
- `instance_figure` / `instance_widget`: each detection's raw 28x28 mask, the mask pasted
  into its box, its box and class; the threshold is a slider.
- `best_mask_iou`, `pooler_figure`: how well the RoI Align and the RoI Pool models' masks
  cover the true objects.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .. import viz
from ..data import CLASSES

__all__ = ["held_out_instances", "semantic_vs_instance_figure", "mask_target_figure",
           "instance_figure", "instance_browser_figure", "instance_widget", "best_mask_iou",
           "pooler_figure"]


def held_out_instances(name: str = "mask_rcnn", split: str = "test", n: int = 100,
                       weights_dir=None) -> dict:
    """Checkpoint `name`'s detections on the first `n` scenes of `split`, computed once.

    Returns: {"images" [n, 3, 128, 128], "targets" (list of dicts), "detections" (per image
    "boxes", "scores", "labels", "masks" bool [D, H, W] at 0.5, "roi_masks" [D, 1, 28, 28])}.
    """
    return _held_out_instances(name, split, n, None if weights_dir is None else str(weights_dir))


@lru_cache(maxsize=4)
def _held_out_instances(name: str, split: str, n: int, weights_dir) -> dict:
    from .. import pretrained
    from ..data.scenes import held_out_scenes
    from ..inference import segment

    images, targets = held_out_scenes(split, n)
    model = pretrained.load(name, weights_dir=weights_dir)
    return {"images": images, "targets": targets, "detections": segment(model, images)}


def _keep(det: dict, score_thresh: float, max_instances: int) -> dict:
    keep = torch.where(det["scores"] >= score_thresh)[0][:max_instances]  # scores are sorted
    return {k: v[keep] for k, v in det.items()}


def _rgba(mask: np.ndarray, color: str, alpha: float = 0.55) -> np.ndarray:
    """A bool [H, W] mask as an RGBA layer: `color` where True, transparent elsewhere."""
    out = np.zeros((*mask.shape, 4))
    out[mask] = (*mcolors.to_rgb(color), alpha)
    return out


def _box(ax, box, color, lw=1.5, ls="-"):
    viz.draw_box(ax, box, color, linewidth=lw, linestyle=ls)


def _zoom(ax, box, margin: float = 0.3) -> None:
    x1, y1, x2, y2 = [float(v) for v in box]
    pad = margin * max(x2 - x1, y2 - y1) + 2
    ax.set_xlim(x1 - pad - 0.5, x2 + pad - 0.5)
    ax.set_ylim(y2 + pad - 0.5, y1 - pad - 0.5)


def semantic_vs_instance_figure(image: torch.Tensor, semantic: torch.Tensor, detections: dict,
                                label: int, semantic_title: str = "U-Net (semantic)",
                                zoom=None) -> Figure:
    """The image; a semantic map's region of class `label`; the detections of that class.

    Args: image [3, H, W]; semantic [h, w] class map (any size: shown over the image's extent);
    detections: {"boxes", "labels", "scores", "masks" [D, H, W] bool or [D, 1, H, W]};
    zoom: an xyxy box the last two panels are zoomed on (None: the whole image).
    """
    fig = Figure(figsize=(9, 3.2), layout="constrained")
    axes = fig.subplots(1, 3)
    h, w = image.shape[-2:]
    viz.show_image(image, ax=axes[0], title="held-out scene")
    region = (semantic == label).numpy()
    axes[1].imshow(viz.to_numpy_image(image), extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    axes[1].imshow(_rgba(region, viz.CLASS_COLORS[label], 0.9), interpolation="nearest",
                   extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    viz.set_title(axes[1], f"{semantic_title}: class '{CLASSES[label]}'\none label for all its pixels",
                  fontsize=9)
    masks = detections["masks"]
    masks = masks[:, 0] if masks.dim() == 4 else masks
    pick = torch.where(detections["labels"] == label)[0]
    viz.show_image(image, ax=axes[2])
    for k, i in enumerate(pick.tolist()):
        color = viz.INSTANCE_COLORS[k % len(viz.INSTANCE_COLORS)]
        axes[2].imshow(_rgba((masks[i] > 0.5).numpy(), color, 0.6), interpolation="nearest")
        _box(axes[2], detections["boxes"][i], color)
    viz.set_title(axes[2], f"Mask R-CNN: {len(pick)} instances of '{CLASSES[label]}'\n"
                  "one mask per object", fontsize=9)
    if zoom is not None:
        _box(axes[0], zoom, "white", lw=1.0, ls="--")
        for ax in axes[1:]:
            _zoom(ax, zoom)
    for ax in axes:
        ax.axis("off")
    return fig


def mask_target_figure(image: torch.Tensor, gt_mask: torch.Tensor, box: torch.Tensor,
                       target: torch.Tensor) -> Figure:
    """Image with a RoI; the ground-truth mask with the RoI; the M x M target inside the RoI."""
    fig = Figure(figsize=(8.4, 2.9), layout="constrained")
    axes = fig.subplots(1, 3)
    viz.show_image(image, ax=axes[0], title="a positive RoI (proposal)")
    axes[1].imshow(gt_mask.float().numpy(), cmap="gray", vmin=0, vmax=1)
    viz.set_title(axes[1], "its object's ground-truth mask (zoomed)", fontsize=9)
    for ax in axes[:2]:
        _box(ax, box, "#ffe119", lw=2)
    _zoom(axes[1], box, 0.4)
    m = target.shape[-1]
    axes[2].imshow(target.numpy(), cmap="gray", vmin=0, vmax=1)
    viz.set_title(axes[2], f"target: RoI Align of the mask, {m}×{m}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    return fig


def _crop_square(mask: np.ndarray, box, margin: float = 0.25):
    """A square window of `mask` around `box` (zero-padded past the border): crop, top-left."""
    x1, y1, x2, y2 = [float(v) for v in box]
    side = int(np.ceil(max(x2 - x1, y2 - y1) * (1 + 2 * margin))) + 4
    left, top = int(np.floor((x1 + x2 - side) / 2)), int(np.floor((y1 + y2 - side) / 2))
    padded = np.pad(mask, side)                    # so the window never leaves the array
    return padded[top + side:top + 2 * side, left + side:left + 2 * side], (left, top)


def _edge(mask: np.ndarray) -> np.ndarray:
    """Pixels of a bool mask with a 4-neighbour outside it."""
    p = np.pad(mask, 1)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return mask & ~inner


def instance_figure(image: torch.Tensor, detections: dict, threshold: float = 0.5,
                    score_thresh: float = 0.5, max_instances: int = 4, title: str = "") -> Figure:
    """Each detection's raw 28x28 mask (top) and the same mask pasted into its box (bottom).

    Args:
        image: [3, H, W]. detections: {"boxes" [D, 4], "scores" [D] (sorted), "labels" [D],
            "roi_masks" [D, 1, M, M] probabilities of the predicted class}.
        threshold: mask probability at which a pixel belongs to the object (outlines, overlay).
        score_thresh, max_instances: which detections are shown (the best first).

    All panels share one Axes (in image pixels), which redraws several times faster than
    one Axes per panel.
    """
    from ..models.mask_rcnn import paste_masks_in_image

    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    det = _keep(detections, score_thresh, max_instances)
    h, w = image.shape[-2:]
    pasted = paste_masks_in_image(det["roi_masks"], det["boxes"], (h, w))[:, 0].numpy()  # (k, H, W)
    k = len(pasted)
    band, gap = 0.14 * h, 0.05 * h                  # title band above the panels, gap between
    side = (h - gap) / 2                            # the two mask panels stacked beside the image
    total_w, total_h = w + k * (gap + side), band + h
    inch = 3.3 / total_h
    fig = Figure(figsize=(total_w * inch + 0.1, total_h * inch))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(-1, total_w + 1)
    ax.set_ylim(total_h, 0)
    ax.axis("off")

    def text(x, y, s, **kw):
        ax.text(x, y, s, ha="center", va="bottom", fontsize=7, **kw)

    shown = viz.to_numpy_image(image).copy()                             # (H, W, 3)
    for i in range(k):  # composed here: one image to draw is quicker than one layer per mask
        inside = pasted[i] >= threshold
        shown[inside] = 0.45 * shown[inside] + 0.55 * np.array(mcolors.to_rgb(viz.INSTANCE_COLORS[i % 10]))
    ax.imshow(shown, extent=(0, w, band + h, band), interpolation="nearest")
    text(w / 2, band - 2, title or f"{k} detections (score ≥ {score_thresh:g}), masks ≥ {threshold:.2f}")
    if k == 0:
        text(w / 2, band + h / 2, "no detection above the score threshold", color="white",
             bbox=dict(facecolor="black", alpha=0.6))
    for i in range(k):
        color = viz.INSTANCE_COLORS[i % len(viz.INSTANCE_COLORS)]
        x1, y1, x2, y2 = det["boxes"][i].tolist()
        name = CLASSES[int(det["labels"][i])]
        ax.add_patch(Rectangle((x1, band + y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=1.5))
        x0 = w + gap + i * (gap + side)
        raw = det["roi_masks"][i, 0].numpy()                             # (M, M)
        m = raw.shape[-1]
        crop, (left, top) = _crop_square(pasted[i], det["boxes"][i])    # (L, L) around the box
        y0, scale = band + side + gap, side / len(crop)
        for panel, y in ((raw, band), (crop, y0)):     # outlined: the thresholded mask's edge pixels
            rgb = colormaps["magma"](panel)[..., :3]                     # (., ., 3)
            rgb[_edge(panel >= threshold)] = mcolors.to_rgb(color)
            ax.imshow(rgb, interpolation="nearest", extent=(x0, x0 + side, y + side, y))
        area = int((pasted[i] >= threshold).sum())
        text(x0 + side / 2, band - 2, f"{name} {float(det['scores'][i]):.2f}, {area} px\n"
                                     f"raw {m}×{m} mask ↓ pasted")
        ax.add_patch(Rectangle((x0, band - 1.5), side, 1.5, color=color))  # links column and box
        ax.add_patch(Rectangle((x0 + (x1 - left) * scale, y0 + (y1 - top) * scale), (x2 - x1) * scale,
                               (y2 - y1) * scale, fill=False, edgecolor="white", lw=1.0, ls="--"))
    return fig


def instance_browser_figure(index: int = 0, threshold: float = 0.5, score_thresh: float = 0.5,
                            name: str = "mask_rcnn", split: str = "test", n: int = 20,
                            weights_dir=None) -> Figure:
    """`instance_figure` for held-out scene `index` of checkpoint `name` (detections cached)."""
    if not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"index must be an int in [0, {n}), got {index!r}")
    data = held_out_instances(name, split, n, weights_dir)
    return instance_figure(data["images"][index], data["detections"][index], threshold,
                           score_thresh, title=f"{split} scene {index}: masks ≥ {threshold:.2f}")


def instance_widget(name: str = "mask_rcnn", split: str = "test", n: int = 20, weights_dir=None):
    """Browse held-out scenes: raw and pasted masks, boxes and classes; threshold slider."""
    import ipywidgets as W

    from . import interactive_figure
    from .static import evenly

    return interactive_figure(instance_browser_figure, {
        "index": W.IntSlider(value=0, min=0, max=n - 1, description="scene"),
        "threshold": W.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05,
                                   description="mask ≥"),
        "score_thresh": W.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05,
                                      description="score ≥"),
        "name": W.fixed(name), "split": W.fixed(split), "n": W.fixed(n),
        "weights_dir": W.fixed(weights_dir),
    }, grid={"index": evenly(range(n), 4), "threshold": [0.25, 0.5, 0.75], "score_thresh": [0.3, 0.5, 0.7]})


def best_mask_iou(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """For each true mask [N, H, W], the IoU of the predicted mask [D, H, W] that overlaps it
    most: [N] (0 where there is no prediction)."""
    if len(pred) == 0 or len(truth) == 0:
        return torch.zeros(len(truth))
    p, t = pred.flatten(1).float(), truth.flatten(1).float()
    inter = t @ p.T                                                      # (N, D)
    union = t.sum(1)[:, None] + p.sum(1)[None] - inter
    return (inter / union.clamp(min=1)).max(1).values


OUTCOME_COLORS = {"mask and object": "#3cb44b", "mask only": "#e6194b", "object only": "#4363d8"}


def pooler_figure(image: torch.Tensor, target: dict, detections: list, names: tuple,
                  score_thresh: float = 0.5, zoom: int | None = None) -> Figure:
    """The true objects, then each model's masks (score >= `score_thresh`) coloured by
    outcome: pixels in a mask and an object, in a mask only, in an object only.

    Args: image [3, H, W]; target {"masks" [N, H, W], "boxes"}; detections: one dict per
    model (``"masks"`` bool [D, H, W]); names: a title per model; zoom: index of the true
    object to zoom on, whose best mask IoU goes in each title (None: the whole image).
    """
    from matplotlib.patches import Patch

    fig = Figure(figsize=(2.9 * (1 + len(detections)), 3.3), layout="constrained")
    axes = fig.subplots(1, 1 + len(detections))
    truth = target["masks"].bool()
    union = truth.any(0).numpy()
    viz.show_image(image, ax=axes[0])
    viz.set_title(axes[0], "true objects (dashed)", fontsize=9)
    for ax, det, name in zip(axes[1:], detections, names):
        d = _keep(det, score_thresh, 100)
        masks = d["masks"][:, 0] if d["masks"].dim() == 4 else d["masks"]
        pred = masks.bool().any(0).numpy() if len(masks) else np.zeros_like(union)
        gray = viz.to_numpy_image(image).mean(-1, keepdims=True)         # (H, W, 1): colours
        shown = np.repeat(0.3 + 0.4 * gray, 3, axis=-1)                     # read on grey only
        for where, color in zip((pred & union, pred & ~union, ~pred & union), OUTCOME_COLORS.values()):
            shown[where] = 0.15 * shown[where] + 0.85 * np.array(mcolors.to_rgb(color))
        ax.imshow(shown, interpolation="nearest")
        if zoom is not None:
            iou = float(best_mask_iou(masks.bool(), truth[zoom:zoom + 1])[0])
            name = f"{name}: mask IoU {iou:.2f}"
        viz.set_title(ax, name, fontsize=9)
    for ax in axes:
        ax.contour(union.astype(float), levels=[0.5], colors=["white"], linewidths=0.8,
                   linestyles="--")
        if zoom is not None:
            _zoom(ax, target["boxes"][zoom])
        ax.axis("off")
    fig.legend(handles=[Patch(color=c, label=k) for k, c in OUTCOME_COLORS.items()],
               loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig
