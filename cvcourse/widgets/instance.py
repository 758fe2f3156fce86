"""The instance segmentation chapter (Mask R-CNN): figures and the mask browser.

- `held_out_instances`: a shipped Mask R-CNN's detections on held-out scenes (cached).
- `semantic_vs_instance_figure`: one region from a semantic segmenter, two instance masks.
- `mask_target_figure`: a ground-truth mask, a RoI, and the 28x28 target cut along the RoI.
- `instance_figure` / `instance_widget`: each detection's raw 28x28 mask, the mask pasted
  into its box, its box and class; the threshold is a slider.
- `pooler_figure`: the same scene's masks from the RoI Align and the RoI Pool models.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .. import viz
from ..data import CLASSES

__all__ = ["held_out_instances", "semantic_vs_instance_figure", "mask_target_figure",
           "instance_figure", "instance_browser_figure", "instance_widget", "pooler_figure"]


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
    from ..recipes.detection import held_out_scenes
    from ..recipes.instance import segment

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
    x1, y1, x2, y2 = [float(v) for v in box]
    ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=color,
                           linewidth=lw, linestyle=ls))


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
    axes[1].imshow(_rgba(region, viz.CLASS_COLORS[label], 0.75), interpolation="nearest",
                   extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    axes[1].set_title(f"{semantic_title}: class '{CLASSES[label]}'\none label for all its pixels",
                      fontsize=9)
    masks = detections["masks"]
    masks = masks[:, 0] if masks.dim() == 4 else masks
    pick = torch.where(detections["labels"] == label)[0]
    viz.show_image(image, ax=axes[2])
    for k, i in enumerate(pick.tolist()):
        color = viz.INSTANCE_COLORS[k % len(viz.INSTANCE_COLORS)]
        axes[2].imshow(_rgba((masks[i] > 0.5).numpy(), color, 0.6), interpolation="nearest")
        _box(axes[2], detections["boxes"][i], color)
    axes[2].set_title(f"Mask R-CNN: {len(pick)} instances of '{CLASSES[label]}'\n"
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
    axes[1].set_title("its object's ground-truth mask (zoomed)", fontsize=9)
    for ax in axes[:2]:
        _box(ax, box, "#ffe119", lw=2)
    _zoom(axes[1], box, 0.4)
    m = target.shape[-1]
    axes[2].imshow(target.numpy(), cmap="gray", vmin=0, vmax=1)
    axes[2].set_title(f"target: RoI Align of the mask, {m}×{m}", fontsize=9)
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


def instance_figure(image: torch.Tensor, detections: dict, threshold: float = 0.5,
                    score_thresh: float = 0.5, max_instances: int = 4, title: str = "") -> Figure:
    """Each detection's raw 28x28 mask (top) and the same mask pasted into its box (bottom).

    Args:
        image: [3, H, W]. detections: {"boxes" [D, 4], "scores" [D] (sorted), "labels" [D],
            "roi_masks" [D, 1, M, M] probabilities of the predicted class}.
        threshold: mask probability at which a pixel belongs to the object (contours, overlay).
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

    layer = np.zeros((h, w, 4))
    for i in range(k):
        layer[pasted[i] >= threshold] = (*mcolors.to_rgb(viz.INSTANCE_COLORS[i % 10]), 0.55)
    ax.imshow(viz.to_numpy_image(image), extent=(0, w, band + h, band), interpolation="nearest")
    ax.imshow(layer, extent=(0, w, band + h, band), interpolation="nearest")
    text(w / 2, band - 2, title or f"{k} detections (score ≥ {score_thresh:g}), masks ≥ {threshold:.2f}")
    if k == 0:
        text(w / 2, band + h / 2, "no detection above the score threshold", color="white",
             bbox=dict(facecolor="black", alpha=0.6))
    for i in range(k):
        color = viz.INSTANCE_COLORS[i % len(viz.INSTANCE_COLORS)]
        x1, y1, x2, y2 = det["boxes"][i].tolist()
        name = CLASSES[int(det["labels"][i])]
        ax.add_patch(Rectangle((x1, band + y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=1.5))
        ax.text(x1, band + y1 - 0.5, str(i + 1), fontsize=7, va="bottom", color=color, weight="bold")
        x0 = w + gap + i * (gap + side)
        raw = det["roi_masks"][i, 0].numpy()                             # (M, M)
        m = raw.shape[-1]
        cell = side / m
        ax.imshow(raw, cmap="magma", vmin=0, vmax=1, interpolation="nearest",
                  extent=(x0, x0 + side, band + side, band))
        if raw.min() < threshold < raw.max():
            ax.contour(raw, levels=[threshold], colors=[color], linewidths=1.2,
                       extent=(x0 + cell / 2, x0 + side - cell / 2, band + cell / 2, band + side - cell / 2))
        area = int((pasted[i] >= threshold).sum())
        text(x0 + side / 2, band - 2, f"{i + 1}: {name} {float(det['scores'][i]):.2f}, {area} px\n"
                                     f"raw {m}×{m} mask ↓ pasted")
        crop, (left, top) = _crop_square(pasted[i], det["boxes"][i])    # (L, L)
        y0, scale = band + side + gap, side / len(crop)
        ax.imshow(crop, cmap="magma", vmin=0, vmax=1, interpolation="nearest",
                  extent=(x0, x0 + side, y0 + side, y0))
        if crop.min() < threshold < crop.max():
            ax.contour(crop, levels=[threshold], colors=[color], linewidths=1.2,
                       extent=(x0 + scale / 2, x0 + side - scale / 2, y0 + scale / 2, y0 + side - scale / 2))
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

    return interactive_figure(instance_browser_figure, {
        "index": W.IntSlider(value=0, min=0, max=n - 1, description="scene"),
        "threshold": W.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05,
                                   description="mask ≥"),
        "score_thresh": W.FloatSlider(value=0.5, min=0.05, max=0.95, step=0.05,
                                      description="score ≥"),
        "name": W.fixed(name), "split": W.fixed(split), "n": W.fixed(n),
        "weights_dir": W.fixed(weights_dir),
    })


def pooler_figure(image: torch.Tensor, target: dict, detections: list, names: tuple,
                  score_thresh: float = 0.5, zoom: int | None = None) -> Figure:
    """Ground truth and each model's thresholded masks (score >= `score_thresh`) on one scene,
    the true outline dashed, zoomed on one object.

    Args: image [3, H, W]; target {"masks" [N, H, W], "boxes"}; detections: one dict per
    model (``"masks"`` bool [D, H, W]); names: a title per model; zoom: index of the ground
    truth object to zoom on (None: the whole image).
    """
    fig = Figure(figsize=(3.0 * (1 + len(detections)), 3.2), layout="constrained")
    axes = fig.subplots(1, 1 + len(detections))
    panels = [("ground truth", target["masks"])]
    for det, name in zip(detections, names):
        d = _keep(det, score_thresh, 100)
        panels.append((name, d["masks"][:, 0] if d["masks"].dim() == 4 else d["masks"]))
    gt_union = target["masks"].any(0)
    for ax, (name, masks) in zip(axes, panels):
        viz.show_image(image, ax=ax)
        if len(masks):  # one colour: what matters is each mask's outline against the truth's
            ax.imshow(_rgba(masks.bool().any(0).numpy(), "#ffe119", 0.6), interpolation="nearest")
        ax.contour(gt_union.float().numpy(), levels=[0.5], colors=["white"], linewidths=0.8,
                   linestyles="--")
        if zoom is not None:
            _zoom(ax, target["boxes"][zoom])
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    return fig
