"""Detection and segmentation operators, written in plain PyTorch and checked against
torchvision / torch. Signatures mirror torchvision's, so either can be swapped in."""

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
    remove_small_boxes,
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
    "clip_boxes_to_image", "generalized_box_iou", "nms", "remove_small_boxes",
    # upsampling
    "bed_of_nails", "bilinear_upsample_weight", "conv2d_matrix", "conv_transpose2d",
    "conv_transpose2d_matrix", "max_pool2d_with_indices", "max_unpool2d", "nearest_upsample",
]
