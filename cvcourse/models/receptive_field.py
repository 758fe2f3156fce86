"""Receptive field: how many input pixels one output value can see.

A stack of layers with kernel sizes ``k_l`` and strides ``s_l`` has the receptive field

    r = 1 + sum_l (k_l - 1) * j_{l-1},     j_l = s_1 * s_2 * ... * s_l  (j_0 = 1)

where ``j`` is the *jump*: the distance in input pixels between neighbouring positions of
the layer's input. A 3 x 3 conv after three 2 x 2 poolings (jump 8) widens the field by
16 pixels, the same conv at full resolution by only 2: downsampling is the cheap way to see
far. ``layers_of`` reads the (kernel, stride, dilation) list off a network's modules.
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["receptive_field", "layers_of"]


def _pair_first(v) -> int:
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def receptive_field(layers: Sequence[tuple[int, ...]]) -> int:
    """Receptive field (pixels along one axis) of a stack of layers.

    Args:
        layers: ``(kernel, stride)`` or ``(kernel, stride, dilation)`` per layer, input first.

    Returns:
        the side of the input window that one output value depends on.
    """
    r, jump = 1, 1
    for spec in layers:
        if len(spec) not in (2, 3):
            raise ValueError(f"each layer must be (kernel, stride) or (kernel, stride, dilation), got {spec!r}")
        k, s, d = (*spec, 1)[:3]
        if min(k, s, d) < 1:
            raise ValueError(f"kernel, stride and dilation must be >= 1, got {spec!r}")
        r += d * (k - 1) * jump  # a dilated kernel spans d*(k-1)+1 positions of its input
        jump *= s
    return r


def layers_of(module: nn.Module) -> list[tuple[int, int, int]]:
    """``(kernel, stride, dilation)`` of every Conv2d / MaxPool2d / AvgPool2d in `module`.

    In definition order (the forward order for a chain of ``nn.Sequential`` blocks).
    """
    out = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            out.append((m.kernel_size[0], m.stride[0], m.dilation[0]))
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            stride = m.stride if m.stride is not None else m.kernel_size
            dilation = getattr(m, "dilation", 1)
            out.append((_pair_first(m.kernel_size), _pair_first(stride), _pair_first(dilation)))
    return out
