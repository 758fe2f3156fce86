"""Semantic segmentation metrics.

They start from one confusion matrix (rows = true class, columns = predicted class); pixel
accuracy and IoU are read off it. Boundary F1 asks a different question: are the *edges*
between regions in the right place?
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_label_maps(pred, target):
    for name, x in (("pred", pred), ("target", target)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of class indices, got {type(x).__name__}")
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer class indices, got dtype {x.dtype}")
        if x.dim() < 2:
            raise ValueError(f"{name} must be [..., H, W], got shape {list(x.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred and target must have the same shape, got {list(pred.shape)} "
                         f"and {list(target.shape)}")
    return pred.long(), target.long()


def _check_range(name, x, num_classes):
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_classes):
        raise ValueError(f"{name} values must lie in [0, {num_classes}), got values in "
                         f"[{int(x.min())}, {int(x.max())}]")


def _valid(target, ignore_index):
    """Bool mask of the pixels that count: all of them unless ignore_index is given."""
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise ValueError(f"ignore_index must be None or an int class index, got {ignore_index!r}")
    if ignore_index is None:
        return torch.ones_like(target, dtype=torch.bool)
    return target != ignore_index


def confusion_matrix(pred, target, num_classes, ignore_index=None):
    """Count pixels by (true class, predicted class).

    Args:
        pred: int Tensor[..., H, W] of predicted class indices.
        target: int Tensor[..., H, W] of true class indices (same shape).
        num_classes: number of classes C.
        ignore_index: target value whose pixels are left out (e.g. 255 in VOC).

    Returns:
        int64 Tensor[C, C]; entry [i, j] counts pixels of true class i predicted as j.
    """
    pred, target = _check_label_maps(pred, target)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    keep = _valid(target, ignore_index)
    p, t = pred[keep], target[keep]                               # (P,) kept pixels
    _check_range("pred", p, num_classes)
    _check_range("target (outside ignore_index)", t, num_classes)
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _check_cm(cm):
    if not isinstance(cm, torch.Tensor) or cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square [C, C] Tensor, got {getattr(cm, 'shape', type(cm))}")
    cm = cm.double()
    if not torch.isfinite(cm).all() or (cm < 0).any():
        raise ValueError("cm must hold pixel counts (finite, >= 0), got NaN, inf or negative entries")
    return cm


def pixel_accuracy(cm):
    """Fraction of pixels whose class is right: trace(cm) / sum(cm) (NaN for an empty cm).

    Args:
        cm: Tensor[C, C] from `confusion_matrix`.

    Returns:
        float64 0-dim Tensor.
    """
    cm = _check_cm(cm)
    return cm.diagonal().sum() / cm.sum()


def per_class_iou(cm):
    """Intersection over union of each class: TP / (TP + FP + FN).

    Args:
        cm: Tensor[C, C] from `confusion_matrix`.

    Returns:
        float64 Tensor[C]; NaN for a class absent from both prediction and target.
    """
    cm = _check_cm(cm)
    tp = cm.diagonal()
    union = cm.sum(0) + cm.sum(1) - tp                             # predicted + true - both
    return tp / union                                              # 0 / 0 = NaN when absent


def mean_iou(cm):
    """Mean of `per_class_iou` over the classes present in prediction or target.

    Classes absent from both (NaN IoU) are excluded from the mean, not counted as 0 or 1.

    Args:
        cm: Tensor[C, C] from `confusion_matrix`.

    Returns:
        float64 0-dim Tensor (NaN when no class is present).
    """
    return torch.nanmean(per_class_iou(cm))


def _boundaries(labels, valid):
    """Pixels with a 4-neighbour of another label. labels, valid: (B, H, W) -> bool (B, H, W)."""
    edge = torch.zeros_like(valid)
    dx = (labels[:, :, 1:] != labels[:, :, :-1]) & valid[:, :, 1:] & valid[:, :, :-1]  # (B, H, W-1)
    dy = (labels[:, 1:, :] != labels[:, :-1, :]) & valid[:, 1:, :] & valid[:, :-1, :]  # (B, H-1, W)
    edge[:, :, 1:] |= dx
    edge[:, :, :-1] |= dx
    edge[:, 1:, :] |= dy
    edge[:, :-1, :] |= dy
    return edge


def _dilate(mask, radius):
    """Grow a bool (B, H, W) mask by a disk: every pixel within Euclidean distance `radius`."""
    r = int(min(radius, mask.shape[-2] + mask.shape[-1]))  # a larger disk covers nothing more
    offsets = torch.arange(-r, r + 1, device=mask.device, dtype=torch.float32)
    disk = (offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2).float()  # (2r+1, 2r+1)
    hits = F.conv2d(mask[:, None].float(), disk[None, None], padding=r)            # (B, 1, H, W)
    return hits[:, 0] > 0.5


def boundary_f1(pred, target, num_classes=None, tolerance=2, ignore_index=None):
    """Boundary F1 score (Csurka et al. 2013; the DAVIS "F" measure), averaged over images.

    Boundaries are taken on the label map itself (class-agnostic): a pixel is a boundary
    pixel when one of its 4 neighbours has another label; both sides of an edge count.
    Precision is the fraction of predicted boundary pixels within `tolerance` pixels
    (Euclidean distance, a disk) of a target boundary pixel; recall is the same with
    prediction and target swapped; F1 = 2PR / (P + R) per image, then the mean over images.
    Degenerate images: no boundary in either map -> 1.0; a boundary in only one -> 0.0.

    Args:
        pred: int Tensor[..., H, W] of predicted class indices; leading dims are images.
        target: int Tensor[..., H, W] of true class indices (same shape).
        num_classes: if given, both maps are checked to lie in [0, num_classes).
        tolerance: matching distance in pixels (>= 0; may be fractional).
        ignore_index: target value whose pixels are neither boundaries nor make their
            neighbours boundaries, in both maps.

    Returns:
        float64 0-dim Tensor in [0, 1].
    """
    pred, target = _check_label_maps(pred, target)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not 0 <= tolerance < float("inf"):
        raise ValueError(f"tolerance must be a finite number >= 0 (pixels), got {tolerance!r}")
    valid = _valid(target, ignore_index)
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise ValueError(f"num_classes must be None or a positive int, got {num_classes!r}")
    if num_classes is not None:
        _check_range("pred", pred[valid], num_classes)
        _check_range("target (outside ignore_index)", target[valid], num_classes)
    shape = (-1,) + tuple(pred.shape[-2:])
    pred, target, valid = pred.reshape(shape), target.reshape(shape), valid.reshape(shape)  # (B, H, W)
    pb, tb = _boundaries(pred, valid), _boundaries(target, valid)
    n_pred, n_true = pb.sum((1, 2)).double(), tb.sum((1, 2)).double()           # (B,)
    precision = (pb & _dilate(tb, tolerance)).sum((1, 2)) / n_pred            # NaN if no pred edge
    recall = (tb & _dilate(pb, tolerance)).sum((1, 2)) / n_true
    f1 = 2 * precision * recall / (precision + recall)
    f1 = torch.where(precision + recall > 0, f1, torch.zeros_like(f1))        # also turns NaN into 0
    f1 = torch.where((n_pred == 0) & (n_true == 0), torch.ones_like(f1), f1)
    return f1.mean()


def segmentation_scores(pred, target, num_classes, ignore_index=None, tolerance=2):
    """All segmentation metrics at once, as plain Python numbers.

    Args:
        pred, target: int Tensor[..., H, W] of class indices.
        num_classes: number of classes C.
        ignore_index: target value to leave out.
        tolerance: boundary F1 tolerance in pixels.

    Returns:
        dict with "pixel_accuracy", "mean_iou", "boundary_f1" (floats) and "per_class_iou"
        (list of C floats, NaN for absent classes).
    """
    cm = confusion_matrix(pred, target, num_classes, ignore_index)
    return {
        "pixel_accuracy": float(pixel_accuracy(cm)),
        "mean_iou": float(mean_iou(cm)),
        "per_class_iou": per_class_iou(cm).tolist(),
        "boundary_f1": float(boundary_f1(pred, target, num_classes, tolerance, ignore_index)),
    }
