"""Anchors: the reference boxes a Region Proposal Network (RPN) places on its feature map.

An RPN places ``A`` reference boxes (anchors: a few sizes x aspect ratios) at every cell of
a feature map, and for each one predicts an objectness score and the deltas (see
``BoxCoder``) that move it onto an object. How anchors are labelled for training (IoU
matching and sampling) lives in ``matching.py``.

``AnchorGenerator`` mirrors its namesake in ``torchvision.models.detection`` (same
arguments, same results, checked in ``tests/test_anchors.py``), so either can be plugged
into the other's detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch
from torch import Tensor, nn

__all__ = ["AnchorGenerator", "anchors_for", "cell_anchors"]

IntPair = Union[int, tuple[int, int]]


def _pair(value, name: str) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(int(v) == v and v > 0 for v in pair):
        raise ValueError(f"{name} must be a positive int or a pair (h, w) of them, got {value!r}")
    return int(pair[0]), int(pair[1])


# ------------------------------------------------------------------------------- anchors


def cell_anchors(
    sizes: Sequence[float], aspect_ratios: Sequence[float], dtype=torch.float32, device=None
) -> Tensor:
    """The anchors of one cell, centred on (0, 0): one per (aspect ratio, size), ratio-major.

    An anchor of size s and aspect ratio r = height / width keeps the area s**2:
    ``w = s / sqrt(r)``, ``h = s * sqrt(r)``. Corners are rounded to whole pixels, as in
    torchvision (size 45 at ratio 1 gives [-22, -22, 22, 22]: 22.5 rounds to even).

    Args:
        sizes (sequence of float): anchor sizes (square roots of their areas), in pixels.
        aspect_ratios (sequence of float): height / width ratios, all > 0.
        dtype (torch.dtype): of the result.
        device (torch.device, optional): of the result.

    Returns:
        Tensor[len(aspect_ratios) * len(sizes), 4]: xyxy anchors, anchor ``r * len(sizes) + s``
        having ratio r and size s.
    """
    if len(sizes) == 0 or len(aspect_ratios) == 0 or min(sizes) <= 0 or min(aspect_ratios) <= 0:
        got = f"{sizes!r} and {aspect_ratios!r}"
        raise ValueError(f"sizes and aspect_ratios must be non-empty and positive, got {got}")
    scales = torch.as_tensor(sizes, dtype=dtype, device=device)  # (S,)
    h_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=dtype, device=device))  # (R,)
    widths = ((1 / h_ratios)[:, None] * scales[None, :]).reshape(-1)  # (R * S,)
    heights = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return (torch.stack([-widths, -heights, widths, heights], dim=1) / 2).round()


def _shift(base: Tensor, grid_size: tuple[int, int], stride: tuple[int, int]) -> Tensor:
    """The cell anchors [A, 4] copied to every cell: [h * w * A, 4], cells in row-major order."""
    (h, w), (sy, sx) = grid_size, stride
    ys = torch.arange(h, dtype=base.dtype, device=base.device) * sy  # (h,) cell top-left corners
    xs = torch.arange(w, dtype=base.dtype, device=base.device) * sx  # (w,)
    y, x = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
    shifts = torch.stack((x, y, x, y), dim=-1).reshape(-1, 1, 4)  # (h * w, 1, 4)
    return (shifts + base[None]).reshape(-1, 4)  # (h * w * A, 4)


def anchors_for(
    feature_shape: tuple[int, int],
    stride: IntPair,
    sizes: Sequence[float] = (32,),
    ratios: Sequence[float] = (0.5, 1.0, 2.0),
    device=None,
    dtype=torch.float32,
) -> Tensor:
    """All anchors of one feature map, in image pixels.

    The anchors of cell (i, j) are the cell anchors shifted to ``(j * stride_x, i * stride_y)``,
    the top-left corner of the cell's patch of the image (torchvision's convention), not
    the patch's centre.

    Args:
        feature_shape ((h, w)): the feature map's height and width, in cells.
        stride (int or (sy, sx)): image pixels per cell.
        sizes (sequence of float): anchor sizes, as in `cell_anchors`.
        ratios (sequence of float): aspect ratios, as in `cell_anchors`.
        device (torch.device, optional): of the result.
        dtype (torch.dtype): of the result.

    Returns:
        Tensor[h * w * A, 4]: xyxy anchors, location-major (cells in row-major order), then
        the ``A = len(sizes) * len(ratios)`` anchors of each cell: torchvision's order.
    """
    grid = _pair(feature_shape, "feature_shape")
    return _shift(cell_anchors(sizes, ratios, dtype, device), grid, _pair(stride, "stride"))


class AnchorGenerator(nn.Module):
    """Anchors for one or more feature maps, like ``torchvision.models.detection.AnchorGenerator``.

    Args:
        sizes (tuple of tuples): anchor sizes for each feature map, e.g. ``((32, 64),)``.
        aspect_ratios (tuple of tuples): height / width ratios for each feature map.
    """

    def __init__(self, sizes=((32,),), aspect_ratios=((0.5, 1.0, 2.0),)):
        super().__init__()
        if not isinstance(sizes[0], (list, tuple)):  # one size per map, as torchvision allows
            sizes = tuple((s,) for s in sizes)
        if not isinstance(aspect_ratios[0], (list, tuple)):
            aspect_ratios = (aspect_ratios,) * len(sizes)
        if len(sizes) != len(aspect_ratios):
            got = f"{len(sizes)} and {len(aspect_ratios)}"
            raise ValueError(f"sizes and aspect_ratios need one entry per feature map, got {got}")
        self.sizes, self.aspect_ratios = sizes, aspect_ratios
        self.cell_anchors = [cell_anchors(s, r) for s, r in zip(sizes, aspect_ratios)]  # [A_i, 4]

    def num_anchors_per_location(self) -> list[int]:
        """Anchors per feature cell, for each feature map (torchvision's name)."""
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def grid_anchors(
        self, grid_sizes: Sequence[tuple[int, int]], strides: Sequence[tuple[int, int]]
    ) -> list[Tensor]:
        """Anchors of each feature map: one Tensor[h * w * A, 4] per (grid size, stride)."""
        if not len(grid_sizes) == len(strides) == len(self.cell_anchors):
            raise ValueError(
                f"need one grid size and one stride per feature map ({len(self.cell_anchors)}), "
                f"got {len(grid_sizes)} and {len(strides)}"
            )
        anchors = []
        for base, size, stride in zip(self.cell_anchors, grid_sizes, strides):
            size, stride = [int(g) for g in size], [int(s) for s in stride]  # tensors allowed
            anchors.append(_shift(base, _pair(size, "grid size"), _pair(stride, "stride")))
        return anchors

    def forward(self, image_list, feature_maps: list[Tensor]) -> list[Tensor]:
        """Anchors for every image: a list with one Tensor[sum_i h_i * w_i * A_i, 4] per image.

        Args:
            image_list: a torchvision ``ImageList`` (or anything with ``.tensors [B, 3, H, W]``
                and ``.image_sizes``), or simply a Tensor[B, 3, H, W] of images.
            feature_maps (list of Tensor[B, C, h, w]): the maps the anchors are for; the stride
                of each is ``H // h`` by ``W // w``.
        """
        images = image_list if isinstance(image_list, Tensor) else image_list.tensors
        (height, width), first = images.shape[-2:], feature_maps[0]
        self.cell_anchors = [
            a.to(dtype=first.dtype, device=first.device) for a in self.cell_anchors
        ]
        grid_sizes = [tuple(f.shape[-2:]) for f in feature_maps]
        strides = [(height // h, width // w) for h, w in grid_sizes]
        anchors = torch.cat(self.grid_anchors(grid_sizes, strides))  # the same for every image
        return [anchors for _ in range(len(images))]
