"""Recipe for the DETR chapter: a small DETR trained from scratch on shapes scenes.

DETR converges slowly: the Hungarian matching hands each object to a different query from
step to step until the queries specialise, and the transformer starts with no notion of
where objects are. To train within the course's CPU budget the recipe uses scenes with
at most `MAX_OBJECTS` objects (instead of the detectors' 1-4) and DETR's own remedies
(auxiliary decoding losses, learning-rate warm-up, gradient clipping at 0.1).
`detr_metrics` therefore scores it on held-out scenes built exactly like
`cvcourse.data.scenes.held_out_scenes` but with the same `MAX_OBJECTS`.

Two further aids, both measured while writing the chapter (mAP@0.5 on the 200 test scenes
with 1-2 objects, lr warm-up 100 steps, clipping 0.1, 10 queries, 2+2 layers):

- a **pretrained backbone**, as DETR's ImageNet ResNet: the shape classifier's five
  convolutions (`detr_with_pretrained_backbone`). The original DETR from scratch reached
  0.02-0.04 after 1000 steps of batch 8 (lr 5e-4 to 2e-3, widths 8-16, 6-20 queries, 1-4
  objects: a 15-run sweep on one CPU thread); with the pretrained backbone frozen, 0.15;
- SMCA's Gaussian **spatial prior** on the decoder's cross-attention
  (`models.detr.SpatialPrior`, ``spatial_prior=True``).

With both, on the lent GPU (the manifest says which): frozen backbone, batch 8, lr 5e-4,
2000 steps 0.85; batch 16, 1500 steps 0.85; the backbone fine-tuned with everything else
at lr 2e-4, batch 16, 1500 steps 0.88 and COCO mAP 0.60 -- the shipped recipe. On one
2-core CPU thread it takes about 10 minutes.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data import ShapesDataset, detection_collate
from ..data.scenes import detection_data, held_out_scenes
from ..inference import detect
from ..metrics import mean_average_precision
from ..models.detr import DETR
from . import Recipe, register
from .detection import NUM_OBJECT_CLASSES, detection_loss

MAX_OBJECTS = 2          # objects per scene (1..MAX_OBJECTS) for training and evaluation
EVAL_SCENES = 200


def detr_data(split: str = "train", length: int = 1_000_000, seed: int = 0,
              max_objects: int = MAX_OBJECTS) -> ShapesDataset:
    """128 x 128 shapes scenes with 1..`max_objects` objects, in the detection view."""
    return detection_data(split, length, seed=seed, max_objects=max_objects)


@torch.no_grad()
def detr_metrics(model: nn.Module, split: str = "test", n: int = EVAL_SCENES,
                 max_objects: int = MAX_OBJECTS) -> dict:
    """COCO mAP, mAP@0.5 and mAP@0.75 on the first `n` held-out scenes with 1..`max_objects`
    objects (every query's guess is a detection; nothing is removed by NMS)."""
    images, targets = held_out_scenes(split, n, max_objects=max_objects)
    scores = mean_average_precision(detect(model, images), targets)
    return {"map": scores["map"], "map_50": scores["map_50"], "map_75": scores["map_75"]}


def detr_with_pretrained_backbone(backbone_weights: str | None = "classifier", weights_dir=None,
                                  **config) -> DETR:
    """A `DETR` whose first backbone layers start from a shipped classifier's convolutions.

    DETR starts from an ImageNet-pretrained ResNet; the course's analogue is the shape
    classifier (`recipes.classification`): its five conv-BN-ReLU layers are exactly the
    first stages of `conv_backbone` (width 16), so they load one to one; the deeper stride-8
    and stride-16 layers start at random. With ``frozen_backbone_layers`` in `config` the
    loaded layers stay fixed. ``backbone_weights=None`` gives a DETR trained from scratch.
    `weights_dir` is the folder of the backbone's checkpoint (default: the package's);
    `pretrained.load` passes its own folder, so a DETR loaded from a folder reads only there.
    """
    model = DETR(**config)
    if backbone_weights is not None:
        from .. import pretrained
        classifier = pretrained.load(backbone_weights, device="cpu", weights_dir=weights_dir)
        features = classifier.features.state_dict()
        missing, unexpected = model.backbone.load_state_dict(features, strict=False)
        if unexpected:
            raise ValueError(f"checkpoint {backbone_weights!r} does not fit DETR's backbone "
                             f"(width {config.get('width', 16)}): unexpected {unexpected}")
    return model


DETR_CONFIG = {"num_classes": NUM_OBJECT_CLASSES, "num_queries": 10, "width": 16, "stride": 16,
               "d_model": 64, "nhead": 4, "num_encoder_layers": 2, "num_decoder_layers": 2,
               "dim_feedforward": 128, "dropout": 0.0, "aux_loss": True, "eos_coef": 0.1,
               "backbone_weights": "classifier", "frozen_backbone_layers": 0, "spatial_prior": True}

register(Recipe(
    name="detr",
    factory=detr_with_pretrained_backbone,
    config=DETR_CONFIG,
    train_data=detr_data, loss=detection_loss, evaluate=detr_metrics,
    bar={"map_50": 0.80},
    steps=1500, batch_size=16, lr=2e-4, weight_decay=1e-4, warmup=100, grad_clip=0.1,
    collate_fn=detection_collate,
    description=f"DETR (stride-16 conv backbone, 2+2 transformer layers, 10 queries) on 128x128 "
                f"scenes with 1-{MAX_OBJECTS} objects; Hungarian matching, aux losses.",
))
