"""Recipe for the R-CNN chapter: a small CNN classifying warped selective-search proposals.

R-CNN cannot train on fresh scenes every step like the other detectors: its proposals come
from selective search, about a quarter of a second per 128 x 128 image on one CPU thread.
So it trains on a *fixed* set of train scenes whose proposals are computed once, the first
time a scene is drawn, and cached (`ProposalScenes`); that time is inside the training
time the manifest records. A random horizontal flip (of the image, its boxes and its
proposals together) doubles the variety of the fixed set.

Evaluation runs the whole pipeline on held-out scenes: selective search (at most
`EVAL_PROPOSALS` boxes per image), warp, one CNN pass per proposal, per-class NMS; then
COCO mAP and mAP@0.5 with `cvcourse.metrics.mean_average_precision`.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..data.scenes import detection_data, held_out_scenes
from ..inference import evaluating
from ..metrics import mean_average_precision
from ..models import RCNN
from ..models.rcnn import rcnn_loss
from ..proposals import propose
from . import Recipe, register
from .detection import NUM_OBJECT_CLASSES

__all__ = ["ProposalScenes", "rcnn_collate", "rcnn_train_loss", "held_out_proposals", "rcnn_metrics",
           "TRAIN_SCENES", "TRAIN_PROPOSALS", "EVAL_PROPOSALS", "EVAL_SCENES"]

TRAIN_SCENES = 400      # fixed train set: proposals are computed once per scene
TRAIN_PROPOSALS = 200   # selective-search boxes kept per train scene
EVAL_PROPOSALS = 100    # ... and per held-out scene (fewer: each one costs a CNN pass)
EVAL_SCENES = 100
ROIS_PER_IMAGE = 32     # proposals sampled per train image (at most a quarter positive)


def _flip_boxes(boxes: Tensor, width: int) -> Tensor:
    """Mirror xyxy boxes [N, 4] left-right in an image `width` pixels wide."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)


class ProposalScenes(Dataset):
    """Train scenes with their selective-search proposals: ``(image, target, proposals)``.

    Item i is scene i of `split` (``image [3, S, S]``, ``{"boxes" [N, 4], "labels" [N]}``)
    and ``proposals [K <= max_proposals, 4]`` from `cvcourse.proposals.propose`, computed
    the first time the item is read and kept. With `flip`, each read mirrors the triple
    left-right with probability 1/2 (torch's global RNG, seeded by `fit`).
    """

    def __init__(self, split: str = "train", length: int = TRAIN_SCENES,
                 max_proposals: int = TRAIN_PROPOSALS, flip: bool = True, seed: int = 0):
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        self.scenes = detection_data(split, length, seed=seed)
        self.max_proposals, self.flip = max_proposals, flip
        self._cache: dict[int, tuple[Tensor, dict, Tensor]] = {}

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, i: int):
        if i not in self._cache:
            image, target = self.scenes[i]
            self._cache[i] = (image, {"boxes": target["boxes"], "labels": target["labels"]},
                              propose(image, self.max_proposals))
        image, target, proposals = self._cache[i]
        if self.flip and bool(torch.rand(()) < 0.5):
            w = image.shape[-1]
            image = image.flip(-1)
            target = {"boxes": _flip_boxes(target["boxes"], w), "labels": target["labels"]}
            proposals = _flip_boxes(proposals, w)
        return image, target, proposals


def rcnn_collate(batch) -> tuple[Tensor, list[dict], list[Tensor]]:
    """``(image, target, proposals)`` triples -> images [B, 3, S, S], targets, proposals lists."""
    if len(batch) == 0:
        raise ValueError("batch must hold at least one (image, target, proposals) triple")
    images, targets, proposals = zip(*batch)
    return torch.stack(images), list(targets), list(proposals)


def rcnn_train_loss(model: RCNN, batch) -> dict[str, Tensor]:
    """`rcnn_loss` on `ROIS_PER_IMAGE` sampled proposals per image (each one is a CNN pass)."""
    return rcnn_loss(model, batch, batch_size_per_image=ROIS_PER_IMAGE)


@lru_cache(maxsize=4)
def held_out_proposals(split: str = "test", n: int = EVAL_SCENES,
                       max_proposals: int = EVAL_PROPOSALS):
    """The first `n` held-out scenes and their proposals (cached: selective search is slow).

    Returns:
        images [n, 3, 128, 128], targets (list of dicts), proposals (list of Tensor[K, 4]).
    """
    images, targets = held_out_scenes(split, n)
    return images, targets, [propose(im, max_proposals) for im in images]


@torch.no_grad()
def rcnn_metrics(model: RCNN, split: str = "test", n: int = EVAL_SCENES,
                 max_proposals: int = EVAL_PROPOSALS, batch_size: int = 10) -> dict:
    """COCO mAP and mAP@0.5 of R-CNN on the first `n` scenes of `split`, proposals included."""
    images, targets, proposals = held_out_proposals(split, n, max_proposals)
    dev = next(model.parameters()).device
    dets = []
    with evaluating(model):  # every module's mode restored afterwards
        for i in range(0, n, batch_size):
            props = [p.to(dev) for p in proposals[i:i + batch_size]]
            for d in model.predict(images[i:i + batch_size].to(dev), props):
                dets.append({k: v.cpu() for k, v in d.items()})
    scores = mean_average_precision(dets, targets)
    return {"map": scores["map"], "map_50": scores["map_50"], "map_75": scores["map_75"]}


register(Recipe(
    name="rcnn",
    factory=RCNN,
    config={"num_classes": NUM_OBJECT_CLASSES, "crop_size": 32, "width": 16},
    train_data=lambda: ProposalScenes("train", TRAIN_SCENES, TRAIN_PROPOSALS),
    loss=rcnn_train_loss,
    evaluate=rcnn_metrics,
    bar={"map_50": 0.92, "map": 0.76},  # reached 0.943 and 0.799 on 100 test scenes
    steps=1000, batch_size=8, lr=2e-3, warmup=50, grad_clip=10.0,
    collate_fn=rcnn_collate,
    description=f"R-CNN on 128x128 scenes: {TRAIN_SCENES} fixed train scenes with cached "
                f"selective-search proposals, {ROIS_PER_IMAGE} sampled per image, warped to 32x32.",
))
