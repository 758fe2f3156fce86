"""Recipes for the instance segmentation chapter: Mask R-CNN with RoI Align or RoI Pool masks.

Both train on the detection chapters' fresh 128 x 128 shapes scenes (``view="scene"``, whose
targets carry one visible-pixel mask per object) with the same budget, seed and settings; they
differ only in the mask branch's pooler. The box branch keeps RoI Align in both, so the
comparison isolates what alignment does to the *masks* (the Mask R-CNN paper swapped the
pooler of its whole C4 model, whose box and mask heads share one pooled feature).
Scores: box mAP@0.5 and mask mAP, mAP@0.5, mAP@0.75 on held-out scenes, computed by
`cvcourse.metrics.mean_average_precision` (identical to pycocotools, ``iou_type="segm"``).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..data import detection_collate
from ..data.scenes import DETECTION_SIZE, detection_data, held_out_scenes
from ..inference import segment
from ..metrics import mean_average_precision
from ..models.mask_rcnn import MaskRCNN
from . import Recipe, register
from .detection import NUM_OBJECT_CLASSES

EVAL_SCENES = 200


def instance_loss(model: nn.Module, batch) -> dict[str, Tensor]:
    """``model(images, targets)`` with boxes, labels and masks: the five losses of Mask R-CNN."""
    images, targets = batch
    return model(images, [{k: t[k] for k in ("boxes", "labels", "masks")} for t in targets])


def instance_metrics(model: nn.Module, split: str = "test", n: int = EVAL_SCENES) -> dict:
    """Box mAP@0.5 and mask mAP (0.50:0.95), mAP@0.5, mAP@0.75 on the first `n` scenes of `split`."""
    images, targets = held_out_scenes(split, n)
    preds = segment(model, images)
    boxes = mean_average_precision(preds, targets, iou_type="bbox")
    masks = mean_average_precision(preds, targets, iou_type="segm")
    return {"box_map_50": boxes["map_50"], "box_map": boxes["map"], "mask_map": masks["map"],
            "mask_map_50": masks["map_50"], "mask_map_75": masks["map_75"]}


def _train_scenes():
    return detection_data("train", 1_000_000)  # fresh scenes every step


MASK_RCNN_CONFIG = {"num_classes": NUM_OBJECT_CLASSES, "width": 24, "stride": 8,
                    "anchor_sizes": [16, 32, 64], "aspect_ratios": [0.5, 1.0, 2.0],
                    "pooler": "align", "representation_size": 128, "mask_pool_size": 14,
                    "mask_channels": 32, "mask_layers": 4, "mask_batch_size_per_image": 8}
MASK_RCNN_BUDGET = dict(steps=650, batch_size=8, lr=2e-3, warmup=50, grad_clip=10.0)


def _mask_rcnn(name: str, mask_pooler: str, bar: dict, description: str) -> Recipe:
    """The two recipes share everything (data, model, budget, seed) but the mask pooler."""
    return register(Recipe(
        name=name, factory=MaskRCNN, config={**MASK_RCNN_CONFIG, "mask_pooler": mask_pooler},
        train_data=_train_scenes, loss=instance_loss, evaluate=instance_metrics, bar=bar,
        collate_fn=detection_collate, **MASK_RCNN_BUDGET, description=description))


_mask_rcnn("mask_rcnn", "align", bar={"mask_map_50": 0.85, "box_map_50": 0.90},
           description=f"Mask R-CNN: our Faster R-CNN + a 4-conv mask FCN on RoI Align 14x14 "
                       f"features, 28x28 masks, on {DETECTION_SIZE}x{DETECTION_SIZE} scenes.")
_mask_rcnn("mask_rcnn_pool", "pool", bar={"box_map_50": 0.85},
           description="The same Mask R-CNN with RoI Pool (snapped to feature cells) in the "
                       "mask branch: the alignment ablation.")
