"""U-Net (Ronneberger et al., 2015), small enough to train on a CPU in minutes.

Encoder (left side): double 3 x 3 conv, then 2 x 2 max pooling, ``depth`` times; features get
more semantic and coarser. Decoder (right side): a 2 x 2 transposed conv doubles the
resolution, the encoder's feature map of the same resolution is concatenated (the skip
connection), and a double conv mixes coarse semantics with fine spatial detail.

With ``skip=False`` the decoder sees only the upsampled coarse features (the same layers
with fewer input channels): the ablation behind "skip connections sharpen boundaries".

Taught in book/seg_unet.ipynb.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .backbone import conv_bn_relu  # 3x3 conv (keeps H x W) → BatchNorm → ReLU
from .fcn import check_images, check_pad_mode, pad_to_multiple

__all__ = ["UNet", "double_conv"]


def double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two 3 x 3 conv-BN-ReLU layers: ``[B, cin, H, W] -> [B, cout, H, W]``."""
    return nn.Sequential(conv_bn_relu(cin, cout), conv_bn_relu(cout, cout))


class UNet(nn.Module):
    """Encoder-decoder with skip connections; output at the input's resolution.

    Args:
        num_classes: C (default 4: background, circle, square, triangle).
        base: channels at full resolution; level i has ``base * 2**i`` channels.
        depth: number of poolings (total stride ``2**depth``); the bottleneck is at level depth.
        skip: concatenate encoder features into the decoder (True) or not (False).
        pad_mode: "pad" or "error" for inputs not divisible by ``2**depth``.

    ``forward(x [B, 3, H, W]) -> [B, C, H, W]`` class scores.
    """

    def __init__(self, num_classes: int = 4, base: int = 16, depth: int = 3, skip: bool = True,
                 pad_mode: str = "pad"):
        super().__init__()
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an int >= 1, got {depth!r}")
        if not isinstance(base, int) or base < 1:
            raise ValueError(f"base must be a positive int, got {base!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.skip, self.depth = bool(skip), depth
        self.total_stride, self.pad_mode = 2 ** depth, check_pad_mode(pad_mode)
        chans = [base * 2 ** i for i in range(depth + 1)]  # e.g. 16, 32, 64, 128
        # encoder level i works at H/2^i; the last level is the bottleneck
        self.encoder = nn.ModuleList(
            [double_conv(3, chans[0])] + [double_conv(chans[i], chans[i + 1]) for i in range(depth)]
        )
        self.pool = nn.MaxPool2d(2)
        # decoder step j goes from level i+1 up to level i, for i = depth-1 ... 0
        levels = list(reversed(range(depth)))
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in levels])
        self.decoder = nn.ModuleList(
            [double_conv(chans[i] * (2 if self.skip else 1), chans[i]) for i in levels]
        )
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores ``[B, C, H, W]`` of images ``[B, 3, H, W]`` (padded, then cropped back)."""
        check_images(x)
        x, (h, w) = pad_to_multiple(x, self.total_stride, self.pad_mode)  # (B, 3, H', W')
        features = []  # encoder outputs, finest first
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))  # (B, base*2^i, H'/2^i, W'/2^i)
            features.append(x)
        features.pop()  # the bottleneck is x itself, not a skip
        for up, block in zip(self.up, self.decoder):
            x = up(x)  # (B, c_i, H'/2^i, W'/2^i): resolution doubled
            if self.skip:
                x = torch.cat([features.pop(), x], dim=1)  # (B, 2*c_i, ...): fine + coarse
            x = block(x)  # (B, c_i, H'/2^i, W'/2^i)
        return self.head(x)[..., :h, :w]  # (B, C, H, W)
