"""Models of the course, one module per architecture."""

from .classifier import ShapeClassifier
from .fcn import FCN, pad_to_multiple
from .sliding_window import FullyConvolutionalPatchClassifier, PatchClassifier, extract_patches
from .unet import UNet

__all__ = [
    "ShapeClassifier",
    "PatchClassifier",
    "FullyConvolutionalPatchClassifier",
    "extract_patches",
    "FCN",
    "UNet",
    "pad_to_multiple",
]
