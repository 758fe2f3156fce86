"""A fully convolutional network (FCN) for semantic segmentation.

Downsample for context, upsample for resolution: a small conv backbone shrinks the image by
``output_stride`` (8 by default) with max pooling, a 1 x 1 convolution scores every class at
every coarse location, and ONE upsampling step (bilinear, or a learnable transposed conv
initialised to bilinear, as in Long et al.'s FCN-32s) brings the scores back to H x W.
The single coarse-to-fine jump is why FCN boundaries are blurry. ``FCN8s`` is the paper's
own fix: it adds class scores from two earlier, finer stages (zero-initialised 1 x 1 convs)
and fuses them in x2 steps; the U-Net goes further and fuses features, not scores.

``pad_to_multiple`` is shared with the U-Net: inputs whose size is not a multiple of the
network's total stride are padded (and the output cropped back) or rejected.

Taught in book/seg_fcn.ipynb.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.upsample import bilinear_padding, bilinear_upsample_weight
from . import checks
from .backbone import conv_bn_relu  # 3x3 conv (keeps H x W) → BatchNorm → ReLU

__all__ = ["FCN", "FCN8s", "pad_to_multiple", "PAD_MODES"]

PAD_MODES = ("pad", "error")


def check_images(x: Tensor, name: str = "x") -> None:
    """Raise unless `x` is a [B, 3, H, W] float batch in [0, 1] (see `models.checks`)."""
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a [B, 3, H, W] image batch, got {got}")
    checks.check_images(x, name)  # dtype, finite, range


def check_pad_mode(pad_mode: str) -> str:
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    return pad_mode


def pad_to_multiple(x: Tensor, stride: int, pad_mode: str = "pad") -> tuple[Tensor, tuple[int, int]]:
    """Make H and W multiples of ``stride`` so that downsampling and upsampling line up.

    Args:
        x: ``[B, C, H, W]``.
        stride: the network's total stride (H and W must be multiples of it).
        pad_mode: "pad" extends the bottom and right borders by reflection (replication
            when the image is too small to reflect); "error" raises instead.

    Returns:
        ``(padded [B, C, H', W'], (H, W))``; crop the network's output back with
        ``out[..., :H, :W]``.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % stride, (-w) % stride
    if pad_h == 0 and pad_w == 0:
        return x, (h, w)
    if check_pad_mode(pad_mode) == "error":
        raise ValueError(
            f"input size {h}x{w} is not divisible by the total stride {stride}: inputs must be "
            f"divisible by {stride} (or pass pad_mode='pad' to pad and crop back)"
        )
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode), (h, w)


class FCN(nn.Module):
    """Backbone (stride ``output_stride``) → 1 x 1 class scores → one upsampling step.

    Args:
        num_classes: C (default 4: background, circle, square, triangle).
        width: channels of the full-resolution stage; each pooling doubles them, up to 4·width.
        output_stride: total downsampling, a power of two from 2 to 32 (8 by default).
        upsample: "bilinear" (fixed) or "transposed" (learnable ``ConvTranspose2d``,
            kernel 2s, stride s, initialised to bilinear interpolation).
        pad_mode: "pad" or "error" for inputs not divisible by ``output_stride``.

    ``forward(x [B, 3, H, W]) -> [B, C, H, W]`` scores; ``coarse_scores(x)`` gives the
    ``[B, C, H/s, W/s]`` map before upsampling.
    """

    def __init__(self, num_classes: int = 4, width: int = 32, output_stride: int = 8,
                 upsample: str = "bilinear", pad_mode: str = "pad"):
        super().__init__()
        if output_stride not in (2, 4, 8, 16, 32):
            raise ValueError(f"output_stride must be a power of two in [2, 32], got {output_stride!r}")
        if upsample not in ("bilinear", "transposed"):
            raise ValueError(f"upsample must be 'bilinear' or 'transposed', got {upsample!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.total_stride, self.pad_mode = output_stride, check_pad_mode(pad_mode)
        layers, c = [conv_bn_relu(3, width), conv_bn_relu(width, width)], width  # (B, w, H, W)
        for _ in range(output_stride.bit_length() - 1):  # one pooling stage per factor 2
            c_next = min(2 * c, 4 * width)
            layers += [nn.MaxPool2d(2), conv_bn_relu(c, c_next), conv_bn_relu(c_next, c_next)]
            c = c_next  # after stage i: (B, c, H/2^(i+1), W/2^(i+1))
        self.backbone = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(c, num_classes, 1)  # (B, C, H/s, W/s)
        # x s in one step: bilinear, or ConvTranspose2d (kernel 2s, stride s) initialised to it
        self.upsample = _upsampling(num_classes, output_stride, upsample)

    def coarse_scores(self, x: Tensor) -> Tensor:
        """Class scores at 1/output_stride resolution, ``[B, C, ceil(H/s), ceil(W/s)]``."""
        check_images(x)
        x, _ = pad_to_multiple(x, self.total_stride, self.pad_mode)
        return self.classifier(self.backbone(x))

    def forward(self, x: Tensor) -> Tensor:
        """Class scores ``[B, C, H, W]`` of images ``[B, 3, H, W]`` (padded, then cropped back)."""
        check_images(x)
        x, (h, w) = pad_to_multiple(x, self.total_stride, self.pad_mode)  # (B, 3, H', W')
        coarse = self.classifier(self.backbone(x))  # (B, C, H'/s, W'/s)
        return self.upsample(coarse)[..., :h, :w]  # (B, C, H, W)


class FCN8s(FCN):
    """The FCN paper's skip architecture: the coarse FCN plus class scores from two earlier stages.

    Long et al. ("combining what and where") score the last stage (FCN-32s), then also score
    pool4 (stride 16) with a 1 x 1 convolution, upsample the coarse scores x2 and add
    (FCN-16s), then do the same with pool3 (stride 8) (FCN-8s) and upsample the sum to the
    image. The skip score layers start at zero, so before training the net predicts exactly
    what its coarse path predicts. Here the coarse stride is ``output_stride`` (8 for the
    course's ``fcn``), so the two skips come from the stages at strides s/2 and s/4 (the last
    features of each: what the stage hands on to its pooling) and the fused prediction, at
    stride s/4, is upsampled by s/4.

    Args:
        num_classes: C.
        width: channels of the full-resolution stage (as in `FCN`).
        output_stride: stride of the coarse scores: 8, 16 or 32.
        upsample: "bilinear" (fixed) or "transposed" (learnable, initialised to bilinear),
            used for every upsampling step (the x2 fusions and the last x s/4).
        pad_mode: "pad" or "error" for inputs not divisible by ``output_stride``.

    ``forward(x [B, 3, H, W]) -> [B, C, H, W]``; ``coarse_scores(x)`` is the FCN-32s-style
    ``[B, C, H/s, W/s]`` map of the last stage alone.
    """

    def __init__(self, num_classes: int = 4, width: int = 32, output_stride: int = 8,
                 upsample: str = "bilinear", pad_mode: str = "pad"):
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32 for two skip stages, got {output_stride!r}")
        super().__init__(num_classes, width, output_stride, upsample, pad_mode)
        pools = [i for i, m in enumerate(self.backbone) if isinstance(m, nn.MaxPool2d)]
        # The backbone runs in three pieces: up to the stage at stride s/4, to s/2, to s.
        self.cuts = (pools[-2], pools[-1])  # backbone[:cuts[0]] ends at stride s/4
        c3 = self.backbone[self.cuts[0] - 1][0].out_channels  # channels at stride s/4 ("pool3")
        c4 = self.backbone[self.cuts[1] - 1][0].out_channels  # channels at stride s/2 ("pool4")
        self.score_pool4 = nn.Conv2d(c4, num_classes, 1)  # (B, C, H/(s/2), W/(s/2))
        self.score_pool3 = nn.Conv2d(c3, num_classes, 1)  # (B, C, H/(s/4), W/(s/4))
        for score in (self.score_pool4, self.score_pool3):  # the paper's zero init
            nn.init.zeros_(score.weight)
            nn.init.zeros_(score.bias)
        self.upscore2 = _upsampling(num_classes, 2, upsample)        # coarse → stride s/2
        self.upscore_pool4 = _upsampling(num_classes, 2, upsample)   # fused → stride s/4
        self.upsample = _upsampling(num_classes, output_stride // 4, upsample)  # → H x W

    def _features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        a, b = self.cuts
        pool3 = self.backbone[:a](x)       # (B, c3, H/(s/4), W/(s/4))
        pool4 = self.backbone[a:b](pool3)  # (B, c4, H/(s/2), W/(s/2))
        last = self.backbone[b:](pool4)    # (B, c, H/s, W/s)
        return pool3, pool4, last

    def forward(self, x: Tensor) -> Tensor:
        """Class scores ``[B, C, H, W]`` of images ``[B, 3, H, W]`` (padded, then cropped back)."""
        check_images(x)
        x, (h, w) = pad_to_multiple(x, self.total_stride, self.pad_mode)  # (B, 3, H', W')
        pool3, pool4, last = self._features(x)
        fuse4 = self.upscore2(self.classifier(last)) + self.score_pool4(pool4)     # (B, C, H'/(s/2), W'/(s/2))
        fuse3 = self.upscore_pool4(fuse4) + self.score_pool3(pool3)                # (B, C, H'/(s/4), W'/(s/4))
        return self.upsample(fuse3)[..., :h, :w]  # (B, C, H, W)


def _upsampling(channels: int, factor: int, mode: str) -> nn.Module:
    """Upsampling by `factor`: fixed bilinear, or a ``ConvTranspose2d`` initialised to bilinear."""
    if mode == "bilinear":
        return nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=False)
    up = nn.ConvTranspose2d(channels, channels, kernel_size=2 * factor, stride=factor,
                            padding=bilinear_padding(factor), bias=False)
    up.weight.data.copy_(bilinear_upsample_weight(channels, factor))
    return up
