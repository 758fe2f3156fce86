"""In-network upsampling, written from scratch.

Nearest, bed of nails, max unpooling and transposed convolution.

A segmentation network downsamples for context and must upsample back to the input's
resolution. The first three operators here have no parameters; the transposed convolution
is the learnable one. Each is checked against PyTorch in ``tests/test_upsample.py``:

- ``nearest_upsample``   == ``F.interpolate(mode="nearest")``
- ``bed_of_nails``       (no torch twin: tested by construction)
- ``max_unpool2d``       == ``F.max_unpool2d``
- ``conv_transpose2d``   == ``F.conv_transpose2d`` (values and gradients)

All functions take batched feature maps ``[N, C, H, W]`` and follow the input's device.

Taught in book/seg_upsampling.ipynb.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

import torch
import torch.nn.functional as F
from torch import Tensor

IntPair = Union[int, tuple[int, int]]

__all__ = [
    "nearest_upsample",
    "bed_of_nails",
    "max_pool2d_with_indices",
    "max_unpool2d",
    "conv_transpose2d",
    "conv_transpose2d_matrix",
    "conv2d_matrix",
    "bilinear_upsample_weight",
    "bilinear_padding",
]


# ----------------------------------------------------------------------------- validation
def _check_4d(x: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a 4-D tensor [N, C, H, W], got {got}")


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    """Turn an int or a pair of ints into a pair, checking each is an int >= minimum."""
    pair = (value, value) if not isinstance(value, (tuple, list)) else tuple(value)
    ok = len(pair) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in pair
    )
    if not ok:
        raise ValueError(
            f"{name} must be an int >= {minimum} or a pair of them, got {value!r}"
        )
    return pair


# ----------------------------------------------------------------- parameter-free upsampling
def nearest_upsample(x: Tensor, scale_factor: IntPair) -> Tensor:
    """Nearest-neighbour upsampling ("unpooling"): copy each value into an s x s block.

    Args:
        x: feature map ``[N, C, H, W]``.
        scale_factor: integer factor ``s`` (or ``(sh, sw)``), at least 1.

    Returns:
        ``[N, C, H*sh, W*sw]``, equal to ``F.interpolate(x, scale_factor=s, mode="nearest")``.
    """
    _check_4d(x, "x")
    sh, sw = _pair(scale_factor, "scale_factor", minimum=1)
    n, c, h, w = x.shape
    blocks = x[:, :, :, None, :, None].expand(n, c, h, sh, w, sw)  # (N, C, H, sh, W, sw)
    return blocks.reshape(n, c, h * sh, w * sw)


def bed_of_nails(x: Tensor, scale_factor: IntPair) -> Tensor:
    """Bed-of-nails upsampling: each value at the top-left of its s x s block, zeros elsewhere.

    Args:
        x: feature map ``[N, C, H, W]``.
        scale_factor: integer factor ``s`` (or ``(sh, sw)``), at least 1.

    Returns:
        ``[N, C, H*sh, W*sw]`` with ``out[..., i*sh, j*sw] = x[..., i, j]`` and zeros elsewhere.
    """
    _check_4d(x, "x")
    sh, sw = _pair(scale_factor, "scale_factor", minimum=1)
    n, c, h, w = x.shape
    nails = x[:, :, :, None, :, None]  # (N, C, H, 1, W, 1)
    # F.pad pads the last dims first: (W-block right, W none, H-block bottom)
    blocks = F.pad(nails, (0, sw - 1, 0, 0, 0, sh - 1))  # (N, C, H, sh, W, sw)
    return blocks.reshape(n, c, h * sh, w * sw)


def max_pool2d_with_indices(
    x: Tensor, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0
) -> tuple[Tensor, Tensor]:
    """Max pooling that also returns where each maximum came from (for ``max_unpool2d``).

    Args:
        x: feature map ``[N, C, H, W]``.
        kernel_size: the pooling window, as in ``F.max_pool2d``.
        stride: the window's step (defaults to kernel_size).
        padding: as in ``F.max_pool2d``.

    Returns:
        ``(pooled, indices)``, both ``[N, C, Ho, Wo]``; ``indices`` are int64 positions in the
        flattened ``H*W`` plane of each channel.
    """
    _check_4d(x, "x")
    kernel_size = _pair(kernel_size, "kernel_size", minimum=1)
    stride = _pair(kernel_size if stride is None else stride, "stride", minimum=1)
    padding = _pair(padding, "padding", minimum=0)
    if 2 * max(padding[0] - kernel_size[0] // 2, padding[1] - kernel_size[1] // 2, 0):
        raise ValueError(f"padding must be at most half of kernel_size, got padding {padding} "
                         f"for kernel_size {kernel_size}")
    return F.max_pool2d(x, kernel_size, stride, padding, return_indices=True)


def max_unpool2d(
    x: Tensor,
    indices: Tensor,
    kernel_size: IntPair,
    stride: IntPair | None = None,
    padding: IntPair = 0,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """Max unpooling: put each value back where its pooling window had its maximum.

    Args:
        x: pooled values ``[N, C, H, W]``.
        indices: int64 ``[N, C, H, W]`` from ``max_pool2d_with_indices``: a position in the
            flattened ``Ho*Wo`` output plane for every value.
        kernel_size: the pooling's window.
        stride: the pooling's step (defaults to kernel_size).
        padding: the pooling's padding.
        output_size: ``(Ho, Wo)`` or ``(N, C, Ho, Wo)``; defaults to
            ``((H-1)*stride - 2*padding + kernel_size)`` per axis, as in ``F.max_unpool2d``.

    Returns:
        ``[N, C, Ho, Wo]``, zero except at the recorded positions.
    """
    _check_4d(x, "x")
    if not isinstance(indices, Tensor) or indices.shape != x.shape:
        got = tuple(indices.shape) if isinstance(indices, Tensor) else type(indices).__name__
        raise ValueError(f"indices must have the shape of x {tuple(x.shape)}, got {got}")
    if indices.dtype != torch.int64:
        raise ValueError(f"indices must be int64 positions, got dtype {indices.dtype}")
    kh, kw = _pair(kernel_size, "kernel_size", minimum=1)
    sh, sw = _pair(kernel_size if stride is None else stride, "stride", minimum=1)
    ph, pw = _pair(padding, "padding", minimum=0)
    n, c, h, w = x.shape
    if output_size is None:
        out_h, out_w = (h - 1) * sh - 2 * ph + kh, (w - 1) * sw - 2 * pw + kw
    else:
        if len(output_size) not in (2, 4):
            raise ValueError(f"output_size must be (Ho, Wo) or (N, C, Ho, Wo), got {output_size}")
        out_h, out_w = (int(v) for v in output_size[-2:])
    if indices.numel() and (indices.min() < 0 or indices.max() >= out_h * out_w):
        raise ValueError(
            f"indices must lie in [0, {out_h * out_w}) for an output of {out_h}x{out_w}, "
            f"got range [{int(indices.min())}, {int(indices.max())}]"
        )
    out = x.new_zeros(n, c, out_h * out_w)  # (N, C, Ho*Wo): one flat plane per channel
    out = out.scatter(2, indices.reshape(n, c, h * w), x.reshape(n, c, h * w))
    return out.view(n, c, out_h, out_w)


# ----------------------------------------------------------------- transposed convolution
def conv_transpose2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    output_padding: IntPair = 0,
    groups: int = 1,
    dilation: IntPair = 1,
) -> Tensor:
    """Transposed convolution: the sum of a weighted copy of the filter per input value.

    Each input value places a weighted copy of the filter into the output, and overlapping
    copies are summed.

    Same signature and result as ``F.conv_transpose2d``.

    Args:
        input: ``[N, Cin, H, W]``.
        weight: ``[Cin, Cout // groups, kh, kw]`` (torch's layout for transposed convs).
        bias: optional ``[Cout]``.
        stride: step between the copies in the output (the upsampling factor).
        padding: rows/columns cropped from each side of the full output.
        output_padding: extra rows/columns added at the bottom/right (to pick among the
            output sizes that a stride-s convolution maps to the same input size).
        groups: input and output channels split into this many independent groups.
        dilation: spacing between filter taps.

    Returns:
        ``[N, Cout, Ho, Wo]`` with ``Ho = (H-1)*sh - 2*ph + dh*(kh-1) + oph + 1`` (same for W).
    """
    _check_4d(input, "input")
    _check_4d(weight, "weight")
    sh, sw = _pair(stride, "stride", minimum=1)
    ph, pw = _pair(padding, "padding", minimum=0)
    oph, opw = _pair(output_padding, "output_padding", minimum=0)
    dh, dw = _pair(dilation, "dilation", minimum=1)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    n, c_in, h, w = input.shape
    if weight.shape[0] != c_in:
        raise ValueError(
            f"weight must be [Cin={c_in}, Cout/groups, kh, kw], got {tuple(weight.shape)}"
        )
    if c_in % groups != 0:
        raise ValueError(f"groups={groups} must divide the input channels Cin={c_in}")
    for op, s, d, axis in ((oph, sh, dh, "height"), (opw, sw, dw, "width")):
        if op >= s and op >= d:  # torch's rule: smaller than either stride or dilation
            raise ValueError(
                f"output_padding must be smaller than stride or dilation, got "
                f"output_padding={op}, stride={s}, dilation={d} along {axis}"
            )
    c_out_g, kh, kw = weight.shape[1:]
    c_out = c_out_g * groups
    if bias is not None and tuple(bias.shape) != (c_out,):
        raise ValueError(f"bias must be [Cout={c_out}], got {tuple(bias.shape)}")
    out_h = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    out_w = (w - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"padding={padding} is too large: the output would be {out_h}x{out_w}")

    # 1) Every input value times the whole filter, for all positions at once.
    x = input.reshape(n, groups, c_in // groups, h, w)  # (N, G, Cin/G, H, W)
    wt = weight.reshape(groups, c_in // groups, c_out_g, kh, kw)  # (G, Cin/G, Cout/G, kh, kw)
    copies = torch.einsum("ngchw,gcoab->ngoabhw", x, wt)  # (N, G, Cout/G, kh, kw, H, W)
    copies = copies.reshape(n, c_out, kh * kw * h * w)  # (N, Cout, kh*kw*H*W)

    # 2) Where each copy lands: input (i, j) with tap (a, b) goes to (i*s + a*d, j*s + b*d)
    #    of the full, uncropped output (plus output_padding rows that receive nothing).
    full_h = (h - 1) * sh + dh * (kh - 1) + 1 + oph
    full_w = (w - 1) * sw + dw * (kw - 1) + 1 + opw
    dev = input.device
    rows = torch.arange(kh, device=dev)[:, None] * dh + torch.arange(h, device=dev) * sh  # (kh, H)
    cols = torch.arange(kw, device=dev)[:, None] * dw + torch.arange(w, device=dev) * sw  # (kw, W)
    target = rows[:, None, :, None] * full_w + cols[None, :, None, :]  # (kh, kw, H, W)

    # 3) Overlapping copies are summed: a scatter-add into the flat output plane.
    #    (F.fold(copies.view(n, c_out*kh*kw, h*w), (full_h, full_w), (kh, kw), dilation,
    #    stride=stride) is the same scatter-add of overlapping patches, done by torch.)
    full = copies.new_zeros(n, c_out, full_h * full_w)
    full = full.index_add(2, target.reshape(-1), copies)  # (N, Cout, full_h*full_w)
    full = full.view(n, c_out, full_h, full_w)

    # 4) padding crops the full output on every side.
    out = full[:, :, ph : ph + out_h, pw : pw + out_w]  # (N, Cout, Ho, Wo)
    if bias is not None:
        out = out + bias[:, None, None]
    return out


def _single_channel_weight(weight: Tensor) -> Tensor:
    if weight.dim() == 2:
        weight = weight[None, None]
    if weight.dim() != 4 or weight.shape[:2] != (1, 1):
        raise ValueError(f"weight must be [kh, kw] or [1, 1, kh, kw], got {tuple(weight.shape)}")
    return weight


def _operator_matrix(op, input_size: tuple[int, int], weight: Tensor) -> Tensor:
    """Dense matrix of a linear op on one H x W plane: apply it to every basis image."""
    h, w = _pair(tuple(input_size), "input_size", minimum=1)
    basis = torch.eye(h * w, dtype=weight.dtype, device=weight.device).view(h * w, 1, h, w)
    columns = op(basis)  # (H*W, 1, Ho, Wo): column k is the op applied to basis image k
    return columns.reshape(h * w, -1).T  # (Ho*Wo, H*W)


def conv_transpose2d_matrix(
    weight: Tensor, input_size: tuple[int, int], stride: IntPair = 1, padding: IntPair = 0
) -> Tensor:
    """Dense matrix ``T`` of a single-channel transposed convolution.

    Args:
        weight: ``[kh, kw]`` (or ``[1, 1, kh, kw]``).
        input_size: ``(H, W)`` of the input plane.
        stride: as in ``conv_transpose2d``.
        padding: as in ``conv_transpose2d``.

    Returns:
        ``T`` of shape ``[Ho*Wo, H*W]`` with ``convT(x).flatten() == T @ x.flatten()``.
        It equals ``conv2d_matrix(weight, (Ho, Wo), stride, padding).T``: the transposed
        convolution is the adjoint (transpose) of the convolution, hence its name.
    """
    weight = _single_channel_weight(weight)
    return _operator_matrix(
        lambda x: conv_transpose2d(x, weight, stride=stride, padding=padding), input_size, weight
    )


def conv2d_matrix(
    weight: Tensor, input_size: tuple[int, int], stride: IntPair = 1, padding: IntPair = 0
) -> Tensor:
    """Dense matrix ``C`` of a single-channel ``F.conv2d``: ``conv(x).flatten() == C @ x.flatten()``.

    Args:
        weight: ``[kh, kw]`` (or ``[1, 1, kh, kw]``).
        input_size: ``(H, W)`` of the input plane.
        stride: as in ``F.conv2d``.
        padding: as in ``F.conv2d``.

    Returns:
        ``C`` of shape ``[Ho*Wo, H*W]``.
    """
    weight = _single_channel_weight(weight)
    return _operator_matrix(
        lambda x: F.conv2d(x, weight, stride=stride, padding=padding), input_size, weight
    )


def bilinear_upsample_weight(channels: int, scale_factor: int) -> Tensor:
    """Transposed-conv weight that performs bilinear upsampling (the FCN initialisation).

    Use with ``stride=scale_factor``, ``padding=ceil((scale_factor-1)/2)`` and kernel size
    ``2*scale_factor - scale_factor % 2``; away from the border the result equals
    ``F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)``.

    Args:
        channels: number of channels C; each channel is upsampled on its own.
        scale_factor: integer factor s >= 1.

    Returns:
        ``[C, C, k, k]`` with the bilinear kernel on the channel diagonal, zeros elsewhere.
    """
    if not isinstance(channels, int) or channels < 1:
        raise ValueError(f"channels must be a positive int, got {channels!r}")
    (s, _) = _pair(scale_factor, "scale_factor", minimum=1)
    k = 2 * s - s % 2
    center = s - 1 if k % 2 == 1 else s - 0.5
    taps = 1 - (torch.arange(k, dtype=torch.float32) - center).abs() / s  # (k,) a tent
    kernel = taps[:, None] * taps[None, :]  # (k, k)
    weight = torch.zeros(channels, channels, k, k)
    weight[torch.arange(channels), torch.arange(channels)] = kernel
    return weight


def bilinear_padding(scale_factor: int) -> int:
    """Padding that goes with ``bilinear_upsample_weight`` so the output is H*s x W*s."""
    return math.ceil((scale_factor - 1) / 2)
