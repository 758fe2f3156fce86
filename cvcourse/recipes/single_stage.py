"""Recipes for the single-stage chapters: YOLO, SSD, RetinaNet (focal loss) and RetinaNet with
plain binary cross-entropy, the control of the class-imbalance experiment.

All four train on fresh 128 x 128 shapes scenes with the two-stage chapters' batch, learning
rate and schedule (`DETECTOR_BUDGET`), and are scored by the same held-out evaluation
(`detection_metrics`: COCO mAP and mAP@0.5 on 200 test scenes), so the trade-offs chapter
compares detectors, not training set-ups. Trained from scratch, dense heads need more steps
than Faster R-CNN's 800 (after 600 steps: mAP@0.5 0.77 for Faster R-CNN, 0.66 SSD, 0.62 YOLO
on 50 validation scenes): YOLO and SSD get 3,000, the slower RetinaNet 2,000 (its step costs
1.2-1.4x theirs). Their backbones are the Faster R-CNN chapter's `conv_backbone` at width 16
(64 channels), extended to strides 16 and 32 for SSD and RetinaNet. `retinanet` and
`retinanet_bce` differ only in the classification loss.

The shipped checkpoints were trained on a lent GPU (the manifest says which, and that ten jobs
shared it); on one 2-core CPU thread each takes 15-20 minutes.
"""

from __future__ import annotations

from ..data import detection_collate
from ..data.scenes import detection_data
from ..models.retinanet import RetinaNet
from ..models.ssd import SSD
from ..models.yolo import YOLO
from . import Recipe, register
from .detection import DETECTOR_BUDGET, NUM_OBJECT_CLASSES, detection_loss, detection_metrics

SINGLE_STAGE_WIDTH = 16
SINGLE_STAGE_STEPS = {"yolo": 3000, "ssd": 3000, "retinanet": 2000, "retinanet_bce": 2000}


def _train_scenes():
    return detection_data("train", 1_000_000)  # fresh scenes every step


_BUDGET = {k: v for k, v in DETECTOR_BUDGET.items() if k != "steps"}
_COMMON = dict(train_data=_train_scenes, loss=detection_loss, evaluate=detection_metrics,
               collate_fn=detection_collate, **_BUDGET)

register(Recipe(
    name="yolo",
    steps=SINGLE_STAGE_STEPS["yolo"],
    factory=YOLO,
    config={"num_classes": NUM_OBJECT_CLASSES, "width": SINGLE_STAGE_WIDTH, "stride": 8,
            "boxes_per_cell": 2, "lambda_coord": 5.0, "lambda_noobj": 0.5},
    bar={"map_50": 0.85},
    description="YOLO v1-style grid detector: 16x16 cells of 8 px, 2 boxes per cell, "
                "responsible cell = the one holding the object's centre.",
    **_COMMON,
))

register(Recipe(
    name="ssd",
    steps=SINGLE_STAGE_STEPS["ssd"],
    factory=SSD,
    config={"num_classes": NUM_OBJECT_CLASSES, "width": SINGLE_STAGE_WIDTH,
            "scales": [12, 24, 48, 96], "aspect_ratios": [0.5, 2.0]},
    bar={"map_50": 0.85},
    description="SSD: 4 default boxes per cell on maps of stride 8, 16, 32; IoU 0.5 matching, "
                "3:1 hard negative mining, softmax + smooth L1.",
    **_COMMON,
))

_RETINA = {"num_classes": NUM_OBJECT_CLASSES, "width": SINGLE_STAGE_WIDTH, "fpn_channels": 64,
           "head_depth": 2, "head_norm": True, "anchor_sizes": [[12, 15, 19], [24, 30, 38], [48, 60, 76]],
           "aspect_ratios": [0.5, 1.0, 2.0]}

register(Recipe(
    name="retinanet",
    steps=SINGLE_STAGE_STEPS["retinanet"],
    factory=RetinaNet,
    config={**_RETINA, "loss": "focal", "alpha": 0.25, "gamma": 2.0},
    bar={"map_50": 0.85},
    description="RetinaNet: FPN on strides 8-32, 9 anchors per location, focal loss "
                "(gamma 2, alpha 0.25) normalised by the positives, prior bias 0.01.",
    **_COMMON,
))

register(Recipe(
    name="retinanet_bce",
    steps=SINGLE_STAGE_STEPS["retinanet_bce"],
    factory=RetinaNet,
    config={**_RETINA, "loss": "bce"},
    bar={"map_50": 0.85},
    description="The same RetinaNet, data and budget, trained with plain binary "
                "cross-entropy instead of the focal loss (the class-imbalance control).",
    **_COMMON,
))
