"""Box operations: area, IoU, GIoU, format conversion, clipping, NMS and the box coder.

Each function has the signature and the semantics of its namesake in ``torchvision.ops``
(``BoxCoder`` those of ``torchvision.models.detection._utils.BoxCoder``), so a learner can
swap one for the other; ``tests/test_boxes.py`` checks that they agree. The bodies are plain,
vectorized PyTorch: no C++ kernel and no Python loop over boxes. They run on the device and
in the dtype of their inputs (half precision areas are computed in float32, as torchvision
does). Boxes are ``(x1, y1, x2, y2)`` ("xyxy") with ``x1 <= x2`` and ``y1 <= y2`` unless a
function says otherwise.

Taught in book/det_many_objects.ipynb, book/det_evaluation.ipynb and book/det_rpn.ipynb.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "BOX_FORMATS",
    "BoxCoder",
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "clip_boxes_to_image",
    "generalized_box_iou",
    "nms",
    "paired_iou",
    "remove_small_boxes",
]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")

# nms settles its greedy order this many boxes at a time (see nms for why blocks).
_NMS_BLOCK = 256


# --------------------------------------------------------------------------- validation


def check_boxes(boxes, name: str, shape: str = "N, 4", what: str = "xyxy boxes") -> None:
    """Raise unless `boxes` is a floating Tensor of shape [N, 4] (or [..., 4])."""
    expected = f"{name} must be a Tensor[{shape}] of {what}"
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{expected}, got {type(boxes).__name__}")
    rank_ok = boxes.dim() == 2 if shape == "N, 4" else boxes.dim() >= 1
    if not rank_ok or boxes.shape[-1] != 4:
        raise ValueError(f"{expected}, got shape {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise TypeError(f"{expected} with a floating point dtype, got {boxes.dtype}")


def check_ordered(boxes: Tensor, name: str) -> None:
    """Raise unless every box has x2 >= x1 and y2 >= y1, naming the first one that does not."""
    bad = (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])  # (N,)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(
            f"{name} must be xyxy boxes with x2 >= x1 and y2 >= y1, "
            f"but box {i} is {boxes[i].tolist()}"
        )


def check_finite(boxes: Tensor, name: str) -> None:
    """Raise unless every coordinate is finite (no NaN or inf), naming the first bad box."""
    bad = ~torch.isfinite(boxes).all(dim=-1)  # (N,)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise ValueError(f"{name} must have finite coordinates, but box {i} is {boxes[i].tolist()}")


def check_threshold(value, name: str) -> float:
    """Return `value` as a float, raising unless it is a real number in [0, 1] (NaN fails)."""
    if isinstance(value, Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _check_vector(values, name: str, length: int, integer: bool = False) -> None:
    """Raise unless `values` is a 1-D Tensor of `length` entries (floating or integer)."""
    kind = "an integer" if integer else "a floating point"
    if not isinstance(values, Tensor):
        raise TypeError(f"{name} must be {kind} Tensor[N], got {type(values).__name__}")
    if values.dim() != 1:
        raise ValueError(f"{name} must be {kind} Tensor[N], got shape {tuple(values.shape)}")
    if len(values) != length:
        raise ValueError(f"{name} has {len(values)} entries but there are {length} boxes")
    if integer:
        ok = not values.is_floating_point() and not values.is_complex() and values.dtype != torch.bool
    else:
        ok = values.is_floating_point()
    if not ok:
        raise TypeError(f"{name} must be {kind} Tensor[N], got dtype {values.dtype}")


def _check_format(fmt, name: str) -> None:
    if fmt not in BOX_FORMATS:
        raise ValueError(f"{name} must be one of {BOX_FORMATS}, got {fmt!r}")


# ----------------------------------------------------------------------- area and overlap


def _upcast(t: Tensor) -> Tensor:
    # Products of float16 coordinates overflow above 65504 (a 256 x 256 box): use float32.
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _area(boxes: Tensor) -> Tensor:
    boxes = _upcast(boxes)
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Pairwise intersection and union areas of [N, 4] and [M, 4] boxes, both [N, M]."""
    x1a, y1a, x2a, y2a = boxes1.T.contiguous()[:, :, None]  # each (N, 1)
    x1b, y1b, x2b, y2b = boxes2.T.contiguous()[:, None, :]  # each (1, M)
    # Sides of the overlap (right minus left edge), zero when the boxes are apart.
    w = _upcast(torch.min(x2a, x2b) - torch.max(x1a, x1b)).clamp(min=0)  # (N, M)
    h = _upcast(torch.min(y2a, y2b) - torch.max(y1a, y1b)).clamp(min=0)  # (N, M)
    inter = w * h
    union = _area(boxes1)[:, None] + _area(boxes2)[None, :] - inter  # (N, M)
    return inter, union


def box_area(boxes: Tensor) -> Tensor:
    """Area of each box.

    Args:
        boxes (Tensor[..., 4]): xyxy boxes.

    Returns:
        Tensor[...]: ``(x2 - x1) * (y2 - y1)`` for every box.
    """
    check_boxes(boxes, "boxes", shape="..., 4")
    return _area(boxes)


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union (Jaccard index) of every pair of boxes.

    Args:
        boxes1 (Tensor[N, 4]): xyxy boxes with x1 <= x2, y1 <= y2.
        boxes2 (Tensor[M, 4]): xyxy boxes with x1 <= x2, y1 <= y2.

    Returns:
        Tensor[N, M]: ``iou[i, j] = |b1_i ∩ b2_j| / |b1_i ∪ b2_j|`` in [0, 1]
        (NaN for two zero-area boxes, whose union is empty).
    """
    for boxes, name in ((boxes1, "boxes1"), (boxes2, "boxes2")):
        check_boxes(boxes, name)
        check_finite(boxes, name)
        check_ordered(boxes, name)
    inter, union = _inter_union(boxes1, boxes2)
    return inter / union


def paired_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU of corresponding boxes, broadcast over the leading dimensions (the diagonal of `box_iou`).

    Args:
        boxes1 (Tensor[..., 4]): xyxy boxes.
        boxes2 (Tensor[..., 4]): xyxy boxes, broadcastable with `boxes1`.

    Returns:
        Tensor[...]: the IoU of each pair, in [0, 1].
    """
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])             # (..., 2)
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])             # (..., 2)
    inter = (rb - lt).clamp(min=0).prod(-1)                          # (...)
    area1 = (boxes1[..., 2:] - boxes1[..., :2]).clamp(min=0).prod(-1)
    area2 = (boxes2[..., 2:] - boxes2[..., :2]).clamp(min=0).prod(-1)
    return inter / (area1 + area2 - inter).clamp(min=1e-9)


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    r"""Generalized IoU (Rezatofighi et al., 2019) of every pair of boxes.

    ``GIoU = IoU - |C \ (A ∪ B)| / |C|`` where C is the smallest box enclosing A and B. Unlike
    IoU it still says how far apart two disjoint boxes are, so it can serve as a loss.

    Args:
        boxes1 (Tensor[N, 4]): xyxy boxes with x1 <= x2, y1 <= y2.
        boxes2 (Tensor[M, 4]): xyxy boxes with x1 <= x2, y1 <= y2.

    Returns:
        Tensor[N, M]: values in [-1, 1], never above the IoU of the same pair.
    """
    for boxes, name in ((boxes1, "boxes1"), (boxes2, "boxes2")):
        check_boxes(boxes, name)
        check_finite(boxes, name)
        check_ordered(boxes, name)
    inter, union = _inter_union(boxes1, boxes2)
    lt = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])  # (N, M, 2) enclosing box C
    rb = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = _upcast(rb - lt).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]  # (N, M) area of C
    return inter / union - (enclosing - union) / enclosing


# ------------------------------------------------------------------ formats and clipping


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes between "xyxy" (corners), "xywh" (top-left, size), "cxcywh" (centre, size).

    Args:
        boxes (Tensor[..., 4]): boxes in `in_fmt`.
        in_fmt (str): format of `boxes`, one of ``BOX_FORMATS``.
        out_fmt (str): format wanted, one of ``BOX_FORMATS``.

    Returns:
        Tensor[..., 4]: the same boxes in `out_fmt` (a copy, even when the formats match).
    """
    _check_format(in_fmt, "in_fmt")
    _check_format(out_fmt, "out_fmt")
    check_boxes(boxes, "boxes", shape="..., 4", what="boxes")
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":  # every conversion goes through xyxy
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return torch.stack((a, b, c, d), dim=-1)


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clamp box corners into an image: x into [0, width], y into [0, height].

    Args:
        boxes (Tensor[..., 4]): xyxy boxes.
        size (tuple[int, int]): the image's ``(height, width)``.

    Returns:
        Tensor[..., 4]: the clipped boxes (boxes wholly outside become zero-width or -height).
    """
    check_boxes(boxes, "boxes", shape="..., 4")
    if not isinstance(size, (tuple, list, torch.Size)) or len(size) != 2 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < math.inf for v in size):
        raise ValueError(f"size must be the image's (height, width), two numbers >= 0, got {size!r}")
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)  # (..., 2) x1, x2
    y = boxes[..., 1::2].clamp(min=0, max=height)  # (..., 2) y1, y2
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)  # interleave back to x1 y1 x2 y2


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices of the boxes whose width and height are both at least `min_size`.

    Args:
        boxes (Tensor[N, 4]): xyxy boxes.
        min_size (float): smallest side length kept.

    Returns:
        Tensor[K]: int64 indices into `boxes`, increasing.
    """
    check_boxes(boxes, "boxes")
    if isinstance(min_size, bool) or not isinstance(min_size, (int, float)) or not 0 <= min_size < math.inf:
        raise ValueError(f"min_size must be a finite number >= 0, got {min_size!r}")
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.where((widths >= min_size) & (heights >= min_size))[0]


# ------------------------------------------------------------- non-maximum suppression


def _below(threshold: float, dtype: torch.dtype) -> float:
    """The largest number of `dtype` not above `threshold`.

    torchvision's kernel tests ``iou > threshold`` in double precision. PyTorch compares a
    float32 tensor with a Python float in float32, rounding 0.3 up to 0.30000001 and so
    keeping a box whose IoU is exactly float32(0.3). Comparing with this value instead gives
    the double-precision answer for every `dtype` number.
    """
    exact = torch.tensor(float(threshold), dtype=torch.float64)
    rounded = exact.to(dtype)
    if rounded.double() > exact:
        rounded = torch.nextafter(rounded, torch.tensor(-math.inf, dtype=dtype))
    return rounded.item()


def _greedy(overlaps: Tensor) -> Tensor:
    """Greedy suppression among A score-sorted boxes, solved as a fixed point.

    Box j is kept iff no *kept* earlier box overlaps it. Each pass settles every box whose
    overlapping predecessors are all settled (the first unsettled box always is), so the
    loop ends after at most A passes; in practice after one to three, the length of the
    longest chain of boxes suppressing one another.

    Args:
        overlaps (Tensor[A, A]): bool, ``overlaps[i, j]`` = i < j and IoU(i, j) > threshold.

    Returns:
        Tensor[A]: bool, which boxes are kept.
    """
    kept = torch.zeros(len(overlaps), dtype=torch.bool, device=overlaps.device)
    suppressed = torch.zeros_like(kept)
    while not bool((kept | suppressed).all()):
        suppressed = suppressed | (overlaps & kept[:, None]).any(dim=0)
        contested = (overlaps & ~suppressed[:, None]).any(dim=0)  # a live predecessor overlaps
        kept = kept | (~suppressed & ~contested)
    return kept


def _check_nms_inputs(boxes: Tensor, scores: Tensor, iou_threshold: float) -> float:
    """Raise unless `nms` got xyxy boxes, one non-NaN score each and a threshold in [0, 1]."""
    check_boxes(boxes, "boxes")
    check_finite(boxes, "boxes")
    _check_vector(scores, "scores", len(boxes))
    if bool(scores.isnan().any()):
        raise ValueError(f"scores must not be NaN, got {int(scores.isnan().sum())} NaN score(s)")
    return check_threshold(iou_threshold, "iou_threshold")


def _nms_block(block: Tensor, kept: Tensor, threshold: float) -> Tensor:
    """Which boxes of one block of score-sorted boxes greedy NMS keeps.

    (1) One [B, K] IoU matrix with the K boxes kept before the block removes the boxes they
    suppress (the inner loop of torchvision's C++ kernel, vectorized); (2) the A survivors
    settle among themselves with `_greedy` on their [A, A] IoU matrix.

    Args:
        block (Tensor[B, 4]): xyxy boxes, best score first.
        kept (Tensor[K, 4]): the boxes kept among all better-scored boxes.
        threshold (float): a box is dropped when its IoU with a kept box is above this.

    Returns:
        Tensor[B]: bool, which boxes of the block are kept.
    """
    inter, union = _inter_union(block, kept)  # (B, K)
    suppressed = (inter / union > threshold).any(dim=1)  # (B,)
    alive = (~suppressed).nonzero()[:, 0]  # (A,) positions in the block still in play
    inter, union = _inter_union(block[alive], block[alive])  # (A, A)
    overlaps = (inter / union > threshold).triu(diagonal=1)  # only earlier suppresses later
    keep = torch.zeros_like(suppressed)  # (B,)
    keep[alive] = _greedy(overlaps)
    return keep


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression: keep the best box and drop those overlapping it, repeatedly.

    Going down the boxes by decreasing score (equal scores in input order, as torchvision's
    stable sort), a box is kept unless a kept box has IoU > `iou_threshold` with it. The
    result equals ``torchvision.ops.nms`` (CPU) index for index, on every device.

    Greedy NMS is sequential: box j survives only if no *surviving* earlier box overlaps
    it. We follow that order in blocks of 256 sorted boxes (`_nms_block`), so the Python
    loop runs over N / 256 blocks, never over boxes. One N x N IoU matrix would be shorter,
    but costs O(N^2) memory (25 M entries for 5,000 boxes), mostly for suppressed boxes.

    Args:
        boxes (Tensor[N, 4]): xyxy boxes.
        scores (Tensor[N]): one score per box (floating point).
        iou_threshold (float): a box is dropped when its IoU with a kept box is strictly
            greater than this (0 drops any overlap, 1 drops nothing).

    Returns:
        Tensor[K]: int64 indices of the kept boxes, by decreasing score.
    """
    iou_threshold = _check_nms_inputs(boxes, scores, iou_threshold)
    order = torch.sort(scores, descending=True, stable=True).indices  # (N,)
    boxes = boxes[order]  # (N, 4) best first
    threshold = _below(iou_threshold, _upcast(boxes).dtype)
    keep = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)  # (N,)
    for start in range(0, len(boxes), _NMS_BLOCK):
        block = boxes[start : start + _NMS_BLOCK]  # (B, 4)
        keep[start : start + len(block)] = _nms_block(block, boxes[:start][keep[:start]], threshold)
    return order[keep]


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category: boxes of different categories never suppress each other.

    The trick (torchvision's): shift each category's boxes by ``category x (largest
    coordinate + 1)``, so boxes of different categories cannot overlap (for coordinates
    >= 0), then run one `nms` over all of them.

    Args:
        boxes (Tensor[N, 4]): xyxy boxes.
        scores (Tensor[N]): one score per box.
        idxs (Tensor[N]): integer category of each box.
        iou_threshold (float): as in `nms`.

    Returns:
        Tensor[K]: int64 indices of the kept boxes, by decreasing score.
    """
    check_boxes(boxes, "boxes")
    check_finite(boxes, "boxes")
    _check_vector(scores, "scores", len(boxes))
    _check_vector(idxs, "idxs", len(boxes), integer=True)
    iou_threshold = check_threshold(iou_threshold, "iou_threshold")
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    boxes = boxes - boxes.min()  # IoU ignores a shift; now coordinates are >= 0, as the trick needs
    offsets = idxs.to(boxes) * (boxes.max() + 1)  # (N,)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


# ----------------------------------------------------------------------------- box coder


def _size_and_centre(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    widths = boxes[:, 2] - boxes[:, 0]  # (N,)
    heights = boxes[:, 3] - boxes[:, 1]
    return widths, heights, boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights


@dataclass(frozen=True)
class BoxCoder:
    """Encode boxes as deltas from reference boxes (anchors, proposals) and back.

    The R-CNN parametrisation: with proposal P (centre px, py; size pw, ph) and target G,
    ``dx = wx (gx - px) / pw``, ``dy = wy (gy - py) / ph``, ``dw = ww log(gw / pw)``,
    ``dh = wh log(gh / ph)``. Deltas are invariant to shifting and scaling the image, which
    is what makes them learnable by a convolutional head.

    Args:
        weights: ``(wx, wy, ww, wh)``; Faster R-CNN's second stage uses (10, 10, 5, 5).
        bbox_xform_clip: largest ``dw`` / ``dh`` decoded, so ``exp`` cannot overflow.
    """

    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    bbox_xform_clip: float = math.log(1000.0 / 16)

    def __post_init__(self):
        w = self.weights
        if not isinstance(w, (tuple, list)) or len(w) != 4 or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < math.inf for v in w):
            raise ValueError(f"weights must be four numbers (wx, wy, ww, wh), each > 0, got {w!r}")
        c = self.bbox_xform_clip
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0:
            raise ValueError(f"bbox_xform_clip must be a positive number, got {c!r}")

    def encode(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """Deltas that move each proposal onto its reference (ground-truth) box.

        Args:
            reference_boxes (Tensor[N, 4]): xyxy target boxes.
            proposals (Tensor[N, 4]): xyxy boxes they are encoded against (positive size).

        Returns:
            Tensor[N, 4]: ``(dx, dy, dw, dh)`` per pair.
        """
        check_boxes(reference_boxes, "reference_boxes")
        check_boxes(proposals, "proposals")
        if len(reference_boxes) != len(proposals):
            raise ValueError(
                f"reference_boxes and proposals must pair up, got {len(reference_boxes)} "
                f"and {len(proposals)} boxes"
            )
        wx, wy, ww, wh = torch.as_tensor(
            self.weights, dtype=reference_boxes.dtype, device=reference_boxes.device
        )
        pw, ph, px, py = _size_and_centre(proposals)  # each (N,)
        gw, gh, gx, gy = _size_and_centre(reference_boxes)
        dx = wx * (gx - px) / pw
        dy = wy * (gy - py) / ph
        dw = ww * torch.log(gw / pw)
        dh = wh * torch.log(gh / ph)
        return torch.stack((dx, dy, dw, dh), dim=1)  # (N, 4)

    def decode(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Apply deltas to boxes; the inverse of `encode`.

        Args:
            rel_codes (Tensor[N, 4] or Tensor[N, 4 * C]): deltas, one set per class if C > 1.
            boxes (Tensor[N, 4]): xyxy boxes the deltas are relative to.

        Returns:
            Tensor: xyxy boxes, the shape of `rel_codes`.
        """
        if not isinstance(rel_codes, Tensor) or rel_codes.dim() != 2 or rel_codes.shape[1] % 4:
            got = tuple(rel_codes.shape) if isinstance(rel_codes, Tensor) else type(rel_codes)
            raise ValueError(f"rel_codes must be a Tensor[N, 4] or Tensor[N, 4 * C], got {got}")
        if not rel_codes.is_floating_point():
            raise TypeError(f"rel_codes must have a floating point dtype, got {rel_codes.dtype}")
        check_boxes(boxes, "boxes")
        if len(rel_codes) != len(boxes):
            raise ValueError(
                f"rel_codes and boxes must pair up, got {len(rel_codes)} and {len(boxes)} rows"
            )
        n, classes = rel_codes.shape[0], rel_codes.shape[1] // 4
        widths, heights, cx, cy = (t[:, None] for t in _size_and_centre(boxes.to(rel_codes.dtype)))
        codes = rel_codes.reshape(n, classes, 4)  # (N, C, 4)
        wx, wy, ww, wh = self.weights
        dx, dy = codes[..., 0] / wx, codes[..., 1] / wy  # (N, C)
        dw = (codes[..., 2] / ww).clamp(max=self.bbox_xform_clip)
        dh = (codes[..., 3] / wh).clamp(max=self.bbox_xform_clip)
        ctr_x, ctr_y = dx * widths + cx, dy * heights + cy  # (N, C) decoded centres
        half_w, half_h = 0.5 * (torch.exp(dw) * widths), 0.5 * (torch.exp(dh) * heights)
        corners = (ctr_x - half_w, ctr_y - half_h, ctr_x + half_w, ctr_y + half_h)
        return torch.stack(corners, dim=2).reshape(rel_codes.shape)  # (N, C, 4) -> (N, 4 * C)

    # torchvision's names for the single-tensor versions, so either coder can be swapped in.
    encode_single = encode
    decode_single = decode
