"""Average precision step by step: matching, the precision-recall curve, three interpolations.

The evaluation chapter (``book/det_evaluation``) builds mAP from these parts, and shows the
result equal to `mean_average_precision` and to pycocotools:

1. `match_detections`: for one class, each detection is a true positive (it matches a
   ground-truth object not matched before, IoU >= threshold) or a false positive;
2. `precision_recall`: all images' detections sorted by score; precision and recall after
   each one;
3. `average_precision`: the area under that curve, interpolated as VOC2007 (11 recall
   points), VOC2010+ (every point) or COCO (101 points) did (`interpolated_precision`,
   read at the `recall_points` by `precision_at`);
4. `average_precision_per_class`: the three steps for every class; mAP is their mean.

Matching follows COCO (and torchvision's evaluators): in decreasing score order, a
detection takes the unmatched object of its class with the highest IoU. VOC's code
instead looks at the single object with the highest IoU and calls the detection a false
positive when that object is already taken; the two rarely differ.

Taught in book/det_evaluation.ipynb.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..ops.boxes import box_iou

__all__ = ["AP_METHODS", "match_detections", "precision_recall", "interpolated_precision",
           "recall_points", "precision_at", "average_precision", "average_precision_per_class"]

AP_METHODS = ("voc07", "voc_all", "coco101")


def _thresholds(iou_threshold) -> np.ndarray:
    thr = np.atleast_1d(np.asarray(iou_threshold, dtype=np.float64))
    if thr.ndim != 1 or thr.size == 0 or (thr < 0).any() or (thr > 1).any():
        raise ValueError(f"iou_threshold must be a float or a list of floats in [0, 1], "
                         f"got {iou_threshold!r}")
    return thr


def match_detections(preds: Sequence[dict], targets: Sequence[dict], label: int,
                     iou_threshold: float | Sequence[float] = 0.5,
                     max_detections: int = 100) -> dict:
    """True and false positives of class `label`, image by image, as COCOeval counts them.

    In each image the detections of class `label` are taken in decreasing score order (at
    most `max_detections`); each one matches the not yet matched ground-truth object of the
    class with the highest IoU, if that IoU is >= the threshold. A matched detection is a
    true positive; any other one, duplicates included, is a false positive.

    Args:
        preds: one dict per image: "boxes" Tensor[N, 4] xyxy, "scores" Tensor[N], "labels"
            int Tensor[N].
        targets: one dict per image: "boxes" Tensor[M, 4] xyxy, "labels" int Tensor[M].
        label: the class to evaluate.
        iou_threshold: one IoU threshold, or a list of T thresholds matched at once.
        max_detections: detections kept per image (COCO's maxDets), highest scores first.

    Returns:
        dict: "scores" float64 Tensor[D] (image order, each image's detections by decreasing
        score), "tp" bool Tensor[D] (Tensor[T, D] for a list of thresholds), "n_gt" int (the
        objects of class `label` in all images).
    """
    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must have one entry per image, got {len(preds)} "
                         f"preds and {len(targets)} targets")
    thr = _thresholds(iou_threshold)
    cut = np.minimum(thr, 1 - 1e-10)[:, None]                       # (T, 1), as COCOeval
    scores, tps, n_gt = [], [], 0
    for p, t in zip(preds, targets):
        is_d = p["labels"] == label
        order = torch.sort(-p["scores"][is_d].double(), stable=True).indices[:max_detections]
        d_boxes = p["boxes"][is_d][order].double()                  # (D, 4), best first
        g_boxes = t["boxes"][t["labels"] == label].double()         # (G, 4)
        n_gt += len(g_boxes)
        tp = np.zeros((len(thr), len(d_boxes)), dtype=bool)         # (T, D)
        if len(d_boxes) and len(g_boxes):
            iou = box_iou(d_boxes, g_boxes).numpy()[:, ::-1]        # (D, G); reversed: ties
            free = np.ones((len(thr), len(g_boxes)), dtype=bool)    # go to the last object, as
            for d in range(len(d_boxes)):                           # in COCOeval's loop
                ok = (iou[d] >= cut) & free                         # (T, G)
                best = np.where(ok, iou[d], -1.0).argmax(1)         # (T,)
                hit = ok[np.arange(len(thr)), best]
                free[np.arange(len(thr))[hit], best[hit]] = False
                tp[:, d] = hit
        scores.append(p["scores"][is_d][order].double())
        tps.append(torch.from_numpy(tp))
    tp = torch.cat(tps, 1) if tps else torch.zeros(len(thr), 0, dtype=torch.bool)
    return {"scores": torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64),
            "tp": tp if np.ndim(iou_threshold) else tp[0], "n_gt": n_gt}


def precision_recall(scores: Tensor, tp: Tensor, n_gt: int) -> tuple[Tensor, Tensor]:
    """Precision and recall after each detection, in decreasing score order.

    Args:
        scores: Tensor[D], the detections' confidences (from all images).
        tp: bool Tensor[D], whether each detection is a true positive.
        n_gt: the number of ground-truth objects (> 0).

    Returns:
        (precision, recall), float64 Tensor[D] each: after the k best detections,
        precision = TP / k and recall = TP / n_gt. Ties in score keep their input order.
    """
    scores, tp = torch.as_tensor(scores), torch.as_tensor(tp)
    if scores.dim() != 1 or tp.shape != scores.shape:
        raise ValueError(f"scores and tp must be Tensor[D] of one length, got {list(scores.shape)} "
                         f"and {list(tp.shape)}")
    if n_gt <= 0:
        raise ValueError(f"n_gt must be a positive number of objects, got {n_gt}")
    order = torch.sort(-scores.double(), stable=True).indices       # = numpy mergesort
    hits = torch.cumsum(tp[order].double(), 0)                      # (D,) TP after k detections
    k = torch.arange(1, len(order) + 1, dtype=torch.float64)
    return hits / k, hits / n_gt


def interpolated_precision(precision: Tensor) -> Tensor:
    """The best precision at each point of the curve or at any later one (higher recall).

    This "interpolated" precision never increases along the curve; VOC and COCO read AP
    from it rather than from the zigzag of the raw precision.

    Args:
        precision: Tensor[D], in the order of `precision_recall` (non-decreasing recall).

    Returns:
        Tensor[D], non-increasing.
    """
    return precision.flip(0).cummax(0).values.flip(0)  # (D,)


def recall_points(method: str) -> Tensor:
    """The recalls at which an AP `method` reads the curve: 11 for "voc07", 101 for "coco101".

    Built exactly as VOC's and COCO's code build them (float64; 0.1 * 3 > 0.3 in floats).
    """
    if method not in ("voc07", "coco101"):
        raise ValueError(f"method must be 'voc07' or 'coco101' ('voc_all' has no fixed points), got {method!r}")
    return torch.from_numpy(np.arange(0.0, 1.1, 0.1) if method == "voc07"
                            else np.linspace(0.0, 1.0, 101, endpoint=True))  # (R,)


def precision_at(recall: Tensor, interpolated: Tensor, points: Tensor) -> Tensor:
    """Interpolated precision at each recall of `points` (0 where the curve never gets there).

    Args:
        recall: Tensor[D], non-decreasing.
        interpolated: Tensor[D], from `interpolated_precision`.
        points: Tensor[R], the recalls to read, e.g. `recall_points(method)`.

    Returns:
        Tensor[R]: the precision of the first curve point whose recall reaches each point.
    """
    idx = torch.searchsorted(recall, points)  # (R,) first curve point reaching each
    return torch.where(idx < len(recall), interpolated[idx.clamp(max=len(recall) - 1)],
                       torch.zeros_like(points))  # (R,)


def _as_curve(recall, precision) -> tuple[Tensor, Tensor]:
    """Both as float64 Tensor[D]; raise unless they have one length and recall never falls."""
    rec = torch.as_tensor(recall, dtype=torch.float64)
    pre = torch.as_tensor(precision, dtype=torch.float64)
    if rec.dim() != 1 or pre.shape != rec.shape:
        raise ValueError(f"recall and precision must be Tensor[D] of one length, got "
                         f"{list(rec.shape)} and {list(pre.shape)}")
    if (rec[1:] < rec[:-1]).any():
        raise ValueError("recall must be non-decreasing (detections in decreasing score order)")
    return rec, pre


def average_precision(recall: Tensor, precision: Tensor, method: str = "coco101") -> float:
    """Area under a precision-recall curve, interpolated as VOC or COCO do.

    All three first replace precision at recall r by the best precision at any recall
    >= r (`interpolated_precision`, which never increases). Then:

    - "voc07": its mean at the 11 recalls 0, 0.1, ..., 1 (VOC2007);
    - "voc_all": the exact area under it, a sum over the recalls where it steps (VOC2010+);
    - "coco101": its mean at the 101 recalls 0, 0.01, ..., 1 (COCO).

    A recall the curve never reaches contributes precision 0.

    Args:
        recall: Tensor[D], non-decreasing (as `precision_recall` returns it).
        precision: Tensor[D].
        method: "voc07", "voc_all" or "coco101".

    Returns:
        AP in [0, 1] (0 for an empty curve).
    """
    if method not in AP_METHODS:
        raise ValueError(f"method must be one of {AP_METHODS}, got {method!r}")
    rec, pre = _as_curve(recall, precision)
    if len(rec) == 0:
        return 0.0
    envelope = interpolated_precision(pre)  # (D,)
    if method == "voc_all":
        steps = rec.diff(prepend=rec.new_zeros(1))  # (D,) recall gained at each point
        return float((steps * envelope).sum())
    return float(precision_at(rec, envelope, recall_points(method)).mean())


def average_precision_per_class(preds: Sequence[dict], targets: Sequence[dict],
                                iou_threshold: float = 0.5, method: str = "coco101",
                                max_detections: int = 100) -> dict[int, float]:
    """AP of each class that has ground-truth objects, at one IoU threshold.

    Args:
        preds: one dict per image ("boxes", "scores", "labels"), as `match_detections`.
        targets: one dict per image ("boxes", "labels").
        iou_threshold: IoU a detection needs with an object to match it.
        method: the interpolation, see `average_precision`.
        max_detections: detections kept per image and class.

    Returns:
        {label: AP}; mAP is the mean of the values.
    """
    labels = sorted(set(torch.cat([t["labels"] for t in targets]).tolist())) if targets else []
    out = {}
    for c in labels:
        m = match_detections(preds, targets, c, iou_threshold, max_detections)
        if len(m["scores"]) == 0:
            out[c] = 0.0
            continue
        precision, recall = precision_recall(m["scores"], m["tp"], m["n_gt"])
        out[c] = average_precision(recall, precision, method)
    return out
