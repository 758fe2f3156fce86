"""COCO-style mean average precision (bbox and segm).

`mean_average_precision` reproduces pycocotools' ``COCOeval`` number for number, in four
steps that mirror it:

1. IoU between the detections and ground truths of one image and one class;
2. greedy matching in descending score order, at every IoU threshold;
3. accumulation over images into a precision/recall curve, sampled at 101 recall points;
4. means over thresholds, classes and recall points, leaving out undefined (-1) entries.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F

# COCOeval's constants, built exactly as pycocotools builds them (bit-identical thresholds).
_COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
_RECALL_THRESHOLDS = torch.from_numpy(np.linspace(0.0, 1.0, 101, endpoint=True))
_AREA_RANGES = torch.tensor([[0.0, 1e5 ** 2],                    # all
                             [0.0, 32.0 ** 2],                   # small
                             [32.0 ** 2, 96.0 ** 2],             # medium
                             [96.0 ** 2, 1e5 ** 2]], dtype=torch.float64)  # large


def _box_iou_coco(dt, gt, crowd):
    """pycocotools' bbox IoU. dt (D, 4), gt (G, 4) xywh float64, crowd (G,) -> (D, G).

    For a crowd ground truth the union is the detection's own area.
    """
    dx, dy, dw, dh = dt[:, None].unbind(-1)                         # (D, 1) each
    gx, gy, gw, gh = gt[None].unbind(-1)                            # (1, G) each
    w = torch.minimum(dx + dw, gx + gw) - torch.maximum(dx, gx)
    h = torch.minimum(dy + dh, gy + gh) - torch.maximum(dy, gy)
    inter, area_d = w * h, dw * dh
    union = torch.where(crowd[None], area_d, area_d + gw * gh - inter)
    return torch.where((w > 0) & (h > 0), inter / union, torch.zeros_like(inter))


def _mask_iou_coco(dt, gt, crowd):
    """Mask IoU. dt (D, P), gt (G, P) bool flattened masks, crowd (G,) -> (D, G)."""
    dt, gt = dt.double(), gt.double()                               # exact counts below 2**53
    inter = dt @ gt.T                                               # (D, G)
    area_d = dt.sum(1)[:, None]
    union = torch.where(crowd[None], area_d, area_d + gt.sum(1)[None] - inter)
    return torch.where(inter > 0, inter / union, torch.zeros_like(inter))


def _as_tensor(entry, key, where):
    if key not in entry:
        raise ValueError(f"{where} is missing key {key!r}")
    try:
        return torch.as_tensor(entry[key])
    except (TypeError, ValueError, RuntimeError) as e:
        raise ValueError(f"{where}[{key!r}] must be a Tensor (or convertible to one): {e}") from None


def _check_finite(x, name):
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite, got {int((~torch.isfinite(x)).sum())} NaN/inf value(s)")


def _read_image(entry, where, iou_type, is_pred):
    """Check one image's dict and bring it to COCO form: xywh float64 boxes or flat masks.

    "geometry" stays on the input's device (IoUs are computed there); the rest goes to CPU.
    """
    if not isinstance(entry, Mapping):
        raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
    labels = _as_tensor(entry, "labels", where)
    n = labels.shape[0] if labels.dim() == 1 else -1
    if n < 0 or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"{where}['labels'] must be an int Tensor[N], "
                         f"got {labels.dtype} {list(labels.shape)}")
    if n and int(labels.min()) < 0:
        raise ValueError(f"{where}['labels'] must be class indices >= 0, got {int(labels.min())}")
    out = {"labels": labels.long().cpu()}
    if is_pred:
        scores = _as_tensor(entry, "scores", where)
        if scores.shape != (n,):
            raise ValueError(f"{where}['scores'] must be [N] = [{n}], got {list(scores.shape)}")
        if scores.is_complex() or scores.dtype == torch.bool:
            raise ValueError(f"{where}['scores'] must be real numbers, got dtype {scores.dtype}")
        _check_finite(scores.double(), f"{where}['scores']")
        out["scores"] = scores.double().cpu()
    crowd = torch.as_tensor(entry.get("iscrowd", torch.zeros(n, dtype=torch.bool)))
    if crowd.shape != (n,):
        raise ValueError(f"{where}['iscrowd'] must be [N] = [{n}], got {list(crowd.shape)}")
    if n and not ((crowd == 0) | (crowd == 1)).all():
        raise ValueError(f"{where}['iscrowd'] must hold 0/1 (or bools), got {crowd.unique().tolist()}")
    out["crowd"] = crowd.bool().cpu()
    if iou_type == "bbox":
        boxes = _as_tensor(entry, "boxes", where).double()
        if boxes.shape != (n, 4):
            raise ValueError(f"{where}['boxes'] must be [N, 4] = [{n}, 4] xyxy, got {list(boxes.shape)}")
        _check_finite(boxes, f"{where}['boxes']")
        wh = boxes[:, 2:] - boxes[:, :2]                            # no +1, as pycocotools
        if (wh < 0).any():
            raise ValueError(f"{where}['boxes'] must be xyxy with x2 >= x1 and y2 >= y1")
        out["geometry"] = torch.cat([boxes[:, :2], wh], dim=1)     # (N, 4) xywh
        out["area"] = (wh[:, 0] * wh[:, 1]).cpu()
    else:
        masks = _as_tensor(entry, "masks", where)
        if masks.dim() == 4 and masks.shape[1] == 1:
            masks = masks[:, 0]                                     # (N, 1, H, W) -> (N, H, W)
        if masks.dim() != 3 or masks.shape[0] != n:
            raise ValueError(f"{where}['masks'] must be [N, H, W] or [N, 1, H, W] with N = {n}, "
                             f"got {list(masks.shape)}")
        _check_finite(masks, f"{where}['masks']")
        masks = masks > 0.5 if masks.is_floating_point() else masks != 0
        out["size"] = tuple(masks.shape[1:])
        out["geometry"] = masks.flatten(1)                          # (N, H*W) bool
        out["area"] = out["geometry"].sum(1).double().cpu()
    return out


def _select(record, index):
    """Rows `index` (CPU int64) of every per-object tensor of a `_read_image` record."""
    geometry = record["geometry"]
    out = {key: record[key][index] for key in ("area", "scores", "crowd") if key in record}
    out["geometry"] = geometry[index.to(geometry.device)]
    return out


def _match_image(dt, gt, iou_fn, iou_thrs):
    """COCOeval.evaluateImg for one image and class, all four area ranges at once.

    Args:
        dt: detections sorted by descending score: geometry, area (D,), scores (D,).
        gt: ground truths: geometry, area (G,), crowd (G,) bool.
        iou_fn: `_box_iou_coco` or `_mask_iou_coco`.
        iou_thrs: float64 Tensor[T].

    Returns:
        dict: scores (D,), matched (A, T, D) bool, ignored (A, T, D) bool, n_gt (A,) number
        of ground truths that count (not crowd, inside the area range).
    """
    D, G, A, T = len(dt["scores"]), len(gt["area"]), len(_AREA_RANGES), len(iou_thrs)
    lo, hi = _AREA_RANGES[:, :1], _AREA_RANGES[:, 1:]                # (A, 1)
    gt_ignore = gt["crowd"][None] | (gt["area"][None] < lo) | (gt["area"][None] > hi)  # (A, G)
    matched = torch.zeros(A, T, D, dtype=torch.bool)
    ignored = torch.zeros(A, T, D, dtype=torch.bool)
    if D and G:
        geometry = gt["geometry"]
        ious = iou_fn(dt["geometry"], geometry, gt["crowd"].to(geometry.device)).cpu()  # (D, G)
        thr = iou_thrs.clamp(max=1 - 1e-10)[None, :, None]          # (1, T, 1)
        gt_taken = torch.zeros(A, T, G, dtype=torch.bool)
        ign = gt_ignore[:, None, :].expand(A, T, G)
        for d in range(D):                                          # greedy: best score first
            ok = (ious[d] >= thr) & (~gt_taken | gt["crowd"])       # (A, T, G) candidates
            regular = ok & ~ign
            # COCO prefers any regular gt over an ignored one, then the highest IoU
            # (the last one on ties, as its loop uses `<` over gts ordered ignore-last).
            ok = torch.where(regular.any(-1, keepdim=True), regular, ok)
            iou = torch.where(ok, ious[d], torch.full_like(ious[d], -1.0)).flip(-1)
            best = G - 1 - iou.argmax(-1, keepdim=True)             # (A, T, 1)
            hit = ok.any(-1)                                        # (A, T)
            gt_taken |= F.one_hot(best[..., 0], G).bool() & hit[..., None]
            matched[:, :, d] = hit
            ignored[:, :, d] = hit & ign.gather(-1, best)[..., 0]
    dt_out = (dt["area"][None] < lo) | (dt["area"][None] > hi)     # (A, D)
    ignored |= ~matched & dt_out[:, None, :]                        # unmatched, out of range
    return {"scores": dt["scores"], "matched": matched, "ignored": ignored,
            "n_gt": (~gt_ignore).sum(1)}


def _accumulate(results, max_dets, iou_thrs):
    """COCOeval.accumulate for one class. results: `_match_image` dicts in image order.

    Returns:
        precision (T, R, A, M) and recall (T, A, M) float64, -1 where undefined.
    """
    T, R, A, M = len(iou_thrs), len(_RECALL_THRESHOLDS), len(_AREA_RANGES), len(max_dets)
    precision = -torch.ones(T, R, A, M, dtype=torch.float64)
    recall = -torch.ones(T, A, M, dtype=torch.float64)
    if not results:
        return precision, recall
    n_gt = torch.stack([r["n_gt"] for r in results]).sum(0)        # (A,)
    for m, max_det in enumerate(max_dets):
        scores = torch.cat([r["scores"][:max_det] for r in results])
        order = torch.sort(-scores, stable=True).indices            # = numpy mergesort
        matched = torch.cat([r["matched"][..., :max_det] for r in results], -1)[..., order]
        ignored = torch.cat([r["ignored"][..., :max_det] for r in results], -1)[..., order]
        tp = torch.cumsum(matched & ~ignored, -1).double()          # (A, T, N)
        fp = torch.cumsum(~matched & ~ignored, -1).double()
        for a in range(A):
            if n_gt[a] == 0:
                continue                                            # undefined: stays -1
            if len(scores) == 0:
                precision[:, :, a, m], recall[:, a, m] = 0.0, 0.0
                continue
            rc = tp[a] / n_gt[a]                                    # (T, N)
            pr = tp[a] / (fp[a] + tp[a] + np.spacing(1))
            pr = pr.flip(-1).cummax(-1).values.flip(-1)             # make precision non-increasing
            # first curve point reaching each recall threshold (one row per IoU threshold:
            # much faster than batched searchsorted on a small CPU)
            idx = torch.stack([torch.searchsorted(row, _RECALL_THRESHOLDS) for row in rc])  # (T, R)
            q = pr.gather(1, idx.clamp(max=len(scores) - 1))
            precision[:, :, a, m] = torch.where(idx < len(scores), q, torch.zeros_like(q))
            recall[:, a, m] = rc[:, -1]
    return precision, recall


def _mean_defined(x):
    x = x[x > -1]
    return float(x.mean()) if x.numel() else -1.0


def mean_average_precision(preds, targets, iou_type="bbox", iou_thresholds=None,
                           max_detections=100, class_metrics=False):
    """COCO mAP and mAR, identical to pycocotools' COCOeval (``stats``), torchmetrics' keys.

    Detections are matched greedily in descending score order (stable, so ties keep their
    input order) to the unmatched ground truth of the same class with the highest IoU, at
    each IoU threshold. Crowd ground truths (``iscrowd``) and ground truths outside an area
    range are "ignored": matching them is neither a hit nor a false positive. Precision is
    interpolated at 101 recall points. Entries COCOeval leaves undefined (-1: a class with no
    ground truth in an area range) are left out of every mean.

    Args:
        preds: list, one dict per image: "boxes" float Tensor[N, 4] xyxy (bbox), "scores"
            Tensor[N], "labels" int Tensor[N], "masks" (segm) bool/uint8 Tensor[N, H, W] or
            float Tensor[N, 1, H, W] (thresholded at 0.5).
        targets: list, one dict per image: "boxes" (bbox) / "masks" (segm), "labels", and
            optionally "iscrowd" Tensor[M] of 0/1.
        iou_type: "bbox" (areas are box areas) or "segm" (areas are mask pixel counts).
        iou_thresholds: IoU thresholds; default 0.50:0.05:0.95.
        max_detections: detections kept per image and class, highest scores first. AP
            and the last AR use this cap; mar_1 and mar_10 use caps of 1 and 10 (each at
            most max_detections).
        class_metrics: also return per-class AP and AR.

    Returns:
        dict of floats: map, map_50, map_75, map_small, map_medium, map_large, mar_1,
        mar_10, mar_{max_detections} (mar_100 by default), mar_small, mar_medium, mar_large;
        -1.0 where undefined (e.g. map_50 when 0.5 is not a threshold). With class_metrics,
        also "map_per_class" and "mar_{max_detections}_per_class": {label: float}.
        Classes are the union of labels in preds and targets.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    for name, x in (("preds", preds), ("targets", targets)):
        if not isinstance(x, (list, tuple)):
            raise ValueError(f"{name} must be a list of dicts, one per image, got {type(x).__name__}")
    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must have one entry per image, got {len(preds)} "
                         f"preds and {len(targets)} targets")
    if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1:
        raise ValueError(f"max_detections must be a positive int, got {max_detections!r}")
    iou_thrs = torch.as_tensor(_COCO_IOU_THRESHOLDS if iou_thresholds is None else iou_thresholds,
                               dtype=torch.float64).flatten().cpu()
    if iou_thrs.numel() == 0 or not ((iou_thrs >= 0) & (iou_thrs <= 1)).all():  # NaN fails too
        raise ValueError(f"iou_thresholds must be a non-empty list of values in [0, 1], "
                         f"got {iou_thresholds!r}")
    if not isinstance(class_metrics, bool):
        raise ValueError(f"class_metrics must be True or False, got {class_metrics!r}")
    max_dets = [min(1, max_detections), min(10, max_detections), max_detections]

    images = []
    for i, (p, t) in enumerate(zip(preds, targets)):
        dt = _read_image(p, f"preds[{i}]", iou_type, is_pred=True)
        gt = _read_image(t, f"targets[{i}]", iou_type, is_pred=False)
        if iou_type == "segm" and len(dt["area"]) and len(gt["area"]) and dt["size"] != gt["size"]:
            raise ValueError(f"preds[{i}]['masks'] are {dt['size']} but "
                             f"targets[{i}]['masks'] are {gt['size']}")
        images.append((dt, gt))
    labels = [x["labels"] for image in images for x in image]
    classes = sorted(set(torch.cat(labels).tolist())) if labels else []
    iou_fn = _box_iou_coco if iou_type == "bbox" else _mask_iou_coco

    T, R, K, A, M = len(iou_thrs), len(_RECALL_THRESHOLDS), len(classes), len(_AREA_RANGES), 3
    precision = -torch.ones(T, R, K, A, M, dtype=torch.float64)
    recall = -torch.ones(T, K, A, M, dtype=torch.float64)
    for k, c in enumerate(classes):
        results = []
        for dt, gt in images:                                       # image order, as COCOeval
            is_d, is_g = dt["labels"] == c, gt["labels"] == c
            if not is_d.any() and not is_g.any():
                continue                                            # COCOeval: None, skipped
            order = torch.sort(-dt["scores"][is_d], stable=True).indices[:max_dets[-1]]
            dt_c = _select(dt, is_d.nonzero()[:, 0][order])        # best score first
            gt_c = _select(gt, is_g.nonzero()[:, 0])
            results.append(_match_image(dt_c, gt_c, iou_fn, iou_thrs))
        precision[:, :, k], recall[:, k] = _accumulate(results, max_dets, iou_thrs)

    def at(threshold):                                              # COCOeval: -1 if absent
        return torch.isclose(iou_thrs, torch.tensor(threshold, dtype=torch.float64), rtol=0, atol=1e-12)

    last = f"mar_{max_dets[-1]}"
    out = {
        "map": _mean_defined(precision[..., 0, -1]),
        "map_50": _mean_defined(precision[at(0.5)][..., 0, -1]),
        "map_75": _mean_defined(precision[at(0.75)][..., 0, -1]),
        "map_small": _mean_defined(precision[..., 1, -1]),
        "map_medium": _mean_defined(precision[..., 2, -1]),
        "map_large": _mean_defined(precision[..., 3, -1]),
        "mar_1": _mean_defined(recall[..., 0, 0]),
        "mar_10": _mean_defined(recall[..., 0, 1]),
        last: _mean_defined(recall[..., 0, 2]),
        "mar_small": _mean_defined(recall[..., 1, -1]),
        "mar_medium": _mean_defined(recall[..., 2, -1]),
        "mar_large": _mean_defined(recall[..., 3, -1]),
    }
    if class_metrics:
        ks = list(enumerate(classes))
        out["map_per_class"] = {c: _mean_defined(precision[:, :, k, 0, -1]) for k, c in ks}
        out[f"{last}_per_class"] = {c: _mean_defined(recall[:, k, 0, -1]) for k, c in ks}
    return out
