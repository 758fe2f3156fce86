"""pycocotools' COCOeval run on the course's per-image dicts (bbox), the reference that
`mean_average_precision` and `cvcourse.metrics.ap` are compared with in the evaluation
chapter. pycocotools is imported only here (it is a test requirement, and Colab has it)."""
from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np

__all__ = ["STAT_KEYS", "coco_eval"]

# COCOeval.stats, in order, under the names `mean_average_precision` returns
STAT_KEYS = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large")


def coco_eval(preds: Sequence[dict], targets: Sequence[dict], image_size: int = 128):
    """Evaluate xyxy box detections with pycocotools' COCOeval (printing silenced).

    Args:
        preds: one dict per image: "boxes" Tensor[N, 4] xyxy, "scores" Tensor[N], "labels" Tensor[N].
        targets: one dict per image: "boxes" Tensor[M, 4] xyxy, "labels" Tensor[M].
        image_size: the images' side in pixels (recorded; COCOeval does not use it for boxes).

    Returns:
        the evaluated ``COCOeval``: ``.stats`` (12 numbers, see `STAT_KEYS`) and
        ``.eval["precision"]`` ``[T, 101, K, 4 areas, 3 maxDets]``; categories are the sorted
        labels present in `preds` or `targets`.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(preds) != len(targets):
        raise ValueError(f"preds and targets must have one entry per image, got {len(preds)} "
                         f"and {len(targets)}")
    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets), start=1):
        images.append({"id": i, "height": image_size, "width": image_size})
        for box, label in zip(t["boxes"].tolist(), t["labels"].tolist()):
            x1, y1, x2, y2 = box
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": label, "iscrowd": 0,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})
        for box, label, score in zip(p["boxes"].tolist(), p["labels"].tolist(), p["scores"].tolist()):
            x1, y1, x2, y2 = box
            dets.append({"image_id": i, "category_id": label, "score": score,
                         "bbox": [x1, y1, x2 - x1, y2 - y1]})
    labels = sorted({a["category_id"] for a in anns} | {d["category_id"] for d in dets})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c} for c in labels]}
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(dets) if dets else COCO(), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ev.stats = np.asarray(ev.stats, dtype=np.float64)
    return ev
