"""The convolutional building blocks every model of the course shares.

``Standardize`` removes each image's colour and contrast, ``conv_bn_relu`` is the
3x3 conv → BatchNorm → ReLU unit, ``conv_backbone`` stacks them into the single-map
backbone of Faster R-CNN, YOLO, DETR and Mask R-CNN, and ``MultiScaleBackbone`` adds two
coarser maps for SSD and RetinaNet (as facebookresearch/detr's ``models/backbone.py`` and
torchvision's ``backbone_utils.py`` hold the backbones their detectors share).

Taught in book/ss_tradeoffs.ipynb.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Standardize", "conv_bn_relu", "conv_backbone", "MultiScaleBackbone"]


class Standardize(nn.Module):
    """Standardize each image per channel: subtract its mean, divide by its std.

    Backgrounds and object colours are random in the shapes scenes; removing each image's
    overall colour and contrast leaves the network only shape to learn from, and
    (measured) turns a loss that sits at ln 3 for a thousand steps into one that falls
    within a hundred.
    """

    def forward(self, x: Tensor) -> Tensor:
        """Standardize a batch.

        Args:
            x (Tensor[B, C, H, W]): images.

        Returns:
            Tensor[B, C, H, W]: each image and channel with mean 0 and std about 1.
        """
        mean = x.mean((2, 3), keepdim=True)          # (B, 3, 1, 1)
        std = x.std((2, 3), keepdim=True)            # (B, 3, 1, 1)
        return (x - mean) / (std + 1e-3)


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    """A 3x3 convolution (padding 1, keeps H x W, no bias) → BatchNorm → ReLU.

    Args:
        cin (int): input channels.
        cout (int): output channels.

    Returns:
        nn.Sequential: maps ``[B, cin, H, W]`` to ``[B, cout, H, W]``.
    """
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def conv_backbone(width: int = 32, stride: int = 8) -> nn.Sequential:
    """Standardize, then conv-BN-ReLU stages with 2x2 max pools.

    Args:
        width (int): channels of the first stage; the output has ``4 * width``.
        stride (int): 8 or 16, image pixels per output cell.

    Returns:
        nn.Sequential: maps ``[B, 3, H, W]`` to ``[B, 4 * width, H / stride, W / stride]``.
    """
    if stride not in (8, 16):
        raise ValueError(f"stride must be 8 or 16, got {stride}")
    w = width
    layers = [Standardize(),
              conv_bn_relu(3, w), nn.MaxPool2d(2),                                  # /2
              conv_bn_relu(w, 2 * w), conv_bn_relu(2 * w, 2 * w), nn.MaxPool2d(2),  # /4
              conv_bn_relu(2 * w, 4 * w), conv_bn_relu(4 * w, 4 * w), nn.MaxPool2d(2)]  # /8
    if stride == 16:
        layers += [conv_bn_relu(4 * w, 4 * w), nn.MaxPool2d(2)]                    # /16
    layers += [conv_bn_relu(4 * w, 4 * w)]
    return nn.Sequential(*layers)


class MultiScaleBackbone(nn.Module):
    """`conv_backbone` (stride 8) plus two pool + conv stages: maps at strides 8, 16, 32.

    Args:
        width (int): width of the `conv_backbone`; every map has ``4 * width`` channels.

    Input ``[N, 3, H, W]``; output a list of three ``[N, 4 * width, H / s, W / s]`` maps.
    """

    def __init__(self, width: int = 16):
        super().__init__()
        c = 4 * width
        self.body = conv_backbone(width, stride=8)                          # (N, c, H/8, W/8)
        self.down16 = nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(c, c))   # (N, c, H/16, W/16)
        self.down32 = nn.Sequential(nn.MaxPool2d(2), conv_bn_relu(c, c))   # (N, c, H/32, W/32)
        self.out_channels = c
        self.strides = (8, 16, 32)

    def forward(self, images: Tensor) -> list[Tensor]:
        """Compute the three feature maps.

        Args:
            images (Tensor[N, 3, H, W]): images in [0, 1].

        Returns:
            list[Tensor]: maps at strides 8, 16 and 32, each ``[N, 4 * width, H / s, W / s]``.
        """
        p8 = self.body(images)                                              # (N, c, H/8, W/8)
        p16 = self.down16(p8)                                               # (N, c, H/16, W/16)
        return [p8, p16, self.down32(p16)]
