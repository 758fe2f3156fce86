"""Faster R-CNN, our own: backbone -> Region Proposal Network -> RoI heads.

A two-stage detector. One backbone pass computes a shared feature map; the RPN (first
stage, ``rpn.py``) proposes regions from anchors; the RoI heads (second stage,
``roi_heads.py``) classify each proposal and refine its box from RoI-Aligned features.
Training sums four losses with torchvision's names: ``loss_objectness``,
``loss_rpn_box_reg`` (RPN) and ``loss_classifier``, ``loss_box_reg`` (heads).

The interface is torchvision's detection interface: ``model(images, targets)`` returns the
loss dict in training mode, ``model(images)`` a list of ``{"boxes", "scores", "labels"}``
in eval mode, so ``fit(model, data, lambda m, b: m(*b), collate_fn=detection_collate)``
trains it. Labels are 1..num_classes; 0 is background.

Taught in book/det_faster_rcnn.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..ops.anchors import AnchorGenerator
from .backbone import conv_backbone
from .checks import check_detection_inputs, targets_to
from .roi_heads import RoIHeads
from .rpn import RegionProposalNetwork, RPNHead

__all__ = ["FasterRCNN"]


class FasterRCNN(nn.Module):
    """Faster R-CNN with a small conv backbone, one feature map, RoI Align (or Pool) heads.

    Args:
        num_classes: object classes, background excluded (3 shapes).
        width: backbone width (feature channels 4 * width).
        stride: 8 or 16.
        anchor_sizes: the anchors' sizes at every feature cell, in pixels.
        aspect_ratios: the anchors' height / width ratios at every feature cell.
        pooler: ``"align"`` or ``"pool"``.
        representation_size: width of the box head's two FC layers.
        rpn_*: the RPN's settings (`RegionProposalNetwork`), as in torchvision.
        box_*: the RoI heads' settings (`RoIHeads`), as in torchvision.
    """

    def __init__(self, num_classes: int = 3, width: int = 24, stride: int = 8,
                 anchor_sizes: Sequence[float] = (16, 32, 64),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), pooler: str = "align",
                 representation_size: int = 128,
                 rpn_pre_nms_top_n_train: int = 1000, rpn_post_nms_top_n_train: int = 300,
                 rpn_pre_nms_top_n_test: int = 500, rpn_post_nms_top_n_test: int = 100,
                 rpn_nms_thresh: float = 0.7, rpn_batch_size_per_image: int = 256,
                 box_batch_size_per_image: int = 128, box_score_thresh: float = 0.05,
                 box_nms_thresh: float = 0.5, box_detections_per_img: int = 100):
        super().__init__()
        self.backbone = conv_backbone(width, stride)
        channels = 4 * width
        anchors = AnchorGenerator((tuple(anchor_sizes),), (tuple(aspect_ratios),))
        self.rpn = RegionProposalNetwork(
            anchors, RPNHead(channels, anchors.num_anchors_per_location()[0]),
            batch_size_per_image=rpn_batch_size_per_image,
            pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
            post_nms_top_n={"training": rpn_post_nms_top_n_train,
                            "testing": rpn_post_nms_top_n_test},
            nms_thresh=rpn_nms_thresh)
        self.roi_heads = RoIHeads(channels, stride, num_classes, pooler,
                                  representation_size=representation_size,
                                  batch_size_per_image=box_batch_size_per_image,
                                  score_thresh=box_score_thresh, nms_thresh=box_nms_thresh,
                                  detections_per_img=box_detections_per_img)

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        """The four losses (training) or the detections (eval).

        Args:
            images: [B, 3, H, W] in [0, 1].
            targets: per image {"boxes", "labels"} (training only).

        Returns:
            training: {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"};
            eval: per image {"boxes" [D, 4] xyxy, "scores" [D], "labels" [D] in 1..C}.
        """
        check_detection_inputs(images, targets, self.training, self.roi_heads.cls_score.out_features - 1)
        if len(images) == 0:
            return []                                                  # eval: no images, no detections
        if targets is not None:
            targets = targets_to(images, targets)
        features = self.backbone(images)                               # (B, 4w, H/s, W/s)
        proposals, rpn_losses = self.rpn(images, features, targets)    # B x (K, 4)
        detections, head_losses = self.roi_heads(features, proposals, tuple(images.shape[-2:]),
                                                 targets)
        return {**rpn_losses, **head_losses} if self.training else detections
