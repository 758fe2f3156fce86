"""What the first layer learns: its filters as images, and what its units respond to.

A first-layer filter is the only one that lives in pixel space: its weights ``[3, k, k]``
multiply an RGB patch directly, so it can be drawn as a small colour image. Deeper
filters combine feature channels, not colours, and have no such picture.

Taught in book/int_filters.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def filter_images(weight: Tensor) -> Tensor:
    """First-layer filters ``[K, 3, k, k]`` as RGB images ``[K, k, k, 3]`` in [0, 1].

    Each filter is scaled on its own, symmetrically: 0 → grey 0.5, its largest |weight|
    → 0 or 1. A pixel's colour is the colour the filter responds to most at that place
    (brighter than grey: a positive weight; darker: negative).
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise ValueError(f"weight must be first-layer filters [K, 3, k, k], got shape {tuple(weight.shape)}")
    w = weight.detach().float().cpu()
    scale = w.abs().amax((1, 2, 3), keepdim=True).clamp_min(1e-12)          # (K, 1, 1, 1)
    return (0.5 + 0.5 * w / scale).permute(0, 2, 3, 1)                    # (K, k, k, 3)


def relative_change(trained: nn.Module, initial: nn.Module) -> dict[str, float]:
    """``|w - w0| / |w0|`` for each weight tensor (dim >= 2: convolutions, linear layers)
    of two models with the same architecture, by parameter name."""
    init = dict(initial.named_parameters())
    out = {}
    for name, w in trained.named_parameters():
        if w.dim() >= 2:
            w0 = init[name].detach().to(w.device)
            out[name] = float((w.detach() - w0).norm() / w0.norm())
    return out


def boundary_band(masks: Tensor, width: int = 3) -> Tensor:
    """Pixels within a ``width × width`` window of an object boundary: ``[B, H, W]`` bool
    (the window holds both object and background pixels)."""
    if masks.dim() != 3 or masks.dtype != torch.bool:
        raise ValueError(f"masks must be [B, H, W] bool, got {masks.dtype} {tuple(masks.shape)}")
    m = masks[:, None].float()
    grown = F.max_pool2d(m, width, 1, width // 2)
    shrunk = -F.max_pool2d(-m, width, 1, width // 2)
    return (grown != shrunk)[:, 0]


def edge_selectivity(activations: Tensor, masks: Tensor, width: int = 3) -> Tensor:
    """Per channel: mean activation on object boundaries ÷ mean activation inside objects.

    Args:
        activations: ``[B, K, H, W]`` non-negative (after the ReLU), at the masks' resolution.
        masks: ``[B, H, W]`` bool object masks.

    Returns:
        ``[K]``: about 1 for a unit that responds to an object's surface as much as to its
        outline, well above 1 for an edge unit, below 1 for a region (colour) unit.
    """
    if activations.dim() != 4 or activations.shape[:1] + activations.shape[2:] != masks.shape:
        raise ValueError(f"activations must be [B, K, H, W] matching masks [B, H, W], got "
                         f"{tuple(activations.shape)} and {tuple(masks.shape)}")
    band = boundary_band(masks, width)
    inner = masks & ~band
    a = activations.float()
    on_band = (a * band[:, None]).sum((0, 2, 3)) / band.sum().clamp_min(1)
    inside = (a * inner[:, None]).sum((0, 2, 3)) / inner.sum().clamp_min(1)
    return on_band / inside.clamp_min(1e-12)
