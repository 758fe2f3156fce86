"""A small CNN classifier with global average pooling and one linear layer.

That head is exactly the form CAM needs (Zhou et al., 2016): the class score is a weighted
sum of spatially averaged feature maps, so the same weights applied *before* averaging give
a class activation map. The interpretability chapters explain this network; the shapes
scenes' classification view trains it.
"""

from __future__ import annotations

from torch import Tensor, nn

from .backbone import Standardize, conv_bn_relu
from .checks import check_images


class ShapeClassifier(nn.Module):
    """per-image standardization → conv stages → global average pooling → linear.

    Args:
        num_classes: outputs (3: circle, square, triangle — background is not a class here).
        width: channels of the first stage; stages use width, 2·width, 4·width.

    Input ``[B, 3, H, W]`` (H, W multiples of 4); output logits ``[B, num_classes]``.
    ``features`` maps to the last convolutional feature map ``[B, 4·width, H/4, W/4]``.
    """

    def __init__(self, num_classes: int = 3, width: int = 16):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        w = width
        self.features = nn.Sequential(
            Standardize(),
            conv_bn_relu(3, w), nn.MaxPool2d(2),                                # (B, w, H/2, W/2)
            conv_bn_relu(w, 2 * w), conv_bn_relu(2 * w, 2 * w), nn.MaxPool2d(2),  # (B, 2w, H/4, W/4)
            conv_bn_relu(2 * w, 4 * w), conv_bn_relu(4 * w, 4 * w),           # (B, 4w, H/4, W/4)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``[B, num_classes]`` of images ``[B, 3, H, W]``."""
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a [B, 3, H, W] image batch, got shape {got}")
        check_images(x, "x")  # dtype, finite, range
        f = self.features(x)                 # (B, K, h, w)
        return self.fc(self.pool(f).flatten(1))  # (B, C)
