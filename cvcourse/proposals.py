"""Region proposals by selective search (Uijlings et al., 2013), and how to score them.

R-CNN does not slide a window everywhere: it classifies a few hundred *candidate regions*
that are likely to hold an object. Selective search finds them bottom-up:

1. over-segment the image into small, uniform regions (Felzenszwalb-Huttenlocher graph
   segmentation, ``skimage.segmentation.felzenszwalb``);
2. repeatedly merge the two most similar *adjacent* regions, similarity being the sum of
   colour-histogram overlap, texture-histogram overlap, a size term (merge small regions
   first) and a fill term (merge regions whose union fills its bounding box), until one
   region is left; every region ever formed is a candidate box;
3. run this for several segmentations (scales, colour spaces), rank the boxes (regions
   high in a hierarchy first, randomly perturbed so strategies interleave) and remove
   near-duplicates with NMS.

The merge loop is inherent (each merge changes the neighbours' similarities); everything
per region and per pixel is vectorized: adjacency from shifted label maps, histograms
with ``bincount``. ``proposal_recall`` measures the fraction of ground-truth objects
covered by some proposal at IoU >= 0.5, the number the chapter plots against the count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage
from skimage.color import rgb2hsv, rgb2lab
from skimage.segmentation import felzenszwalb
from torch import Tensor

from .ops.boxes import box_iou, nms

__all__ = ["STRATEGIES", "selective_search", "propose", "proposal_recall", "recall_curve"]

COLOUR_BINS, TEXTURE_BINS, ORIENTATIONS = 25, 10, 8

# (colour space, felzenszwalb scale): a few diverse segmentations; each adds its hierarchy.
STRATEGIES = (("rgb", 50), ("rgb", 150), ("hsv", 100), ("lab", 100), ("rgb", 300))


def _colour_space(image: np.ndarray, space: str) -> np.ndarray:
    """[H, W, 3] in [0, 1] -> the same image in `space`, each channel rescaled to [0, 1]."""
    if space == "rgb":
        return image
    if space == "hsv":
        return rgb2hsv(image)
    if space == "lab":
        lab = rgb2lab(image)
        return (lab - np.array([0.0, -128, -128])) / np.array([100.0, 255, 255])
    raise ValueError(f"colour space must be 'rgb', 'hsv' or 'lab', got {space!r}")


def region_histograms(labels: np.ndarray, values: np.ndarray, bins: int, n: int) -> np.ndarray:
    """Per-region histograms of `values` [H, W, D] in [0, 1], D * bins long, L1-normalized."""
    d = values.shape[-1]
    b = np.minimum((values * bins).astype(np.int64), bins - 1)         # (H, W, D) bin per value
    index = (labels[..., None] * d + np.arange(d)) * bins + b          # (H, W, D) flat bin id
    hist = np.bincount(index.ravel(), minlength=n * d * bins).reshape(n, d * bins).astype(float)
    return hist / hist.sum(1, keepdims=True)


def _texture(image: np.ndarray) -> np.ndarray:
    """Oriented Gaussian-derivative responses [H, W, 3 * 8] in [0, 1] (SIFT-like texture)."""
    gy = ndimage.gaussian_filter(image, (1, 0, 0), order=(1, 0, 0))    # (H, W, 3)
    gx = ndimage.gaussian_filter(image, (0, 1, 0), order=(0, 1, 0))
    angles = np.arange(ORIENTATIONS) * (2 * np.pi / ORIENTATIONS)
    resp = np.maximum(gx[..., None] * np.cos(angles) + gy[..., None] * np.sin(angles), 0)
    resp = resp.reshape(*image.shape[:2], -1)                          # (H, W, 24)
    return resp / max(resp.max(), 1e-8)


def adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """Unique pairs (i < j) of regions touching horizontally, vertically or diagonally."""
    pairs = [np.stack([a.ravel(), b.ravel()], 1) for a, b in (
        (labels[:, :-1], labels[:, 1:]), (labels[:-1], labels[1:]),
        (labels[:-1, :-1], labels[1:, 1:]), (labels[:-1, 1:], labels[1:, :-1]))]
    pairs = np.concatenate(pairs)
    pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
    return np.unique(pairs, axis=0)                                    # (P, 2)


def _hierarchy(image: np.ndarray, space: str, scale: float, min_size: int) -> np.ndarray:
    """All boxes of one hierarchical grouping: [R, 5] = (x1, y1, x2, y2, level from the top)."""
    img = _colour_space(image, space)
    labels = felzenszwalb(img, scale=scale, sigma=0.8, min_size=min_size)  # (H, W) 0..n-1
    n, area = labels.max() + 1, labels.size
    size = np.bincount(labels.ravel(), minlength=n).astype(float)
    boxes = np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop]
                      for s in ndimage.find_objects(labels + 1)], dtype=float)  # (n, 4)
    colour = region_histograms(labels, img, COLOUR_BINS, n)
    texture = region_histograms(labels, _texture(img), TEXTURE_BINS, n)
    neighbours: dict[int, set] = {i: set() for i in range(n)}
    for i, j in adjacent_pairs(labels).tolist():
        neighbours[i].add(j)
        neighbours[j].add(i)

    def similarity(i: int, js: Sequence[int]) -> np.ndarray:           # of region i to each j
        js = np.asarray(js)
        union = np.concatenate([np.minimum(boxes[js, :2], boxes[i, :2]),
                                np.maximum(boxes[js, 2:], boxes[i, 2:])], 1)
        bbox_area = (union[:, 2] - union[:, 0]) * (union[:, 3] - union[:, 1])
        s_colour = np.minimum(colour[js], colour[i]).sum(1)            # histogram intersection
        s_texture = np.minimum(texture[js], texture[i]).sum(1)
        s_size = 1 - (size[js] + size[i]) / area                       # merge small ones first
        s_fill = 1 - (bbox_area - size[js] - size[i]) / area           # union fills its box
        return s_colour + s_texture + s_size + s_fill

    # Grow the arrays to hold the n - 1 merged regions too.
    total = 2 * n - 1
    size, boxes = np.resize(size, total), np.resize(boxes, (total, 4))
    colour = np.resize(colour, (total, colour.shape[1]))
    texture = np.resize(texture, (total, texture.shape[1]))
    sims = {}
    for i in range(n):
        js = [j for j in neighbours[i] if j > i]
        if js:
            sims.update(zip(((i, j) for j in js), similarity(i, js).tolist()))
    new = n
    while sims:                                # one merge per step: inherently sequential
        i, j = max(sims, key=sims.get)
        size[new] = size[i] + size[j]
        boxes[new, :2] = np.minimum(boxes[i, :2], boxes[j, :2])
        boxes[new, 2:] = np.maximum(boxes[i, 2:], boxes[j, 2:])
        colour[new] = (size[i] * colour[i] + size[j] * colour[j]) / size[new]
        texture[new] = (size[i] * texture[i] + size[j] * texture[j]) / size[new]
        around = (neighbours.pop(i) | neighbours.pop(j)) - {i, j}
        sims = {p: s for p, s in sims.items() if i not in p and j not in p}
        for k in around:
            neighbours[k] -= {i, j}
            neighbours[k].add(new)
        neighbours[new] = around
        if around:
            ks = sorted(around)
            sims.update(zip(((k, new) for k in ks), similarity(new, ks).tolist()))
        new += 1
    level = np.arange(new, 0, -1, dtype=float)        # the last merge (top) is level 1
    return np.concatenate([boxes[:new], level[:, None]], 1)


def selective_search(image: Tensor, strategies=STRATEGIES, min_size: int = 10,
                     seed: int = 0) -> Tensor:
    """All ranked selective-search boxes of an image, best first (duplicates kept).

    Args:
        image (Tensor[3, H, W]): in [0, 1].
        strategies: (colour space, felzenszwalb scale) pairs, one hierarchy each.
        min_size: felzenszwalb's smallest region, in pixels.
        seed: of the random rank perturbation (Uijlings et al.: level x U(0, 1)).

    Returns:
        Tensor[R, 4]: xyxy float boxes in pixels, ranked.
    """
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        got = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"image must be a Tensor[3, H, W] in [0, 1], got {got}")
    img = image.detach().cpu().permute(1, 2, 0).double().clamp(0, 1).numpy()  # (H, W, 3)
    rng = np.random.default_rng(seed)
    found = np.concatenate([_hierarchy(img, space, scale, min_size) for space, scale in strategies])
    rank = found[:, 4] * rng.random(len(found))        # low rank = proposed first
    order = np.argsort(rank, kind="stable")
    return torch.as_tensor(found[order, :4], dtype=torch.float32, device=image.device)


def propose(image: Tensor, max_proposals: int = 200, iou_threshold: float = 0.9,
            **kwargs) -> Tensor:
    """Ranked, de-duplicated selective-search proposals: Tensor[K <= max_proposals, 4] xyxy.

    Near-duplicates (IoU > `iou_threshold` with a better-ranked box) are removed with `nms`;
    other keyword arguments go to `selective_search`.
    """
    boxes = selective_search(image, **kwargs)                        # (R, 4) ranked
    scores = torch.linspace(1, 0, len(boxes), device=boxes.device)  # rank as a score
    return boxes[nms(boxes, scores, iou_threshold)[:max_proposals]]


def proposal_recall(proposals_list: list[Tensor], targets_list: list[dict],
                    iou: float = 0.5) -> float:
    """Fraction of ground-truth boxes (over all images) with a proposal at IoU >= `iou`."""
    if len(proposals_list) != len(targets_list):
        raise ValueError(f"proposals_list and targets_list must pair up, got "
                         f"{len(proposals_list)} and {len(targets_list)}")
    hit = total = 0
    for props, target in zip(proposals_list, targets_list):
        gt = target["boxes"].to(props)
        total += len(gt)
        if len(gt) and len(props):
            hit += int((box_iou(gt, props).max(1).values >= iou).sum())
    return hit / max(total, 1)


def recall_curve(proposals_list: list[Tensor], targets_list: list[dict], iou: float = 0.5,
                 counts: Sequence[int] = (10, 20, 50, 100, 200)) -> dict[int, float]:
    """Recall using only the first `count` (best-ranked) proposals, for each count."""
    return {c: proposal_recall([p[:c] for p in proposals_list], targets_list, iou) for c in counts}
