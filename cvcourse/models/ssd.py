"""SSD (Liu et al., 2016): one pass, default boxes on several feature maps.

Where YOLO v1 predicts from one coarse grid, SSD predicts from **several** feature maps of
decreasing resolution (strides 8, 16 and 32 here: 16 x 16, 8 x 8 and 4 x 4 cells on a
128 x 128 image), each responsible for one range of object sizes. At every cell of map k
sit ``A`` **default boxes** (SSD's name for anchors) centred on the cell: a square of
scale ``s_k``, a square of scale ``sqrt(s_k s_{k+1})`` and boxes of scale ``s_k`` with
aspect ratios 2 and 1/2. A 3 x 3 conv on each map predicts, per default box, ``C + 1``
class scores (0 = background, softmax) and 4 box deltas (the R-CNN ``BoxCoder`` with SSD's
"variances" 0.1 and 0.2, i.e. weights (10, 10, 5, 5)).

Training (SSD's recipe):

* **matching**: a default box is positive when its IoU with a ground-truth box is >= 0.5;
  each ground truth also takes its best default box, whatever the IoU (torchvision's
  ``SSDMatcher``);
* **hard negative mining**: of the negatives, only the ``3 x (number of positives)`` with
  the highest confidence loss (the most confidently wrong) are kept, per image;
* **loss**: softmax cross-entropy over positives and mined negatives (``loss_classifier``)
  + smooth L1 on the positives' deltas (``loss_box_reg``), both divided by the number of
  positives.

Inference: softmax, drop class scores below 0.05 and keep the best 400 x C, decode,
per-class NMS at 0.45, keep the best 100. Interface: torchvision's detection interface.

Taught in book/ss_ssd.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.boxes import BoxCoder, batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from ..ops.matching import Matcher
from .backbone import MultiScaleBackbone
from .checks import check_detection_inputs, targets_to

__all__ = ["SSD", "default_boxes", "hard_negative_mining"]


def default_boxes(feature_shape: tuple[int, int], stride: int, scale: float, next_scale: float,
                  aspect_ratios: Sequence[float] = (0.5, 2.0), dtype=torch.float32,
                  device=None) -> Tensor:
    """SSD's default boxes for one feature map, in image pixels.

    Each cell ``(i, j)`` gets boxes centred on the cell's centre
    ``((j + 0.5) * stride, (i + 0.5) * stride)``: a square of side `scale`, a square of side
    ``sqrt(scale * next_scale)``, then for each aspect ratio ``r`` (height / width) a box of
    area ``scale ** 2``: ``w = scale / sqrt(r)``, ``h = scale * sqrt(r)``.

    Args:
        feature_shape ((h, w)): the map's size in cells.
        stride (int): image pixels per cell.
        scale (float): this map's box size, in pixels.
        next_scale (float): the next map's box size, in pixels.
        aspect_ratios: the extra (non-square) ratios.
        dtype: of the result.
        device: of the result.

    Returns:
        Tensor[h * w * A, 4]: xyxy boxes, cells in row-major order, then the
        ``A = 2 + len(aspect_ratios)`` boxes of each cell.
    """
    h, w = feature_shape
    if h < 1 or w < 1 or stride <= 0 or scale <= 0 or next_scale <= 0:
        raise ValueError(f"feature_shape, stride and scales must be positive, got "
                         f"{feature_shape}, {stride}, {scale}, {next_scale}")
    r = torch.as_tensor(list(aspect_ratios), dtype=dtype, device=device).sqrt()     # (R,)
    extra = math.sqrt(scale * next_scale)
    widths = torch.cat([torch.tensor([scale, extra], dtype=dtype, device=device), scale / r])
    heights = torch.cat([torch.tensor([scale, extra], dtype=dtype, device=device), scale * r])
    ys = (torch.arange(h, dtype=dtype, device=device) + 0.5) * stride               # (h,)
    xs = (torch.arange(w, dtype=dtype, device=device) + 0.5) * stride               # (w,)
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")                                   # (h, w)
    cx, cy = cx.reshape(-1, 1), cy.reshape(-1, 1)                                    # (hw, 1)
    boxes = torch.stack([cx - widths / 2, cy - heights / 2, cx + widths / 2, cy + heights / 2],
                        dim=-1)                                                      # (hw, A, 4)
    return boxes.reshape(-1, 4)


def hard_negative_mining(confidence_loss: Tensor, positive: Tensor, neg_pos_ratio: int = 3) -> Tensor:
    """Positives plus, per image, the ``neg_pos_ratio x #positives`` hardest negatives.

    Args:
        confidence_loss (Tensor[N, D]): each default box's cross-entropy (background target
            for negatives).
        positive (Tensor[N, D]): bool, the matched default boxes.
        neg_pos_ratio (int): negatives kept per positive (SSD: 3).

    Returns:
        Tensor[N, D]: bool mask of the boxes the classification loss is taken over.
    """
    if confidence_loss.shape != positive.shape:
        raise ValueError(f"confidence_loss and positive must have the same shape, got "
                         f"{tuple(confidence_loss.shape)} and {tuple(positive.shape)}")
    loss = confidence_loss.detach().masked_fill(positive, -math.inf)   # positives never count
    order = loss.argsort(dim=1, descending=True)                        # (N, D) hardest first
    rank = order.argsort(dim=1)                                         # each box's rank
    num_neg = (neg_pos_ratio * positive.sum(1, keepdim=True)).clamp(max=positive.shape[1])
    return positive | (rank < num_neg)


class SSD(nn.Module):
    """Single Shot MultiBox Detector on a small multi-scale conv backbone.

    Args:
        num_classes: object classes C (the classifier scores C + 1 with 0 = background).
        width: backbone width (maps have 4 * width channels).
        scales: default-box scale per map and one more (the last map's ``next_scale``), px.
        aspect_ratios: the non-square default-box ratios.
        iou_thresh: matching threshold (0.5).
        neg_pos_ratio: negatives kept per positive by hard negative mining (3).
        score_thresh: inference: drop scores at or below it.
        nms_thresh: inference: per-class NMS IoU threshold.
        detections_per_img: inference: most detections kept per image.
        topk_candidates: inference: candidates kept per class before NMS.
    """

    def __init__(self, num_classes: int = 3, width: int = 16,
                 scales: Sequence[float] = (12, 24, 48, 96),
                 aspect_ratios: Sequence[float] = (0.5, 2.0), iou_thresh: float = 0.5,
                 neg_pos_ratio: int = 3, score_thresh: float = 0.05, nms_thresh: float = 0.45,
                 detections_per_img: int = 100, topk_candidates: int = 400):
        super().__init__()
        self.backbone = MultiScaleBackbone(width)
        if len(scales) != len(self.backbone.strides) + 1:
            raise ValueError(f"scales must have one entry per feature map plus one "
                             f"({len(self.backbone.strides) + 1}), got {list(scales)}")
        self.num_classes, self.scales = num_classes, tuple(scales)
        self.aspect_ratios = tuple(aspect_ratios)
        self.num_anchors = 2 + len(aspect_ratios)
        c, a = self.backbone.out_channels, self.num_anchors
        self.cls_heads = nn.ModuleList(nn.Conv2d(c, a * (num_classes + 1), 3, padding=1)
                                       for _ in self.backbone.strides)
        self.box_heads = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1)
                                       for _ in self.backbone.strides)
        self.box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.matcher = Matcher(iou_thresh, iou_thresh)
        self.neg_pos_ratio = neg_pos_ratio
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img, self.topk_candidates = detections_per_img, topk_candidates

    def default_boxes(self, features: list[Tensor], image_size: int) -> Tensor:
        """All default boxes of the feature maps, in the heads' order: Tensor[D, 4]."""
        return torch.cat([
            default_boxes(tuple(f.shape[-2:]), image_size // f.shape[-1], self.scales[k],
                          self.scales[k + 1], self.aspect_ratios, f.dtype, f.device)
            for k, f in enumerate(features)])

    def head(self, features: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Class logits [N, D, C + 1] and box deltas [N, D, 4], default boxes cell-major."""
        n, logits, deltas = features[0].shape[0], [], []
        for f, cls, box in zip(features, self.cls_heads, self.box_heads):
            logits.append(cls(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes + 1))
            deltas.append(box(f).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return torch.cat(logits, 1), torch.cat(deltas, 1)

    def match_indices(self, anchors: Tensor, gt_boxes: Tensor) -> Tensor:
        """SSD's matching for one image: Tensor[D] index of each default box's ground truth, or -1.

        IoU >= threshold matches; each ground truth also takes its best default box.
        """
        iou = box_iou(gt_boxes, anchors)                    # (G, D)
        matched = self.matcher(iou).clamp(min=-1)           # (D,) gt index if IoU >= 0.5
        if len(gt_boxes):
            matched[iou.argmax(dim=1)] = torch.arange(len(iou), device=matched.device)
        return matched

    def match(self, anchors: Tensor, targets: list[dict[str, Tensor]]) -> tuple[Tensor, Tensor]:
        """Per image: class of each default box [N, D] (0 = background) and its target box [N, D, 4]."""
        labels, boxes = [], []
        for t in targets:                                   # a loop over the images
            matched = self.match_indices(anchors, t["boxes"])
            if len(t["boxes"]):
                idx = matched.clamp(min=0)
                labels.append(torch.where(matched >= 0, t["labels"][idx], 0))
                boxes.append(t["boxes"][idx])
            else:
                labels.append(torch.zeros_like(matched))
                boxes.append(anchors.clone())
        return torch.stack(labels), torch.stack(boxes)

    def compute_loss(self, logits: Tensor, deltas: Tensor, anchors: Tensor,
                     targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """``loss_classifier`` (mined negatives) and ``loss_box_reg`` (positives), per positive."""
        labels, matched_boxes = self.match(anchors, targets)            # (N, D), (N, D, 4)
        positive = labels > 0
        num_pos = positive.sum().clamp(min=1)
        ce = F.cross_entropy(logits.reshape(-1, self.num_classes + 1), labels.reshape(-1),
                             reduction="none").view_as(labels)          # (N, D)
        used = hard_negative_mining(ce, positive, self.neg_pos_ratio)
        pos_anchors = anchors.expand_as(matched_boxes)[positive]        # (P, 4)
        box_targets = self.box_coder.encode(matched_boxes[positive], pos_anchors)
        box = F.smooth_l1_loss(deltas[positive], box_targets, reduction="sum")
        return {"loss_classifier": ce[used].sum() / num_pos, "loss_box_reg": box / num_pos}

    @torch.no_grad()
    def postprocess(self, logits: Tensor, deltas: Tensor, anchors: Tensor,
                    image_size) -> list[dict[str, Tensor]]:
        """Per image ``{"boxes", "scores", "labels"}``: threshold, decode, per-class NMS."""
        out = []
        c = self.num_classes
        for lg, dl in zip(logits, deltas):                   # a loop over the images
            scores = lg.softmax(-1)[:, 1:]                   # (D, C) object classes
            boxes = clip_boxes_to_image(self.box_coder.decode(dl, anchors), image_size)
            sc = scores.t().reshape(-1)                      # (C * D,) class-major
            labels = torch.arange(1, c + 1, device=sc.device).repeat_interleave(len(anchors))
            idx = torch.arange(len(anchors), device=sc.device).repeat(c)
            keep = torch.where(sc > self.score_thresh)[0]
            keep = keep[sc[keep].topk(min(self.topk_candidates * c, len(keep))).indices]
            keep = keep[remove_small_boxes(boxes[idx[keep]], 1e-2)]
            keep = keep[batched_nms(boxes[idx[keep]], sc[keep], labels[keep], self.nms_thresh)]
            keep = keep[:self.detections_per_img]
            out.append({"boxes": boxes[idx[keep]], "scores": sc[keep], "labels": labels[keep]})
        return out

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        """The losses (training) or the detections (eval).

        Args:
            images: [N, 3, H, W] in [0, 1] (H = W, a multiple of 32).
            targets: per image {"boxes" [G, 4] xyxy, "labels" [G] in 1..C} (training only).

        Returns:
            training: {"loss_classifier", "loss_box_reg"};
            eval: per image {"boxes" [K, 4] xyxy, "scores" [K], "labels" [K] in 1..C}.
        """
        check_detection_inputs(images, targets, self.training, self.num_classes)
        if len(images) == 0:
            return []                                        # eval: no images, no detections
        features = self.backbone(images)
        logits, deltas = self.head(features)                 # (N, D, C + 1), (N, D, 4)
        anchors = self.default_boxes(features, images.shape[-1])   # (D, 4)
        if self.training:
            targets = targets_to(images, targets)
            return self.compute_loss(logits, deltas, anchors, targets)
        return self.postprocess(logits, deltas, anchors, tuple(images.shape[-2:]))
