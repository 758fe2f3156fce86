"""torchvision's ``FasterRCNN`` class around our backbone: the peer our Faster R-CNN is measured against.

Same backbone (`conv_backbone`), anchors, RoI Align 7x7 (sampling ratio 2), box head width,
sampling sizes and thresholds as ``FasterRCNN`` of ``faster_rcnn.py``, so the comparison
measures the implementations.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from .backbone import conv_backbone

__all__ = ["torchvision_faster_rcnn"]


def torchvision_faster_rcnn(num_classes: int = 3, width: int = 24, stride: int = 8,
                            anchor_sizes: Sequence[float] = (16, 32, 64),
                            aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
                            representation_size: int = 128, size: int = 128) -> nn.Module:
    """Torchvision's ``FasterRCNN`` class around *our* backbone and the same settings as ours.

    torchvision normalises and resizes inside the model; mean 0 / std 1 and
    min = max = the image size make both no-ops (our backbone standardises each image itself).

    Args:
        num_classes (int): object classes, background excluded.
        width (int): backbone width (feature channels ``4 * width``).
        stride (int): backbone stride, 8 or 16.
        anchor_sizes (Sequence[float]): anchor sizes in pixels.
        aspect_ratios (Sequence[float]): anchor aspect ratios (height / width).
        representation_size (int): width of the two-layer box head.
        size (int): the (square) image size the model is given.

    Returns:
        nn.Module: a ``torchvision.models.detection.FasterRCNN``.
    """
    from torchvision.models.detection import FasterRCNN as TVFasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchors
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
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
