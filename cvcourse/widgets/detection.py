"""Faster R-CNN chapter: what the second stage outputs, and what post-processing keeps.

The RoI heads score every proposal for every class and regress one box per class, so an
image with K proposals and C classes has K x C candidate detections before anything is
thrown away. Two steps turn them into a handful of detections: a **score threshold**, then
**per-class NMS**. These functions show each step:

- `raw_outputs`: per proposal, the class probabilities ``[K, C+1]`` and the decoded,
  clipped box of every class ``[K, C+1, 4]`` (what ``RoIHeads.postprocess`` starts from).
- `postprocess_steps`: the candidates, those above the score threshold, and those NMS
  keeps; the last step equals the model's own output at the model's thresholds.
- `held_out_raw_outputs`: `raw_outputs` of a shipped checkpoint on held-out scenes, cached.
- `detection_steps_figure` / `detection_explorer`: the three steps side by side, with
  score and NMS IoU sliders (the widget redraws from the cache; no network pass).
- `detections_figure`: detections and ground truth on a row of scenes.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from matplotlib import colors as mcolors
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from torch import Tensor

from .. import viz
from ..data import CLASSES
from ..inference import evaluating
from ..models.roi_heads import above_score_threshold, class_candidates, class_scores_and_boxes, nms_per_class
from ..ops.boxes import box_iou

__all__ = ["raw_outputs", "postprocess_steps", "held_out_raw_outputs", "match_detections",
           "detection_steps_figure", "detection_explorer", "detections_figure", "STEPS", "MAX_LABELS",
           "LABEL_SCORE"]

STEPS = ("candidates", "above score threshold", "after NMS")


# ------------------------------------------------------------------------- raw outputs
@torch.no_grad()
def raw_outputs(model, images: Tensor) -> list[dict[str, Tensor]]:
    """The second stage's outputs before any thresholding, for each image.

    Runs backbone -> RPN -> RoI heads of a `cvcourse.models.FasterRCNN` (in eval mode) and
    stops where ``RoIHeads.postprocess`` would start.

    Args:
        model: a `cvcourse.models.FasterRCNN`. images: ``[B, 3, H, W]`` in [0, 1].

    Returns:
        per image a dict on the CPU: "proposals" ``[K, 4]`` xyxy, "probs" ``[K, C+1]``
        (softmax; column 0 is background), "boxes" ``[K, C+1, 4]`` (the proposal moved by
        each class's deltas, clipped to the image), "image_size" ``(H, W)``.
    """
    if not all(hasattr(model, a) for a in ("backbone", "rpn", "roi_heads")) or \
            not hasattr(model.roi_heads, "box_coder"):
        raise ValueError(f"model must be a cvcourse.models.FasterRCNN, got {type(model).__name__}")
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a Tensor[B, 3, H, W], got {got}")
    heads = model.roi_heads
    with evaluating(model):
        images = images.to(next(model.parameters()).device)
        size = tuple(images.shape[-2:])
        features = model.backbone(images)                               # (B, C', h, w)
        proposals, _ = model.rpn(images, features)                      # B x (K, 4)
        x = heads.box_head(heads.pool(features, proposals))             # (sum K, R)
        logits, deltas = heads.cls_score(x), heads.bbox_pred(x)         # (sum K, C+1), (sum K, 4(C+1))
    probs, boxes = class_scores_and_boxes(logits, deltas, torch.cat(proposals), size,
                                          heads.box_coder)              # (sum K, C+1), (sum K, C+1, 4)
    counts = [len(p) for p in proposals]
    return [{"proposals": p.cpu(), "probs": s.cpu(), "boxes": b.cpu(), "image_size": size}
            for p, s, b in zip(proposals, probs.split(counts), boxes.split(counts))]


def postprocess_steps(raw: dict[str, Tensor], score_thresh: float = 0.05, nms_thresh: float = 0.5,
                      detections_per_img: int = 100, min_size: float = 1e-2) -> dict[str, dict]:
    """The detections left after each post-processing step, for one image's `raw_outputs`.

    1. "candidates": every proposal x every object class (background dropped): K x C boxes.
    2. "above score threshold": score > `score_thresh` (and boxes wider/taller than `min_size`).
    3. "after NMS": NMS within each class at IoU `nms_thresh`, the best `detections_per_img`.

    The steps are `cvcourse.models.roi_heads`' own (`class_candidates`,
    `above_score_threshold`, `nms_per_class`), so with the model's settings step 3 equals the
    model's detections.

    Returns:
        ``{step: {"boxes" [D, 4], "scores" [D], "labels" [D]}}`` for the three `STEPS`.
    """
    if not 0.0 <= score_thresh <= 1.0:
        raise ValueError(f"score_thresh must be in [0, 1], got {score_thresh}")
    if not 0.0 <= nms_thresh <= 1.0:
        raise ValueError(f"nms_thresh must be in [0, 1], got {nms_thresh}")
    if isinstance(detections_per_img, bool) or not isinstance(detections_per_img, int) or detections_per_img < 1:
        raise ValueError(f"detections_per_img must be an int >= 1, got {detections_per_img!r}")
    if not 0.0 <= min_size < float("inf"):
        raise ValueError(f"min_size must be a finite number >= 0, got {min_size}")
    candidates = class_candidates(raw["probs"], raw["boxes"])
    kept = above_score_threshold(candidates, score_thresh, min_size)
    return {STEPS[0]: candidates, STEPS[1]: kept,
            STEPS[2]: nms_per_class(kept, nms_thresh, detections_per_img)}


@lru_cache(maxsize=4)
def held_out_raw_outputs(name: str = "faster_rcnn", split: str = "test", n: int = 24) -> dict:
    """`raw_outputs` of shipped checkpoint `name` on the first `n` held-out scenes, computed
    once and cached: {"images" [n, 3, S, S], "targets" (list), "raw" (list of n dicts),
    "score_thresh", "nms_thresh" (the model's own settings)}."""
    from .. import pretrained
    from ..data.scenes import held_out_scenes

    images, targets = held_out_scenes(split, n)
    model = pretrained.load(name, device="cpu")
    raw = []
    for i in range(0, n, 25):
        raw += raw_outputs(model, images[i:i + 25])
    return {"images": images, "targets": targets, "raw": raw,
            "score_thresh": model.roi_heads.score_thresh, "nms_thresh": model.roi_heads.nms_thresh}


def match_detections(det: dict[str, Tensor], target: dict[str, Tensor],
                     iou_thresh: float = 0.5) -> Tensor:
    """Which detections are true positives: ``[D]`` bool, greedy by decreasing score, each
    ground-truth object matched at most once, same class and IoU >= `iou_thresh` (as mAP@0.5
    counts them)."""
    order = torch.argsort(det["scores"], descending=True, stable=True)
    tp = torch.zeros(len(order), dtype=torch.bool)
    if len(order) == 0 or len(target["boxes"]) == 0:
        return tp
    iou = box_iou(det["boxes"], target["boxes"].to(det["boxes"]))            # (D, G)
    iou[det["labels"][:, None] != target["labels"][None, :]] = -1
    free = torch.ones(iou.shape[1], dtype=torch.bool)
    for d in order.tolist():                    # a loop over the few kept detections
        cand = torch.where(free, iou[d], torch.tensor(-1.0))
        g = int(cand.argmax())
        if cand[g] >= iou_thresh:
            tp[d], free[g] = True, False
    return tp


# ----------------------------------------------------------------------------- figures
_RGB = np.array([mcolors.to_rgb(c) for c in viz.CLASS_COLORS])


def _segments(boxes: Tensor, dx: float = 0.0) -> np.ndarray:
    """xyxy boxes ``[N, 4]`` as closed outlines ``[N, 5, 2]`` in imshow's pixel-centre
    coordinates, shifted right by `dx` (the panel's offset)."""
    x1, y1, x2, y2 = (boxes.numpy().astype(np.float64) - 0.5).T
    x1, x2 = x1 + dx, x2 + dx
    return np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x2, y2], 1),
                     np.stack([x1, y2], 1), np.stack([x1, y1], 1)], 1)


def _class_rgba(labels: Tensor, alphas) -> np.ndarray:
    """``[N, 4]`` RGBA colours: each label's class colour with the given opacities."""
    alphas = np.broadcast_to(np.asarray(alphas, dtype=np.float64), (len(labels),))
    return np.concatenate([_RGB[labels.numpy() % len(_RGB)], alphas[:, None]], 1)


def _outline(ax, boxes: Tensor, colors, linewidth: float, linestyle: str = "-", dx: float = 0.0) -> None:
    """Many boxes as one LineCollection (hundreds of Rectangles redraw far too slowly)."""
    if len(boxes):
        ax.add_collection(LineCollection(_segments(boxes, dx), colors=colors, linewidths=linewidth,
                                         linestyles=linestyle))


MAX_LABELS = 6     # class-and-score tags drawn in the last panel (text is slow to render) ...
LABEL_SCORE = 0.3  # ... and only on detections at least this confident


def detection_steps_figure(index: int = 0, score_thresh: float = 0.5, nms_thresh: float = 0.5,
                           name: str = "faster_rcnn", split: str = "test", n: int = 24) -> Figure:
    """Held-out scene `index` after each post-processing step of checkpoint `name`.

    Panels: all K x C candidates (opacity = score), those above `score_thresh`, and those
    per-class NMS at IoU `nms_thresh` keeps, over the ground truth (white, dashed), the best
    `MAX_LABELS` scoring >= `LABEL_SCORE` tagged with class and score; its title counts
    correct detections, false ones and missed objects at IoU 0.5. One Axes holds the three
    panels, and text is kept to a minimum: both make redraws quicker.
    """
    if not isinstance(index, int) or not 0 <= index < n:
        raise ValueError(f"index must be an int in [0, {n}), got {index!r}")
    data = held_out_raw_outputs(name, split, n)
    image, target = data["images"][index], data["targets"][index]
    steps = postprocess_steps(data["raw"][index], score_thresh, nms_thresh)
    cand, above, kept = (steps[s] for s in STEPS)

    rgb = viz.to_numpy_image(image)
    h, w = rgb.shape[:2]
    gap = w // 12
    strip = np.ones((h, 3 * w + 2 * gap, 3))                            # white between panels
    offsets = [p * (w + gap) for p in range(3)]
    for x in offsets:
        strip[:, x:x + w] = rgb
    fig = Figure(figsize=(8.4, 3.1))                                   # small: PNG encoding is slow
    ax = fig.add_axes((0.0, 0.0, 1.0, 0.86))
    ax.imshow(strip, interpolation="nearest")
    ax.set_xlim(-0.5, strip.shape[1] - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis("off")

    opacity = cand["scores"].clamp(0.03, 1).numpy()                     # faint, never invisible
    _outline(ax, cand["boxes"], _class_rgba(cand["labels"], opacity), 0.8, dx=offsets[0])
    opacity = above["scores"].clamp(0.3, 1).numpy()
    _outline(ax, above["boxes"], _class_rgba(above["labels"], opacity), 1.0, dx=offsets[1])
    _outline(ax, target["boxes"], "white", 1.0, "--", dx=offsets[2])
    _outline(ax, kept["boxes"], _class_rgba(kept["labels"], 1.0), 1.8, dx=offsets[2])
    tagged = [t for t in zip(kept["boxes"].tolist(), kept["labels"].tolist(), kept["scores"].tolist())
              if t[2] >= LABEL_SCORE][:MAX_LABELS]                     # kept is sorted by score
    for (x1, y1, _, _), lab, sc in tagged:
        ax.text(offsets[2] + x1 - 0.5, y1 - 1.0, f"{CLASSES[lab]} {sc:.2f}", fontsize=6, color="white",
                va="bottom", bbox=dict(facecolor=viz.CLASS_COLORS[lab], alpha=0.8, pad=0.8, linewidth=0))

    tp = int(match_detections(kept, target).sum())
    k = len(data["raw"][index]["probs"])
    titles = [f"{split} scene {index}: {k} proposals × {len(CLASSES) - 1} classes",
              f"score > {score_thresh:.2f}: {len(above['boxes'])} boxes",
              f"NMS IoU {nms_thresh:.2f}: {len(kept['boxes'])} kept\n{tp} right, "
              f"{len(kept['boxes']) - tp} false, {len(target['boxes']) - tp} missed"]
    for x, title in zip(offsets, titles):
        ax.text(x + w / 2, -2.0, title, ha="center", va="bottom", fontsize=8)
    return fig


def detection_explorer(name: str = "faster_rcnn", split: str = "test", n: int = 24):
    """Scene, score threshold and NMS IoU sliders around `detection_steps_figure` (raw
    outputs cached once, so a redraw only re-runs the thresholds and NMS)."""
    import ipywidgets as W

    from . import interactive_figure
    from .static import evenly

    return interactive_figure(detection_steps_figure, {
        "index": W.IntSlider(value=0, min=0, max=n - 1, description="scene"),
        "score_thresh": W.FloatSlider(value=0.5, min=0.0, max=0.95, step=0.05, description="score >"),
        "nms_thresh": W.FloatSlider(value=0.5, min=0.05, max=1.0, step=0.05, description="NMS IoU"),
        "name": W.fixed(name), "split": W.fixed(split), "n": W.fixed(n),
    }, columns=3, grid={"index": evenly(range(n), 3), "score_thresh": [0.1, 0.3, 0.5, 0.7],
                        "nms_thresh": [0.3, 0.5, 0.7]})


def detections_figure(images: Tensor, targets: Sequence[dict], detections: Sequence[dict],
                      indices: Sequence[int] = (0, 1, 2, 3), score_thresh: float = 0.5,
                      title: str = "") -> Figure:
    """One panel per scene in `indices`: detections scoring above `score_thresh` (solid, with
    class and score) over the ground truth (white, dashed)."""
    indices = list(indices)
    if not indices or any(not 0 <= i < len(images) for i in indices):
        raise ValueError(f"indices must be in [0, {len(images)}), got {indices}")
    if not len(images) == len(targets) == len(detections):
        raise ValueError(f"images, targets and detections must have one entry per scene, got "
                         f"{len(images)}, {len(targets)} and {len(detections)}")
    fig, axes = viz.subplots(1, len(indices), size=2.6)
    for ax, i in zip(axes[0], indices):
        d, t = detections[i], targets[i]
        keep = d["scores"] > score_thresh
        tp = int(match_detections({k: v[keep] for k, v in d.items()}, t).sum())
        viz.show_image(images[i], ax=ax, title=f"scene {i}: {tp}/{len(t['boxes'])} found, "
                                              f"{int(keep.sum()) - tp} false")
        _outline(ax, t["boxes"], "white", 1.0, "--")
        viz.draw_boxes(None, d["boxes"][keep], d["labels"][keep], d["scores"][keep], CLASSES, ax=ax)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
