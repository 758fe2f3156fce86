"""Models of the course, one module per architecture."""

from .classifier import ShapeClassifier
from .detr import DETR, DETRConfig
from .faster_rcnn import FasterRCNN
from .fcn import FCN, FCN8s, pad_to_multiple
from .localizer import SingleObjectLocalizer
from .mask_rcnn import MaskRCNN
from .rcnn import RCNN
from .retinanet import RetinaNet
from .sliding_window import FullyConvolutionalPatchClassifier, PatchClassifier, extract_patches
from .ssd import SSD
from .unet import UNet
from .vit import VisionTransformer
from .yolo import YOLO

__all__ = [
    "ShapeClassifier",
    "SingleObjectLocalizer",
    "RCNN",
    "FasterRCNN",
    "YOLO",
    "SSD",
    "RetinaNet",
    "PatchClassifier",
    "FullyConvolutionalPatchClassifier",
    "extract_patches",
    "FCN",
    "FCN8s",
    "UNet",
    "pad_to_multiple",
    "VisionTransformer",
    "DETR",
    "DETRConfig",
    "MaskRCNN",
]
