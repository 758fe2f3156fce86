"""Single-object detection: classification + localization with one backbone and two heads.

With exactly one object per image the output has a fixed size: C class scores and 4 box
numbers. One CNN computes a feature vector; a linear head scores the classes, another
regresses the box as normalized ``(cx, cy, w, h)`` in [0, 1] (a sigmoid keeps it there).
Training adds the two objectives into one *multitask loss*:
``cross_entropy(scores, label) + box_weight * regression(box, target_box)``.

Taught in book/det_localization.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.boxes import box_convert
from .backbone import Standardize, conv_bn_relu
from .checks import check_images

__all__ = ["SingleObjectLocalizer", "localization_loss", "decode_boxes", "encode_boxes"]


def encode_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Xyxy pixel boxes [N, 4] -> normalized (cx, cy, w, h) in [0, 1] for an image (H, W)."""
    h, w = size
    scale = boxes.new_tensor([w, h, w, h])
    return box_convert(boxes, "xyxy", "cxcywh") / scale  # (N, 4)


def decode_boxes(normalized: Tensor, size: tuple[int, int]) -> Tensor:
    """Normalized (cx, cy, w, h) [N, 4] -> xyxy pixel boxes for an image (H, W)."""
    h, w = size
    scale = normalized.new_tensor([w, h, w, h])
    return box_convert(normalized * scale, "cxcywh", "xyxy")  # (N, 4)


class SingleObjectLocalizer(nn.Module):
    """One backbone, two heads: class scores ``[B, C]`` and a box ``[B, 4]``.

    Args:
        num_classes: object classes (3 shapes; no background: there is always one object).
        width: channels of the first stage; stages use width, 2w, 4w, 8w (stride 16).

    ``forward(images [B, 3, H, W])`` returns ``(scores [B, C], boxes [B, 4])``, the boxes as
    normalized ``(cx, cy, w, h)`` in [0, 1]. ``predict`` decodes them to xyxy pixels.
    """

    def __init__(self, num_classes: int = 3, width: int = 16):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        w = width
        self.backbone = nn.Sequential(
            Standardize(),
            conv_bn_relu(3, w), nn.MaxPool2d(2),                                  # (B, w, H/2, W/2)
            conv_bn_relu(w, 2 * w), nn.MaxPool2d(2),                          # (B, 2w, H/4, W/4)
            conv_bn_relu(2 * w, 4 * w), conv_bn_relu(4 * w, 4 * w), nn.MaxPool2d(2),  # H/8
            conv_bn_relu(4 * w, 8 * w), nn.MaxPool2d(2),                      # (B, 8w, H/16, W/16)
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),                                # (B, 8w * 16)
            nn.Linear(8 * w * 16, 16 * w), nn.ReLU(inplace=True),                 # (B, 16w)
        )
        # Where the object is needs the spatial layout, so the 4x4 grid is kept (not GAP).
        self.class_head = nn.Linear(16 * w, num_classes)
        self.box_head = nn.Linear(16 * w, 4)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Class logits ``[B, C]`` and normalized cx, cy, w, h boxes ``[B, 4]`` of images ``[B, 3, H, W]``."""
        check_images(images)
        f = self.backbone(images)                         # (B, 16w)
        return self.class_head(f), torch.sigmoid(self.box_head(f))  # (B, C), (B, 4)

    @torch.no_grad()
    def predict(self, images: Tensor) -> list[dict]:
        """One detection per image: ``{"boxes" [1, 4] xyxy px, "scores" [1], "labels" [1]}``."""
        scores, boxes = self(images)
        probs = scores.softmax(1)                         # (B, C)
        best, cls = probs.max(1)
        xyxy = decode_boxes(boxes, tuple(images.shape[-2:]))  # (B, 4)
        return [{"boxes": xyxy[i:i + 1], "scores": best[i:i + 1], "labels": cls[i:i + 1] + 1}
                for i in range(len(images))]


def localization_loss(model: nn.Module, batch, box_weight: float = 1.0,
                      box_loss: str = "smooth_l1") -> dict:
    """The multitask loss of a batch ``(images, targets)`` from ``ShapesDataset(view="single")``.

    Args:
        model: a `SingleObjectLocalizer` (or anything returning (scores, normalized boxes)).
        batch: ``(images [B, 3, H, W], targets)`` with one box and label (1..C) per target.
        box_weight: weight of the box term against the classification term.
        box_loss: ``"smooth_l1"`` or ``"l2"`` on the normalized (cx, cy, w, h).

    Returns:
        ``{"classification": cross-entropy, "box": box_weight * regression}``.
    """
    if box_loss not in ("smooth_l1", "l2"):
        raise ValueError(f"box_loss must be 'smooth_l1' or 'l2', got {box_loss!r}")
    images, targets = batch
    if any(len(t["boxes"]) != 1 for t in targets):
        raise ValueError("targets must hold exactly one box each "
                         "(use ShapesDataset(view='single'))")
    labels = torch.cat([t["labels"] for t in targets]).to(images.device) - 1  # (B,) 0-based
    gt = encode_boxes(torch.cat([t["boxes"] for t in targets]).to(images), tuple(images.shape[-2:]))
    scores, boxes = model(images)
    # Smooth L1 with beta 0.1: quadratic only below a tenth of the image, as boxes are in [0, 1].
    reg = (F.smooth_l1_loss(boxes, gt, beta=0.1) if box_loss == "smooth_l1"
           else F.mse_loss(boxes, gt))
    return {"classification": F.cross_entropy(scores, labels), "box": box_weight * reg}
