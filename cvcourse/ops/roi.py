"""RoI Pool and RoI Align from scratch: fixed-size features for boxes of any size.

Fast R-CNN runs the backbone once per image, then cuts one fixed ``oh x ow`` block out of
the shared feature map for every region of interest (RoI). Both operators split the box
into ``oh x ow`` bins and reduce each bin to one number per channel:

- ``roi_pool`` (Fast R-CNN) snaps the box to whole feature cells, splits it into bins with
  integer edges and takes each bin's max. Snapping moves each corner by up to half a cell
  (8 input pixels at stride 16) and can miss a small box: see ``roi_pool_snapping_error``.
- ``roi_align`` (Mask R-CNN) never rounds: each bin averages bilinear samples taken at
  exact, fractional positions. It is linear in the features and separable: a bin's weights
  are (weights over rows) x (weights over columns), so for RoI k in image b
  ``output[k, c] = Wy[k] @ input[b, c] @ Wx[k].T`` with ``Wy[k]: [oh, H]``, ``Wx[k]: [ow, W]``.

Signatures and results are those of ``torchvision.ops.roi_pool`` / ``roi_align`` (their CPU
kernels, down to the boundary rules); ``tests/test_roi.py`` checks values and gradients.
Gradients reach ``input`` through autograd; as in torchvision, ``boxes`` get none.

Taught in book/det_fast_rcnn.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .boxes import box_area, check_ordered

__all__ = [
    "AlignSamples",
    "RoIAlign",
    "RoIPool",
    "SnappingError",
    "bilinear_sample_points",
    "roi_align",
    "roi_pool",
    "roi_pool_bins",
    "roi_pool_snapping_error",
]

Boxes = Union[Tensor, Sequence[Tensor]]
IntPair = Union[int, tuple[int, int]]


# --------------------------------------------------------------------------- validation


def _describe(x) -> str:
    return f"shape {tuple(x.shape)}" if isinstance(x, Tensor) else type(x).__name__


def _output_size(output_size) -> tuple[int, int]:
    size = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size,) * 2
    if len(size) != 2 or not all(type(s) is int and s > 0 for s in size):
        raise ValueError(f"output_size must be an int > 0 or a pair (h, w), got {output_size!r}")
    return size


def _check_scale(spatial_scale) -> None:
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, (int, float)) \
            or not 0 < spatial_scale < float("inf"):
        raise ValueError(f"spatial_scale must be a positive number, got {spatial_scale!r}")


def _as_rois(input, boxes: Boxes, output_size, spatial_scale) -> tuple[Tensor, tuple[int, int]]:
    """Check the arguments; return detached rois [K, 5] (index, x1, y1, x2, y2) and (oh, ow)."""
    if not isinstance(input, Tensor) or input.dim() != 4 or not input.is_floating_point():
        got = f"{_describe(input)} {getattr(input, 'dtype', '')}"
        raise ValueError(f"input must be a floating point Tensor[N, C, H, W], got {got}")
    size = _output_size(output_size)
    _check_scale(spatial_scale)
    expected = "boxes must be a Tensor[K, 5] (batch index, x1, y1, x2, y2) or list of Tensor[L, 4]"
    if isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"{expected}, got {_describe(boxes)}")
        rois = boxes
    elif isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(f"{expected}, but boxes[{i}] has {_describe(b)}")
        if len(boxes) > len(input):
            raise ValueError(f"boxes has one Tensor per image: {len(boxes)} for {len(input)}")
        indexed = [torch.cat([torch.full_like(b[:, :1], i), b], 1) for i, b in enumerate(boxes)]
        rois = torch.cat(indexed) if boxes else input.new_zeros(0, 5)
    else:
        raise ValueError(f"{expected}, got {_describe(boxes)}")
    if not rois.is_floating_point() or rois.device != input.device:
        raise ValueError(
            f"boxes must be floating point on input's device: {rois.dtype} {rois.device}"
        )
    # Coordinates in float64 for float64 maps, else float32, as torchvision's kernels compute.
    rois = rois.detach().to(torch.float64 if input.dtype == torch.float64 else torch.float32)
    index, (x1, y1, x2, y2) = rois[:, 0], rois[:, 1:].T
    in_batch = (index == index.floor()) & (index >= 0) & (index < len(input))
    for bad, what in (
        (~torch.isfinite(rois).all(1), "finite coordinates"),
        (~in_batch, f"a batch index in [0, {len(input)})"),
        ((x2 < x1) | (y2 < y1), "x2 >= x1 and y2 >= y1"),
    ):
        if bool(bad.any()):
            k = int(bad.nonzero()[0, 0])
            raise ValueError(f"boxes must have {what}, but RoI {k} is {rois[k].tolist()}")
    return rois, size


# ------------------------------------------------------------------------------ RoI Pool


def _round_half_away(v: Tensor) -> Tensor:
    """C's round(): halves go away from zero (torch.round sends them to the even neighbour)."""
    return torch.where((v - v.trunc()).abs() == 0.5, v.trunc() + v.sign(), v.round())


def _divide(x: Tensor, n: int) -> Tensor:
    """``x / n`` correctly rounded on every device.

    CUDA divides by a Python number as a product with its reciprocal, which can be one bit
    off (7 * (1/3) * 3 = 7.000000000000001): a floor or ceil of it then moves a bin edge by a
    whole cell. A tensor divisor is divided.
    """
    return x / x.new_full((), n)


def _snap_axis(start: Tensor, end: Tensor, pooled: int, size: int) -> tuple[Tensor, Tensor]:
    """Integer edges [lo, hi) of `pooled` bins along one axis, clipped to [0, size]: (K, P) each."""
    cells = (end - start + 1).clamp(min=1)  # (K,) the '+1' counts the last cell in
    bin_size = _divide(cells[:, None], pooled)  # (K, 1) a fraction of a cell, in general
    p = torch.arange(pooled, dtype=start.dtype, device=start.device)  # (P,)
    lo = torch.floor(p * bin_size) + start[:, None]  # (K, P) neighbouring bins share
    hi = torch.ceil((p + 1) * bin_size) + start[:, None]  # the cell they split
    return lo.clamp(0, size).long(), hi.clamp(0, size).long()


def roi_pool_bins(
    boxes: Tensor, output_size: IntPair, spatial_scale: float, map_size: tuple[int, int]
):
    """The integer bins RoI Pool takes maxima over: rows [hstart, hend) x columns [wstart, wend).

    Args:
        boxes (Tensor[K, 4]): xyxy boxes in input pixels.
        output_size (int or (h, w)): number of bins ``(oh, ow)``.
        spatial_scale (float): feature cells per input pixel (1/16 for stride 16).
        map_size ((H, W)): the feature map's size; bins are clipped to it.

    Returns:
        (hstart, hend, wstart, wend): int64, ``[K, oh]`` for rows and ``[K, ow]`` for columns.
        A bin with ``hend <= hstart`` or ``wend <= wstart`` lies off the map and is empty.
    """
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be a Tensor[K, 4] of xyxy boxes, got {_describe(boxes)}")
    oh, ow = _output_size(output_size)
    x1, y1, x2, y2 = _round_half_away(boxes * spatial_scale).unbind(1)  # (K,) whole cells
    return (*_snap_axis(y1, y2, oh, map_size[0]), *_snap_axis(x1, x2, ow, map_size[1]))


def roi_pool(
    input: Tensor, boxes: Boxes, output_size: IntPair, spatial_scale: float = 1.0
) -> Tensor:
    """RoI max pooling (Fast R-CNN), as ``torchvision.ops.roi_pool``.

    With the box's corners rounded to whole cells (``round(x * spatial_scale)``), the RoI
    spans ``round(x2 s) - round(x1 s) + 1`` cells (at least 1) and bin (i, j) of RoI k is::

        output[k, :, i, j] = input[b_k, :, hstart:hend, wstart:wend].amax((-2, -1))  # 0 if empty

    with ``hstart = floor(i * bin_h)``, ``hend = ceil((i + 1) * bin_h)`` past the RoI's first
    row, clipped to the map (see ``roi_pool_bins``). A bin of a x b cells is therefore one
    a x b max-pooling window read at the bin's top-left cell: we max-pool the map once per
    distinct bin size (a handful; the loop never runs over RoIs or bins) and gather. The
    gradient of a bin reaches its argmax, the first maximum in row-major order, as in
    torchvision. The cost grows with the number of distinct bin sizes times the map's size.

    Args:
        input (Tensor[N, C, H, W]): feature maps.
        boxes (Tensor[K, 5] or list of Tensor[L, 4]): xyxy boxes in input pixels, either with
            their image index in column 0 or as one tensor per image.
        output_size (int or (h, w)): ``(oh, ow)`` bins per RoI.
        spatial_scale (float): feature cells per input pixel, e.g. 1/16 for stride 16.

    Returns:
        Tensor[K, C, oh, ow]: pooled features, one block per box, in the order of `boxes`.
    """
    rois, (oh, ow) = _as_rois(input, boxes, output_size, spatial_scale)
    batch = rois[:, 0].long()  # (K,)
    hs, he, ws, we = roi_pool_bins(rois[:, 1:], (oh, ow), spatial_scale, input.shape[-2:])
    heights = (he - hs)[:, :, None].expand(-1, -1, ow)  # (K, oh, ow) bin sizes in cells
    widths = (we - ws)[:, None, :].expand(-1, oh, -1)
    nonempty = (heights > 0) & (widths > 0)
    sizes = torch.unique(torch.stack((heights, widths), dim=-1)[nonempty], dim=0)  # (B, 2)
    x = input.contiguous(memory_format=torch.channels_last)  # CPU max-pools this ~10x faster
    out = input.new_zeros(len(rois), oh, ow, input.shape[1])  # (K, oh, ow, C) empty bins stay 0
    for a, b in sizes.tolist():
        windows = F.max_pool2d(x, (a, b), stride=1)  # (N, C, H-a+1, W-b+1) all a x b maxima
        k, i, j = ((heights == a) & (widths == b)).nonzero(as_tuple=True)  # (M,) bins of that size
        out[k, i, j] = windows.permute(0, 2, 3, 1)[batch[k], hs[k, i], ws[k, j]]  # (M, C)
    return out.permute(0, 3, 1, 2).contiguous()  # (K, C, oh, ow)


# ----------------------------------------------------------------------------- RoI Align


def _sample_positions(start: Tensor, length: Tensor, pooled: int, sampling_ratio: int):
    """Sample coordinates along one axis: positions (K, P, G), grid (K,), in_grid (K, P, G).

    Bin p spans ``start + [p, p + 1) * bin`` and gets ``grid`` samples at the centres of
    ``grid`` equal parts. With ``sampling_ratio <= 0`` the grid adapts to the box,
    ``ceil(length / pooled)``, so RoIs differ: we pad to the largest and mark the real ones.
    """
    bin_size = _divide(length, pooled)[:, None, None]  # (K, 1, 1)
    if sampling_ratio > 0:
        grid = torch.full_like(length, sampling_ratio).long()
    else:
        grid = torch.ceil(_divide(length, pooled)).long()  # (K,) 0 for an empty aligned box
    g = grid[:, None, None]  # (K, 1, 1)
    p = torch.arange(pooled, dtype=start.dtype, device=start.device)[None, :, None]  # (1, P, 1)
    g_max = max(int(grid.max()), 1) if len(grid) else 1
    i = torch.arange(g_max, dtype=start.dtype, device=start.device)[None, None, :]  # (1, 1, G)
    pos = start[:, None, None] + p * bin_size + (i + 0.5) * bin_size / g.clamp(min=1)  # (K, P, G)
    return pos, grid, (i < g).expand_as(pos)


def _align_weights(start: Tensor, length: Tensor, pooled: int, sampling_ratio: int, size: int):
    """Weights of RoI Align along one axis, averaged over each bin's samples: (K, P, size).

    Bilinear interpolation at y mixes rows floor(y) and floor(y) + 1 with weights 1 - ly and
    ly (ly = y - floor(y)). torchvision's boundary rules: a sample with y < -1 or y > size
    reads 0; otherwise y is first clamped to [0, size - 1].
    """
    pos, grid, in_grid = _sample_positions(start, length, pooled, sampling_ratio)  # (K, P, G)
    keep = in_grid & (pos >= -1) & (pos <= size)
    pos = pos.clamp(min=0)
    low = pos.long().clamp(max=size - 1)  # floor, as pos >= 0
    high = (low + 1).clamp(max=size - 1)
    frac = torch.where(pos >= size - 1, torch.zeros_like(pos), pos - low)  # ly; 0 on the last row
    share = keep.to(pos.dtype) / grid.clamp(min=1)[:, None, None]  # (K, P, G) each sample's part
    weights = pos.new_zeros(len(pos), pooled, size)
    weights.scatter_add_(2, low, (1 - frac) * share)
    weights.scatter_add_(2, high, frac * share)
    return weights


def _align_box(rois: Tensor, spatial_scale: float, aligned: bool):
    """Box corners on the map and its size: x1, y1, width, height, each (K,)."""
    x1, y1, x2, y2 = (rois * spatial_scale - (0.5 if aligned else 0.0)).unbind(1)
    width, height = x2 - x1, y2 - y1
    if not aligned:  # legacy: boxes under one cell are enlarged to one cell
        width, height = width.clamp(min=1), height.clamp(min=1)
    return x1, y1, width, height


def roi_align(
    input: Tensor,
    boxes: Boxes,
    output_size: IntPair,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """RoI Align (Mask R-CNN), as ``torchvision.ops.roi_align``.

    The box, scaled to the map (and shifted by half a cell when ``aligned``, so that its
    corners fall on cell edges, not cell centres), is split into ``oh x ow`` equal bins with
    no rounding. Each bin averages ``gh x gw`` bilinear samples at the centres of a regular
    grid: ``gh = sampling_ratio``, or ``ceil(box_h / oh)`` when ``sampling_ratio <= 0``.

    Args:
        input (Tensor[N, C, H, W]): feature maps.
        boxes (Tensor[K, 5] or list of Tensor[L, 4]): xyxy boxes in input pixels, either with
            their image index in column 0 or as one tensor per image.
        output_size (int or (h, w)): ``(oh, ow)`` bins per RoI.
        spatial_scale (float): feature cells per input pixel, e.g. 1/16 for stride 16.
        sampling_ratio (int): samples per bin along each axis; <= 0 adapts to the box.
        aligned (bool): shift by half a cell (True is correct; False is the legacy default).

    Returns:
        Tensor[K, C, oh, ow]: pooled features, one block per box, in the order of `boxes`.
    """
    rois, (oh, ow) = _as_rois(input, boxes, output_size, spatial_scale)
    if not isinstance(sampling_ratio, int) or isinstance(sampling_ratio, bool):
        raise ValueError(f"sampling_ratio must be an int (<= 0: adaptive), got {sampling_ratio!r}")
    if not isinstance(aligned, bool):
        raise ValueError(f"aligned must be True or False, got {aligned!r}")
    batch = rois[:, 0].long()  # (K,)
    x1, y1, width, height = _align_box(rois[:, 1:], spatial_scale, aligned)  # (K,) each
    channels, map_h, map_w = input.shape[1:]
    wy = _align_weights(y1, height, oh, sampling_ratio, map_h).to(input.dtype)  # (K, oh, H)
    wx = _align_weights(x1, width, ow, sampling_ratio, map_w).to(input.dtype)  # (K, ow, W)
    out = input.new_zeros(len(rois), channels, oh, ow)
    for n in batch.unique().tolist():  # two matrix products per image, none per RoI
        k = (batch == n).nonzero()[:, 0]
        rows = torch.einsum("kph,chw->kpcw", wy[k], input[n])  # (k, oh, C, W) rows mixed
        cols = torch.bmm(rows.flatten(1, 2), wx[k].transpose(1, 2))  # (k, oh * C, ow) then columns
        out[k] = cols.view(len(k), oh, channels, ow).transpose(1, 2)
    return out


class AlignSamples(NamedTuple):
    """Where RoI Align reads one box, in map coordinates (cell (i, j) is centred at x=j, y=i)."""

    points: Tensor  # (oh, ow, gh * gw, 2) the (x, y) of each bin's samples, row-major
    valid: Tensor  # (oh, ow, gh * gw) False where torchvision reads 0 (over a cell off the map)
    x_edges: Tensor  # (ow + 1,) bin edges
    y_edges: Tensor  # (oh + 1,)


def bilinear_sample_points(
    box: Tensor,
    output_size: IntPair,
    sampling_ratio: int = -1,
    spatial_scale: float = 1.0,
    aligned: bool = False,
    map_size: tuple[int, int] | None = None,
) -> AlignSamples:
    """The bins and bilinear sample points RoI Align uses for one box (for figures and widgets).

    Args:
        box (Tensor[4]): one xyxy box in input pixels.
        output_size (int or (h, w)): as in `roi_align`.
        sampling_ratio (int): as in `roi_align`.
        spatial_scale (float): as in `roi_align`.
        aligned (bool): as in `roi_align`.
        map_size ((H, W), optional): the feature map's size, to mark samples that read 0.

    Returns:
        AlignSamples: float64 sample points ``[oh, ow, gh * gw, 2]`` as (x, y), their validity
        and the bin edges, in feature-map coordinates, as ``plt.imshow`` draws the map.
    """
    if not isinstance(box, Tensor) or box.numel() != 4:
        raise ValueError(f"box must be one xyxy box, a Tensor[4], got {_describe(box)}")
    oh, ow = _output_size(output_size)
    _check_scale(spatial_scale)
    box = box.detach().cpu().double().reshape(1, 4)
    x1, y1, width, height = _align_box(box, spatial_scale, aligned)  # (1,) each
    xs, gx, _ = _sample_positions(x1, width, ow, sampling_ratio)  # (1, ow, gx)
    ys, gy, _ = _sample_positions(y1, height, oh, sampling_ratio)  # (1, oh, gy)
    gx, gy = int(gx), int(gy)
    x = xs[0, :, :gx][None, :, None, :].expand(oh, ow, gy, gx)
    y = ys[0, :, :gy][:, None, :, None].expand(oh, ow, gy, gx)
    points = torch.stack((x, y), dim=-1).reshape(oh, ow, gy * gx, 2)
    valid = (points >= -1).all(-1)
    if map_size is not None:
        valid &= (points[..., 0] <= map_size[1]) & (points[..., 1] <= map_size[0])
    x_edges = x1 + torch.arange(ow + 1, dtype=torch.float64) * width / ow
    y_edges = y1 + torch.arange(oh + 1, dtype=torch.float64) * height / oh
    return AlignSamples(points, valid, x_edges, y_edges)


# -------------------------------------------------------------------- snapping and modules


class SnappingError(NamedTuple):
    """What RoI Pool's rounding does to boxes, in input pixels."""

    pooled_boxes: Tensor  # (K, 4) the region whose cells RoI Pool actually reads
    shift: Tensor  # (K, 4) pooled_boxes - boxes, per coordinate
    iou: Tensor  # (K,) IoU of each box with its pooled region


def roi_pool_snapping_error(boxes: Tensor, spatial_scale: float) -> SnappingError:
    """How far RoI Pool's snapping to whole cells moves each box, in input pixels.

    Coordinates are continuous (box [0, 0, 16, 16] covers exactly the first 16 x 16 pixels)
    and feature cell c covers input pixels ``[c / s, (c + 1) / s)``. RoI Pool reads cells
    ``round(x1 s)`` to ``round(x2 s)`` inclusive: each corner moves by up to half a cell, and
    the '+1' (a relic of inclusive pixel coordinates) adds one more cell right and below.

    Args:
        boxes (Tensor[K, 4]): xyxy boxes in input pixels.
        spatial_scale (float): feature cells per input pixel.

    Returns:
        SnappingError: the pooled regions ``[K, 4]``, their shifts from the boxes ``[K, 4]``
        and their IoU with the boxes ``[K]``.
    """
    if not isinstance(boxes, Tensor) or boxes.shape[1:] != (4,) or not boxes.is_floating_point():
        raise ValueError(f"boxes must be a floating point Tensor[K, 4], got {_describe(boxes)}")
    check_ordered(boxes, "boxes")
    _check_scale(spatial_scale)
    start = _round_half_away(boxes[:, :2] * spatial_scale)  # (K, 2) first cell (x, y)
    end = _round_half_away(boxes[:, 2:] * spatial_scale) + 1  # (K, 2) past the last cell
    pooled = torch.cat([start, end], dim=1) / spatial_scale  # (K, 4) in input pixels
    lo, hi = torch.maximum(pooled[:, :2], boxes[:, :2]), torch.minimum(pooled[:, 2:], boxes[:, 2:])
    inter = (hi - lo).clamp(min=0).prod(dim=1)  # (K,)
    iou = inter / (box_area(pooled) + box_area(boxes) - inter)
    return SnappingError(pooled, pooled - boxes, iou)


class RoIPool(nn.Module):
    """`roi_pool` as a module, like ``torchvision.ops.RoIPool``."""

    def __init__(self, output_size: IntPair, spatial_scale: float):
        super().__init__()
        self.output_size, self.spatial_scale = _output_size(output_size), spatial_scale

    def forward(self, input: Tensor, rois: Boxes) -> Tensor:
        """`roi_pool` with this module's settings."""
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        """The settings, shown in the module's repr."""
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class RoIAlign(nn.Module):
    """`roi_align` as a module, like ``torchvision.ops.RoIAlign``."""

    def __init__(
        self, output_size: IntPair, spatial_scale: float, sampling_ratio: int, aligned: bool = False
    ):
        super().__init__()
        self.output_size, self.spatial_scale = _output_size(output_size), spatial_scale
        self.sampling_ratio, self.aligned = sampling_ratio, aligned

    def forward(self, input: Tensor, rois: Boxes) -> Tensor:
        """`roi_align` with this module's settings."""
        return roi_align(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )

    def extra_repr(self) -> str:
        """The settings, shown in the module's repr."""
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}"
        )
