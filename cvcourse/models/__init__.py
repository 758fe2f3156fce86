"""Models of the course, one module per architecture."""

from .classifier import ShapeClassifier
from .faster_rcnn import FasterRCNN
from .fcn import FCN, pad_to_multiple
from .localizer import SingleObjectLocalizer
from .rcnn import RCNN
from .sliding_window import FullyConvolutionalPatchClassifier, PatchClassifier, extract_patches
from .unet import UNet

__all__ = [
    "ShapeClassifier",
    "SingleObjectLocalizer",
    "RCNN",
    "FasterRCNN",
    "PatchClassifier",
    "FullyConvolutionalPatchClassifier",
    "extract_patches",
    "FCN",
    "UNet",
    "pad_to_multiple",
]
