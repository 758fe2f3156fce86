"""Region Proposal Network (Faster R-CNN's first stage), built from `cvcourse.ops`.

At every cell of the backbone's feature map sit ``A`` anchors (sizes x aspect ratios). A
3x3 conv reads the cell's neighbourhood, then two 1x1 convs predict, per anchor, an
*objectness* logit and the 4 *box deltas* (see ``BoxCoder``) that move the anchor onto the
object. Training labels anchors by IoU (>= 0.7 object, < 0.3 background, the rest ignored),
samples 256 per image (at most half positive) and sums a BCE objectness loss and a
smooth-L1 box loss over them. Proposals are the decoded anchors with the best objectness,
clipped, small ones removed, de-duplicated by NMS (0.7): the second stage's regions.
Mirrors ``torchvision.models.detection.rpn.RegionProposalNetwork`` (single feature map).

Taught in book/det_rpn.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.anchors import AnchorGenerator
from ..ops.boxes import BoxCoder, clip_boxes_to_image, nms, remove_small_boxes
from ..ops.matching import BalancedPositiveNegativeSampler, label_anchors

__all__ = ["RPNHead", "RegionProposalNetwork"]


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then objectness ``[B, A, h, w]`` and deltas ``[B, 4A, h, w]``."""

    def __init__(self, in_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):  # torchvision's init
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.constant_(layer.bias, 0)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Objectness ``[B, A, h, w]`` and box deltas ``[B, 4A, h, w]`` at every feature cell."""
        t = F.relu(self.conv(features))                 # (B, C, h, w)
        return self.cls_logits(t), self.bbox_pred(t)    # (B, A, h, w), (B, 4A, h, w)


def _flatten(objectness: Tensor, deltas: Tensor) -> tuple[Tensor, Tensor]:
    """To torchvision's anchor order (cell-major, then anchor): [B, h*w*A] and [B, h*w*A, 4]."""
    b, a, h, w = objectness.shape
    objectness = objectness.permute(0, 2, 3, 1).reshape(b, -1)                    # (B, h*w*A)
    deltas = deltas.view(b, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)  # (B, h*w*A, 4)
    return objectness, deltas


class RegionProposalNetwork(nn.Module):
    """Anchors + objectness + deltas -> proposals (and, in training, the two RPN losses).

    Args:
        anchor_generator: an ``AnchorGenerator`` for one feature map.
        head: an ``RPNHead`` with as many anchors per location as the generator.
        fg_iou_thresh: IoU at and above which an anchor is positive (0.7).
        bg_iou_thresh: IoU below which an anchor is negative (0.3).
        batch_size_per_image: anchors sampled per image (256).
        positive_fraction: largest share of positives in the sample (0.5).
        pre_nms_top_n: proposals kept before NMS, a dict {"training": n, "testing": n}.
        post_nms_top_n: proposals kept after NMS, a dict {"training": n, "testing": n}.
        nms_thresh: IoU threshold among proposals (0.7).
        min_size: smallest proposal side.
    """

    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead,
                 fg_iou_thresh: float = 0.7, bg_iou_thresh: float = 0.3,
                 batch_size_per_image: int = 256, positive_fraction: float = 0.5,
                 pre_nms_top_n: dict[str, int] | None = None,
                 post_nms_top_n: dict[str, int] | None = None,
                 nms_thresh: float = 0.7, min_size: float = 1e-3):
        super().__init__()
        self.anchor_generator, self.head = anchor_generator, head
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.fg_iou_thresh, self.bg_iou_thresh = fg_iou_thresh, bg_iou_thresh
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self._pre = pre_nms_top_n or {"training": 1000, "testing": 500}
        self._post = post_nms_top_n or {"training": 300, "testing": 100}
        self.nms_thresh, self.min_size = nms_thresh, min_size

    def _mode(self) -> str:
        return "training" if self.training else "testing"

    def assign_targets_to_anchors(self, anchors: list[Tensor], targets: list[dict[str, Tensor]]):
        """Per image: labels [A] (1 object, 0 background, -1 ignored) and matched gt boxes [A, 4].

        Same outputs as torchvision's method of that name (labels as float, boxes of
        unmatched anchors set to the first gt box, or zeros without gt).
        """
        labels, matched_boxes = [], []
        for a, t in zip(anchors, targets):
            gt = t["boxes"]
            lab = label_anchors(a, gt, self.fg_iou_thresh, self.bg_iou_thresh, True)
            labels.append(lab.labels.to(a.dtype))
            if len(gt) == 0:
                matched_boxes.append(torch.zeros_like(a))
            else:
                matched_boxes.append(gt[lab.matched_gt.clamp(min=0)])  # (A, 4)
        return labels, matched_boxes

    def filter_proposals(self, proposals: Tensor, objectness: Tensor,
                         image_size: tuple[int, int]) -> tuple[list[Tensor], list[Tensor]]:
        """Per image: top-k by objectness, clip, drop small, NMS, keep the best post-NMS."""
        objectness = objectness.detach()                  # (B, N) proposals are not trained through
        pre, post = self._pre[self._mode()], self._post[self._mode()]
        top = objectness.topk(min(pre, objectness.shape[1]), dim=1).indices  # (B, k)
        scores = objectness.gather(1, top)
        boxes = proposals.gather(1, top[..., None].expand(-1, -1, 4))          # (B, k, 4)
        boxes = clip_boxes_to_image(boxes, image_size)
        out_boxes, out_scores = [], []
        for b, s in zip(boxes, scores.sigmoid()):         # a loop over the images of the batch
            keep = remove_small_boxes(b, self.min_size)
            b, s = b[keep], s[keep]
            keep = nms(b, s, self.nms_thresh)[:post]
            out_boxes.append(b[keep])
            out_scores.append(s[keep])
        return out_boxes, out_scores

    def compute_loss(self, objectness: Tensor, deltas: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
        """BCE on the sampled anchors; smooth-L1 (beta 1/9) on the sampled positives."""
        pos, neg = self.sampler(labels)
        pos = torch.cat(pos).bool()                       # (B * N,)
        sampled = pos | torch.cat(neg).bool()
        labels, targets = torch.cat(labels), torch.cat(regression_targets)   # (B*N,), (B*N, 4)
        box_loss = F.smooth_l1_loss(deltas.reshape(-1, 4)[pos], targets[pos], beta=1 / 9,
                                    reduction="sum") / sampled.sum().clamp(min=1)
        obj_loss = F.binary_cross_entropy_with_logits(objectness.reshape(-1)[sampled],
                                                      labels[sampled])
        return obj_loss, box_loss

    def forward(self, images: Tensor, features: Tensor,
                targets: list[dict[str, Tensor]] | None = None):
        """Proposals, and in training the two RPN losses.

        Args:
            images: [B, 3, H, W].
            features: [B, C, h, w].
            targets: per image {"boxes", "labels"} (training only).

        Returns:
            (proposals, losses): per image Tensor[K, 4] xyxy proposals; a dict with
            ``loss_objectness`` and ``loss_rpn_box_reg`` (empty in eval mode).
        """
        objectness, deltas = _flatten(*self.head(features))    # (B, N), (B, N, 4)
        anchors = self.anchor_generator(images, [features])    # B x (N, 4)
        b, n = objectness.shape
        proposals = self.box_coder.decode(deltas.detach().reshape(-1, 4), torch.cat(anchors))
        proposals = proposals.view(b, n, 4)
        boxes, _ = self.filter_proposals(proposals, objectness, tuple(images.shape[-2:]))
        losses = {}
        if self.training:
            labels, matched = self.assign_targets_to_anchors(anchors, targets)
            regression_targets = [self.box_coder.encode(m, a) for m, a in zip(matched, anchors)]
            obj, box = self.compute_loss(objectness, deltas, labels, regression_targets)
            losses = {"loss_objectness": obj, "loss_rpn_box_reg": box}
        return boxes, losses
