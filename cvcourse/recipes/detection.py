"""Recipes for the detection chapters: single-object localizer, Faster R-CNN (ours and
torchvision's peer with the same backbone).

Detectors train on fresh 128 x 128 shapes scenes (1-4 objects, ``view="scene"``) and are
scored on held-out scenes with `cvcourse.metrics.mean_average_precision` (COCO mAP and
mAP@0.5, identical to pycocotools). The localizer trains on one-object 64 x 64 scenes and is
scored by class accuracy and the mean IoU of its box with the true box.

`detect` runs a detector over scenes in batches; `timed_detect` is the one way the book
times a detector (every detection chapter and `cvcourse.tradeoffs.compare_detectors`).
"""

from __future__ import annotations

import contextlib
from typing import Dict, List

import torch
from torch import Tensor, nn

from ..data import CLASSES, ShapesDataset, detection_collate
from ..metrics import mean_average_precision
from ..models import FasterRCNN, SingleObjectLocalizer
from ..models.faster_rcnn import conv_backbone
from ..models.localizer import localization_loss
from ..ops.boxes import box_iou
from ..timing import Timing, median_time, threads
from . import Recipe, register

NUM_OBJECT_CLASSES = len(CLASSES) - 1
DETECTION_SIZE = 128
LOCALIZER_SIZE = 64


# ----------------------------------------------------------------------------- data
def detection_data(split: str, length: int, size: int = DETECTION_SIZE, seed: int = 0,
                   max_objects: int = 4) -> ShapesDataset:
    """Shapes scenes as ``(image [3, S, S], {"boxes", "labels", "masks", "semantic"})``."""
    return ShapesDataset(split=split, length=length, size=size, view="scene", seed=seed,
                         max_objects=max_objects)


def held_out_scenes(split: str = "test", n: int = 200, size: int = DETECTION_SIZE,
                    max_objects: int = 4):
    """The first `n` scenes of a held-out split: images ``[n, 3, S, S]`` and the target list."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test' (held-out), got {split!r}")
    ds = detection_data(split, n, size, max_objects=max_objects)
    return detection_collate([ds[i] for i in range(n)])


def detection_loss(model: nn.Module, batch) -> Dict[str, Tensor]:
    """torchvision's convention: in training mode ``model(images, targets)`` is the loss dict."""
    images, targets = batch
    return model(images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def detect(model: nn.Module, images: Tensor, batch_size: int = 25) -> List[Dict[str, Tensor]]:
    """Detections of `model` (eval mode) for every image, on the CPU: per image boxes/scores/labels."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(images), batch_size):
        for det in model(images[i:i + batch_size].to(dev)):
            out.append({k: v.cpu() for k, v in det.items() if k in ("boxes", "scores", "labels", "masks")})
    return out


def timed_detect(model: nn.Module, images: Tensor, batch_size: int = 25, repeats: int = 3,
                 num_threads: int | None = 1) -> tuple[List[Dict[str, Tensor]], Timing]:
    """`detect`, timed the one way the book quotes a detector's speed in every chapter.

    A warm-up on two images, then `repeats` timed passes of ``detect(model, images,
    batch_size)`` (network, decoding, score threshold and NMS), with torch on `num_threads`
    CPU threads and the GPU synchronised around each pass (`cvcourse.timing.median_time`).

    Args:
        model: a detector with the course's interface, on its own device.
        images: ``[N, 3, H, W]`` scenes.
        batch_size: images per forward pass (25 everywhere in the book).
        repeats: timed passes over all `images`, at least 1; the median is kept.
        num_threads: torch CPU threads while timing (1: figures comparable between
            machines and runs); None leaves torch's setting.

    Returns:
        The detections of the first timed pass, and the `Timing` of one pass over `images`
        (``timing.per_second(len(images))`` is the images/s the chapters print).
    """
    device = next(model.parameters()).device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    passes: List[List[Dict[str, Tensor]]] = []
    with contextlib.nullcontext() if num_threads is None else threads(num_threads):
        detect(model, images[:2], batch_size)                  # warm-up: first-call allocations
        timing = median_time(lambda: passes.append(detect(model, images, batch_size)),
                             repeats=repeats, warmup=0, sync=sync)
    return passes[0], timing


def detection_metrics(model: nn.Module, split: str = "test", n: int = 200) -> dict:
    """COCO mAP (0.50:0.95) and mAP@0.5 of `model` on the first `n` scenes of `split`."""
    images, targets = held_out_scenes(split, n)
    scores = mean_average_precision(detect(model, images), targets)
    return {"map": scores["map"], "map_50": scores["map_50"], "map_75": scores["map_75"]}


@torch.no_grad()
def localization_metrics(model: nn.Module, split: str = "test", n: int = 1000,
                         batch_size: int = 250) -> dict:
    """Class accuracy and mean IoU of the predicted with the true box on one-object scenes."""
    ds = localizer_data(split, n)
    model.eval()
    dev = next(model.parameters()).device
    correct, ious = 0, []
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=detection_collate)
    for images, targets in loader:
        preds = model.predict(images.to(dev))
        for p, t in zip(preds, targets):
            correct += int(p["labels"].cpu()[0] == t["labels"][0])
            ious.append(box_iou(p["boxes"].cpu(), t["boxes"])[0, 0])
    return {"accuracy": correct / n, "mean_iou": float(torch.stack(ious).mean())}


# One object of 12-32 px: at the default 6-24 px a one-pixel error on each side of a 6-px
# box already costs half its IoU, so a box-IoU bar would measure pixel rounding.
LOCALIZER_OBJECT_SIZE = (12, 32)
LOCALIZER_BOX_WEIGHT = 10.0


def localizer_data(split: str, length: int, size: int = LOCALIZER_SIZE, seed: int = 0) -> ShapesDataset:
    """One-object scenes ``(image [3, S, S], {"boxes" [1, 4], "labels" [1]})``, objects 12-32 px."""
    return ShapesDataset(split=split, length=length, size=size, view="single", seed=seed,
                         object_size=LOCALIZER_OBJECT_SIZE)


def localizer_loss(model: nn.Module, batch) -> Dict[str, Tensor]:
    """The multitask loss with the box term weighted `LOCALIZER_BOX_WEIGHT` (smooth L1).

    With weight 1 the shipped localizer (1500 steps) classified well (0.97) but its boxes
    were 2 px off per side (mean IoU 0.56): the classification term dominated the shared
    features. The chapter's sweep measures the trade-off.
    """
    return localization_loss(model, batch, box_weight=LOCALIZER_BOX_WEIGHT)


# ----------------------------------------------------------------------------- torchvision peer
def torchvision_faster_rcnn(num_classes: int = NUM_OBJECT_CLASSES, width: int = 24, stride: int = 8,
                            anchor_sizes=(16, 32, 64), aspect_ratios=(0.5, 1.0, 2.0),
                            representation_size: int = 128, size: int = DETECTION_SIZE) -> nn.Module:
    """torchvision's ``FasterRCNN`` class around *our* backbone and the same settings as ours.

    The peer of the Faster R-CNN chapter: same backbone (`conv_backbone`), anchors, RoI
    Align 7x7 (sampling ratio 2), box head width, sampling sizes and thresholds, so the
    comparison measures the implementations. torchvision normalises and resizes inside the
    model; mean 0 / std 1 and min = max = the image size make both no-ops (our backbone
    standardises each image itself).
    """
    from torchvision.models.detection import FasterRCNN as TVFasterRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchors
    from torchvision.ops import MultiScaleRoIAlign

    backbone = conv_backbone(width, stride)
    backbone.out_channels = 4 * width
    anchors = TVAnchors((tuple(anchor_sizes),), (tuple(aspect_ratios),))
    pooler = MultiScaleRoIAlign(["0"], output_size=7, sampling_ratio=2)
    return TVFasterRCNN(
        backbone, num_classes=None, min_size=size, max_size=size,
        image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
        rpn_anchor_generator=anchors, box_roi_pool=pooler,
        box_head=TwoMLPHead(4 * width * 49, representation_size),
        box_predictor=FastRCNNPredictor(representation_size, num_classes + 1),
        rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=300,
        rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=100,
        rpn_batch_size_per_image=256, box_batch_size_per_image=128,
        box_score_thresh=0.05, box_nms_thresh=0.5, box_detections_per_img=100)


# ----------------------------------------------------------------------------- recipes
def _train_scenes() -> ShapesDataset:
    return detection_data("train", 1_000_000)  # fresh scenes every step


DETECTOR_BUDGET = dict(steps=800, batch_size=8, lr=2e-3, warmup=50, grad_clip=10.0)

register(Recipe(
    name="localizer",
    factory=SingleObjectLocalizer,
    config={"num_classes": NUM_OBJECT_CLASSES, "width": 16},
    train_data=lambda: localizer_data("train", 1_000_000),
    loss=localizer_loss,
    evaluate=localization_metrics,
    bar={"accuracy": 0.97, "mean_iou": 0.85},
    steps=3000, batch_size=32, lr=2e-3, warmup=50,
    collate_fn=detection_collate,
    description="Classification + localization on 64x64 one-object scenes (objects 12-32 px): "
                "multitask loss cross-entropy + 10 x smooth L1 on normalized cx, cy, w, h.",
))

register(Recipe(
    name="faster_rcnn",
    factory=FasterRCNN,
    config={"num_classes": NUM_OBJECT_CLASSES, "width": 24, "stride": 8,
            "anchor_sizes": [16, 32, 64], "aspect_ratios": [0.5, 1.0, 2.0], "pooler": "align",
            "representation_size": 128},
    train_data=_train_scenes, loss=detection_loss, evaluate=detection_metrics,
    bar={"map_50": 0.90, "map": 0.60},
    collate_fn=detection_collate, **DETECTOR_BUDGET,
    description="Our Faster R-CNN (7-conv backbone, stride 8, 9 anchors, RoI Align) on 128x128 scenes.",
))

register(Recipe(
    name="faster_rcnn_torchvision",
    factory=torchvision_faster_rcnn,
    config={"num_classes": NUM_OBJECT_CLASSES, "width": 24, "stride": 8,
            "anchor_sizes": [16, 32, 64], "aspect_ratios": [0.5, 1.0, 2.0],
            "representation_size": 128},
    train_data=_train_scenes, loss=detection_loss, evaluate=detection_metrics,
    bar={"map_50": 0.85},
    collate_fn=detection_collate, **DETECTOR_BUDGET,
    description="The peer: torchvision's FasterRCNN class with the same backbone, data and budget.",
))
