"""A small CNN classifier with global average pooling and one linear layer.

That head is exactly the form CAM needs (Zhou et al., 2016): the class score is a weighted
sum of spatially averaged feature maps, so the same weights applied *before* averaging give
a class activation map. The interpretability chapters explain this network; the shapes
scenes' classification view trains it.
"""

from __future__ import annotations

from torch import Tensor, nn


class Standardize(nn.Module):
    """Standardize each image per channel: subtract its mean, divide by its std.

    Backgrounds and object colours are random in the shapes scenes; removing each image's
    overall colour and contrast leaves the network only shape to learn from, and
    (measured) turns a loss that sits at ln 3 for a thousand steps into one that falls
    within a hundred.
    """

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean((2, 3), keepdim=True)          # (B, 3, 1, 1)
        std = x.std((2, 3), keepdim=True)            # (B, 3, 1, 1)
        return (x - mean) / (std + 1e-3)


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


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
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be a [B, 3, H, W] image batch, got shape {tuple(x.shape)}")
        f = self.features(x)                 # (B, K, h, w)
        return self.fc(self.pool(f).flatten(1))  # (B, C)
