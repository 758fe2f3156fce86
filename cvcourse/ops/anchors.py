"""Anchors and their labels: the parts of a Region Proposal Network (RPN) that are not learned.

An RPN places ``A`` reference boxes (anchors: a few sizes x aspect ratios) at every cell of
a feature map, and for each one predicts an objectness score and the deltas (see
``BoxCoder``) that move it onto an object. To train it, every anchor is labelled by its
best IoU with the ground truth: positive (>= 0.7), negative (< 0.3) or ignored, and a
small balanced batch of positives and negatives is drawn per image.

``AnchorGenerator``, ``Matcher`` and ``BalancedPositiveNegativeSampler`` mirror their
namesakes in ``torchvision.models.detection`` (same arguments, same results, checked in
``tests/test_anchors.py``), so either can be plugged into the other's detector.
"""

from __future__ import annotations

from typing import List, NamedTuple, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .boxes import check_boxes, box_iou

__all__ = [
    "AnchorGenerator",
    "AnchorLabels",
    "BalancedPositiveNegativeSampler",
    "Matcher",
    "anchors_for",
    "cell_anchors",
    "label_anchors",
]

IntPair = Union[int, Tuple[int, int]]


def _pair(value, name: str) -> Tuple[int, int]:
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


def _shift(base: Tensor, grid_size: Tuple[int, int], stride: Tuple[int, int]) -> Tensor:
    """The cell anchors [A, 4] copied to every cell: [h * w * A, 4], cells in row-major order."""
    (h, w), (sy, sx) = grid_size, stride
    ys = torch.arange(h, dtype=base.dtype, device=base.device) * sy  # (h,) cell top-left corners
    xs = torch.arange(w, dtype=base.dtype, device=base.device) * sx  # (w,)
    y, x = torch.meshgrid(ys, xs, indexing="ij")  # (h, w) each
    shifts = torch.stack((x, y, x, y), dim=-1).reshape(-1, 1, 4)  # (h * w, 1, 4)
    return (shifts + base[None]).reshape(-1, 4)  # (h * w * A, 4)


def anchors_for(
    feature_shape: Tuple[int, int],
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
        sizes, ratios: as in `cell_anchors`.
        device, dtype: of the result.

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

    def num_anchors_per_location(self) -> List[int]:
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def grid_anchors(
        self, grid_sizes: Sequence[Tuple[int, int]], strides: Sequence[Tuple[int, int]]
    ) -> List[Tensor]:
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

    def forward(self, image_list, feature_maps: List[Tensor]) -> List[Tensor]:
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


# ------------------------------------------------------------------------------ matching


class Matcher:
    """Match each prediction (anchor, proposal) to its best ground truth, by quality (IoU).

    Same semantics as ``torchvision.models.detection._utils.Matcher``: a prediction whose
    best quality is ``>= high_threshold`` gets that ground truth's index; below
    ``low_threshold`` it gets ``BELOW_LOW_THRESHOLD`` (-1); in between ``BETWEEN_THRESHOLDS``
    (-2). With ``allow_low_quality_matches`` every ground truth also keeps the predictions
    that overlap it best, ties included, whatever their quality (each such prediction is
    given its own best ground truth). Note that a ground truth overlapping no prediction
    at all (best quality 0) then rescues every prediction, as in torchvision.

    Unlike torchvision, which raises, an image without ground truth gives all -1 (every
    prediction is background) and no predictions give an empty result.
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(
        self, high_threshold: float, low_threshold: float, allow_low_quality_matches=False
    ):
        if low_threshold > high_threshold:
            got = f"{low_threshold} > {high_threshold}"
            raise ValueError(f"low_threshold must be <= high_threshold, got {got}")
        self.high_threshold, self.low_threshold = high_threshold, low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        """Args: match_quality_matrix (Tensor[M, N]): quality of (ground truth m, prediction n).

        Returns:
            Tensor[N]: int64, the matched ground truth in [0, M) or -1 / -2.
        """
        quality = match_quality_matrix
        if not isinstance(quality, Tensor) or quality.dim() != 2:
            got = tuple(quality.shape) if isinstance(quality, Tensor) else type(quality).__name__
            raise ValueError(f"match_quality_matrix must be a Tensor[M, N], got {got}")
        if quality.numel() == 0:  # no ground truth (or no predictions): all background
            n = quality.shape[1]
            return torch.full(
                (n,), self.BELOW_LOW_THRESHOLD, dtype=torch.long, device=quality.device
            )
        best_quality, matches = quality.max(dim=0)  # (N,) best ground truth of each prediction
        best_match = matches.clone()
        between = (best_quality >= self.low_threshold) & (best_quality < self.high_threshold)
        matches[best_quality < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        matches[between] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            # Predictions that are the best (or tied best) for some ground truth keep their match.
            best_for_gt = quality == quality.max(dim=1, keepdim=True).values  # (M, N)
            rescued = best_for_gt.any(dim=0)  # (N,)
            matches[rescued] = best_match[rescued]
        return matches


class BalancedPositiveNegativeSampler:
    """Draw a training batch of positives and negatives per image, like torchvision's sampler.

    Up to ``batch_size_per_image * positive_fraction`` positives (labels >= 1) are drawn at
    random, and negatives (labels == 0) fill the rest of the batch when there are enough;
    labels -1 (ignored) are never drawn. Random draws use ``torch.randperm``, in the same
    order as torchvision, so the same seed draws the same batch.

    Args:
        batch_size_per_image (int): anchors (or proposals) drawn per image.
        positive_fraction (float): largest share of positives in the batch, in [0, 1].
    """

    def __init__(self, batch_size_per_image: int, positive_fraction: float):
        if batch_size_per_image < 0 or not 0 <= positive_fraction <= 1:
            raise ValueError(
                "batch_size_per_image must be >= 0 and positive_fraction in [0, 1], "
                f"got {batch_size_per_image} and {positive_fraction}"
            )
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction

    def __call__(self, matched_idxs: List[Tensor]) -> Tuple[List[Tensor], List[Tensor]]:
        """Args: matched_idxs (list of Tensor[N_i]): per image, labels -1, 0 or >= 1.

        Returns:
            (pos_idx, neg_idx): per image, uint8 masks Tensor[N_i] of the drawn positives and
            negatives.
        """
        pos_masks, neg_masks = [], []
        for labels in matched_idxs:  # a loop over the images of a batch
            positive = torch.where(labels >= 1)[0]
            negative = torch.where(labels == 0)[0]
            num_pos = min(positive.numel(), int(self.batch_size_per_image * self.positive_fraction))
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            chosen_pos = positive[torch.randperm(len(positive), device=labels.device)[:num_pos]]
            chosen_neg = negative[torch.randperm(len(negative), device=labels.device)[:num_neg]]
            for chosen, masks in ((chosen_pos, pos_masks), (chosen_neg, neg_masks)):
                mask = torch.zeros_like(labels, dtype=torch.uint8)
                mask[chosen] = 1
                masks.append(mask)
        return pos_masks, neg_masks


class AnchorLabels(NamedTuple):
    labels: Tensor  # (A,) int64: 1 positive, 0 negative, -1 ignored
    matched_gt: Tensor  # (A,) int64: index of the matched ground-truth box for positives, else -1
    iou: Tensor  # (A,) best IoU of each anchor with any ground truth (0 without ground truth)


def label_anchors(
    anchors: Tensor,
    gt_boxes: Tensor,
    high: float = 0.7,
    low: float = 0.3,
    allow_low_quality_matches: bool = True,
) -> AnchorLabels:
    """Label anchors for RPN training (Faster R-CNN's rule, as torchvision's RPN applies it).

    An anchor is positive when its best IoU with a ground-truth box is >= `high`, or when it
    is (one of) the best anchors for some ground truth; negative when its best IoU is < `low`;
    ignored otherwise. Without ground truth every anchor is negative.

    Args:
        anchors (Tensor[A, 4]): xyxy anchors.
        gt_boxes (Tensor[G, 4]): xyxy ground-truth boxes (G may be 0).
        high, low (float): IoU thresholds.
        allow_low_quality_matches (bool): also make each ground truth's best anchors positive.

    Returns:
        AnchorLabels: ``labels``, ``matched_gt`` and the best ``iou``, each ``[A]``.
    """
    check_boxes(anchors, "anchors")
    check_boxes(gt_boxes, "gt_boxes")
    iou = box_iou(gt_boxes, anchors)  # (G, A)
    matches = Matcher(high, low, allow_low_quality_matches)(iou)  # (A,)
    labels = torch.full_like(matches, -1)  # (A,) ignored unless decided below
    labels[matches >= 0] = 1
    labels[matches == Matcher.BELOW_LOW_THRESHOLD] = 0
    best_iou = iou.max(dim=0).values if len(gt_boxes) else iou.new_zeros(len(anchors))
    return AnchorLabels(labels, matches.clamp(min=-1), best_iou)
