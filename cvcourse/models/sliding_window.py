"""Sliding-window segmentation, and why a fully convolutional network replaces it.

The earliest way to label every pixel: cut a patch around the pixel, run a CNN on the patch,
classify the centre pixel, repeat for every pixel. Neighbouring patches share almost all
their pixels, so the network recomputes almost the same features over and over.

``PatchClassifier`` is that CNN: unpadded convolutions, then fully connected layers on the
flattened final map. ``sliding_window`` runs it patch by patch (slow on purpose). Because
a fully connected layer on a k x k map *is* a k x k convolution, ``to_fully_convolutional``
reshapes the FC weights into conv kernels; the resulting network slides over the whole
(padded) image in one pass and gives the same per-pixel scores, computing each shared
feature once. ``multiply_adds`` counts both costs from the layer shapes.

Taught in book/seg_sliding_window.ipynb.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .checks import check_images

__all__ = ["PatchClassifier", "FullyConvolutionalPatchClassifier", "extract_patches"]

PADDING_MODES = ("zeros", "reflect", "replicate")


def _pad_for_patches(images: Tensor, patch_size: int, padding_mode: str) -> Tensor:
    """Pad every side by patch_size // 2 so that every pixel is the centre of a full patch."""
    r = patch_size // 2
    mode = "constant" if padding_mode == "zeros" else padding_mode
    return F.pad(images, (r, r, r, r), mode=mode)  # (B, 3, H+P-1, W+P-1)


def extract_patches(images: Tensor, patch_size: int, padding_mode: str = "replicate") -> Tensor:
    """Every patch of an image batch, one centred on each pixel.

    Args:
        images: ``[B, 3, H, W]``.
        patch_size: odd side P of the square patch.
        padding_mode: how the border is extended: "zeros", "reflect" or "replicate".

    Returns:
        ``[B*H*W, 3, P, P]``; patch ``b*H*W + y*W + x`` is centred on pixel ``(y, x)`` of
        image ``b``. Memory grows as ``P*P`` times the image: unfold a strip at a time.
    """
    _check_images(images)
    b, c, h, w = images.shape
    padded = _pad_for_patches(images, patch_size, padding_mode)
    cols = F.unfold(padded, patch_size)  # (B, 3*P*P, H*W): one column per pixel
    return cols.transpose(1, 2).reshape(b * h * w, c, patch_size, patch_size)


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"images must be a [B, 3, H, W] batch, got {got}")
    check_images(x, "images")  # dtype, finite, range


def stack_multiply_adds(layers: list[tuple[int, int, int]], h: int, w: int) -> int:
    """Multiply-adds of a stack of unpadded stride-1 convs (cin, cout, k) on an h x w input."""
    total = 0
    for cin, cout, k in layers:
        h, w = h - k + 1, w - k + 1  # unpadded conv shrinks by k-1
        total += h * w * cout * cin * k * k  # each output value: cin*k*k multiply-adds
    return total


class PatchClassifier(nn.Module):
    """A small CNN that classifies the centre pixel of a ``P x P`` patch.

    Layers: conv5 (3→w), conv5 (w→2w), conv3 (2w→2w), all unpadded with ReLU, leaving a
    ``m x m`` map with ``m = P - 10``; then FC (2w·m·m → hidden), ReLU, FC (hidden → C).

    Args:
        num_classes: C (default 4: background, circle, square, triangle).
        patch_size: odd P >= 11; the receptive field of the centre pixel's label.
        width: w, channels of the first conv.
        hidden: units of the hidden fully connected layer.
        padding_mode: how ``sliding_window`` extends the image border ("zeros", "reflect",
            "replicate").

    ``forward(patches [N, 3, P, P]) -> [N, C]`` scores of each patch's centre pixel.
    ``sliding_window(images [B, 3, H, W]) -> [B, C, H, W]`` scores of every pixel.
    """

    total_stride = 1  # one label per input pixel: any H, W works

    def __init__(self, num_classes: int = 4, patch_size: int = 17, width: int = 16,
                 hidden: int = 64, padding_mode: str = "replicate"):
        super().__init__()
        if not isinstance(patch_size, int) or patch_size < 11 or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be an odd int >= 11 (a centre pixel), got {patch_size!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        self.num_classes, self.patch_size, self.padding_mode = num_classes, patch_size, padding_mode
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 5), nn.ReLU(inplace=True),           # (N, w, P-4, P-4)
            nn.Conv2d(w, 2 * w, 5), nn.ReLU(inplace=True),       # (N, 2w, P-8, P-8)
            nn.Conv2d(2 * w, 2 * w, 3), nn.ReLU(inplace=True),   # (N, 2w, m, m), m = P-10
        )
        self.final_size = patch_size - 10
        self.classifier = nn.Sequential(
            nn.Flatten(),                                         # (N, 2w*m*m)
            nn.Linear(2 * w * self.final_size ** 2, hidden), nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),                       # (N, C)
        )

    def forward(self, patches: Tensor) -> Tensor:
        """Class logits ``[N, C]`` of patches ``[N, 3, P, P]`` (the centre pixel's class)."""
        p = self.patch_size
        if patches.dim() != 4 or tuple(patches.shape[1:]) != (3, p, p):
            raise ValueError(f"patches must be [N, 3, {p}, {p}], got {tuple(patches.shape)}")
        return self.classifier(self.features(patches))  # (N, C)

    def sliding_window(self, images: Tensor, batch_size: int = 1024) -> Tensor:
        """Label every pixel by classifying the patch around it, a batch of patches at a time.

        Args:
            images: ``[B, 3, H, W]``.
            batch_size: about how many patches go through the network at once.

        Returns:
            ``[B, C, H, W]`` class scores.
        """
        _check_images(images)
        b, _, h, w = images.shape
        p = self.patch_size
        padded = _pad_for_patches(images, p, self.padding_mode)  # (B, 3, H+P-1, W+P-1)
        rows = max(1, batch_size // w)  # image rows per batch of patches
        scores = []
        for y0 in range(0, h, rows):  # strips of rows: patches of all pixels in the strip
            strip = padded[:, :, y0 : min(y0 + rows, h) + p - 1]  # (B, 3, rows+P-1, W+P-1)
            cols = F.unfold(strip, p)  # (B, 3*P*P, rows*W)
            patches = cols.transpose(1, 2).reshape(-1, 3, p, p)  # (B*rows*W, 3, P, P)
            scores.append(self(patches).view(b, -1, w, self.num_classes))  # (B, rows, W, C)
        return torch.cat(scores, dim=1).permute(0, 3, 1, 2)  # (B, C, H, W)

    def _layer_specs(self) -> list[tuple[int, int, int]]:
        """(cin, cout, kernel) of every layer, FC layers written as the convs they equal."""
        convs = [(m.in_channels, m.out_channels, m.kernel_size[0])
                 for m in self.features if isinstance(m, nn.Conv2d)]
        fc1, fc2 = (m for m in self.classifier if isinstance(m, nn.Linear))
        c_last = convs[-1][1]
        return convs + [(c_last, fc1.out_features, self.final_size), (fc1.out_features, fc2.out_features, 1)]

    def multiply_adds(self, height: int, width: int) -> dict[str, int]:
        """Multiply-adds to label an ``height x width`` image, counted from the layer shapes.

        Both ways run the same layers; only the input differs: one ``P x P`` patch per pixel,
        or the padded image ``(H+P-1) x (W+P-1)`` once.

        Returns:
            ``{"per_patch", "sliding_window", "fully_convolutional"}`` multiply-add counts.
        """
        layers, p = self._layer_specs(), self.patch_size
        per_patch = stack_multiply_adds(layers, p, p)
        return {
            "per_patch": per_patch,
            "sliding_window": height * width * per_patch,
            "fully_convolutional": stack_multiply_adds(layers, height + p - 1, width + p - 1),
        }

    def to_fully_convolutional(self) -> FullyConvolutionalPatchClassifier:
        """An equivalent network whose FC layers are convolutions (weights copied).

        The first FC layer sees the flattened ``[2w, m, m]`` map, so its weight
        ``[hidden, 2w*m*m]`` reshapes to a ``[hidden, 2w, m, m]`` kernel; the second FC is a
        1 x 1 conv. One pass over the padded image then gives ``sliding_window``'s scores.
        """
        fc1, fc2 = (m for m in self.classifier if isinstance(m, nn.Linear))
        c_last, m = self._layer_specs()[-3][1], self.final_size
        conv1 = nn.Conv2d(c_last, fc1.out_features, m)
        conv2 = nn.Conv2d(fc1.out_features, fc2.out_features, 1)
        with torch.no_grad():
            conv1.weight.copy_(fc1.weight.view(fc1.out_features, c_last, m, m))
            conv1.bias.copy_(fc1.bias)
            conv2.weight.copy_(fc2.weight.view(fc2.out_features, fc1.out_features, 1, 1))
            conv2.bias.copy_(fc2.bias)
        head = nn.Sequential(conv1, nn.ReLU(inplace=True), conv2)
        net = FullyConvolutionalPatchClassifier(copy.deepcopy(self.features), head,
                                                self.patch_size, self.padding_mode)
        return net.to(device=fc1.weight.device, dtype=fc1.weight.dtype)


class FullyConvolutionalPatchClassifier(nn.Module):
    """``PatchClassifier`` with its FC layers as convolutions: whole image in, scores out.

    Made by ``PatchClassifier.to_fully_convolutional()``. ``forward(images [B, 3, H, W])``
    pads the border by ``P // 2`` (as ``sliding_window`` does) and returns ``[B, C, H, W]``.
    Trained densely (cross-entropy on every pixel) it learns exactly what the patch
    classifier learns from every patch; ``to_patch_classifier`` maps the weights back.
    """

    total_stride = 1

    def __init__(self, features: nn.Sequential, head: nn.Sequential, patch_size: int,
                 padding_mode: str = "replicate"):
        super().__init__()
        self.features, self.head = features, head
        self.patch_size, self.padding_mode = patch_size, padding_mode

    def forward(self, images: Tensor) -> Tensor:
        """Class scores ``[B, C, H, W]`` of every pixel of images ``[B, 3, H, W]``, in one pass."""
        _check_images(images)
        padded = _pad_for_patches(images, self.patch_size, self.padding_mode)  # (B, 3, H+P-1, W+P-1)
        return self.head(self.features(padded))  # (B, C, H, W)

    def to_patch_classifier(self) -> PatchClassifier:
        """The inverse reshape: conv kernels back into FC weights (weights copied)."""
        conv1, conv2 = (m for m in self.head if isinstance(m, nn.Conv2d))
        width = self.features[0].out_channels
        net = PatchClassifier(conv2.out_channels, self.patch_size, width, conv1.out_channels,
                              self.padding_mode)
        fc1, fc2 = (m for m in net.classifier if isinstance(m, nn.Linear))
        with torch.no_grad():
            fc1.weight.copy_(conv1.weight.flatten(1))
            fc1.bias.copy_(conv1.bias)
            fc2.weight.copy_(conv2.weight.flatten(1))
            fc2.bias.copy_(conv2.bias)
        net.features = copy.deepcopy(self.features)
        return net.to(device=conv1.weight.device, dtype=conv1.weight.dtype)
