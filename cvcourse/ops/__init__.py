"""Detection and segmentation operators, written in plain PyTorch.

Each is checked against torchvision / torch. Signatures mirror torchvision's, so either can
be swapped in.
"""

from .anchors import AnchorGenerator, anchors_for, cell_anchors
from .boxes import (
    BOX_FORMATS,
    BoxCoder,
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    generalized_box_iou,
    nms,
    paired_iou,
    remove_small_boxes,
)
from .focal import sigmoid_focal_loss
from .hungarian import HungarianMatcher
from .matching import AnchorLabels, BalancedPositiveNegativeSampler, Matcher, label_anchors
from .roi import (
    AlignSamples,
    RoIAlign,
    RoIPool,
    SnappingError,
    bilinear_sample_points,
    roi_align,
    roi_pool,
    roi_pool_bins,
    roi_pool_snapping_error,
)
from .upsample import (
    bed_of_nails,
    bilinear_upsample_weight,
    conv2d_matrix,
    conv_transpose2d,
    conv_transpose2d_matrix,
    max_pool2d_with_indices,
    max_unpool2d,
    nearest_upsample,
)

__all__ = [
    # boxes
    "BOX_FORMATS", "BoxCoder", "batched_nms", "box_area", "box_convert", "box_iou",
    "clip_boxes_to_image", "generalized_box_iou", "nms", "paired_iou", "remove_small_boxes",
    # anchors and matching
    "AnchorGenerator", "AnchorLabels", "BalancedPositiveNegativeSampler", "Matcher", "anchors_for",
    "cell_anchors", "label_anchors", "HungarianMatcher",
    # losses
    "sigmoid_focal_loss",
    # regions of interest
    "AlignSamples", "RoIAlign", "RoIPool", "SnappingError", "bilinear_sample_points", "roi_align",
    "roi_pool", "roi_pool_bins", "roi_pool_snapping_error",
    # upsampling
    "bed_of_nails", "bilinear_upsample_weight", "conv2d_matrix", "conv_transpose2d",
    "conv_transpose2d_matrix", "max_pool2d_with_indices", "max_unpool2d", "nearest_upsample",
]
