"""Matching predictions to ground truth by IoU: the training labels of anchors and proposals.

Every anchor (RPN) or proposal (RoI heads) is labelled by its best IoU with the ground
truth: positive (>= a high threshold), negative (< a low threshold) or ignored, and a small
balanced batch of positives and negatives is drawn per image. ``Matcher`` and
``BalancedPositiveNegativeSampler`` mirror their namesakes in
``torchvision.models.detection._utils`` (same arguments, same results, checked in
``tests/test_anchors.py``); ``label_anchors`` applies Faster R-CNN's rule to anchors.
DETR's one-to-one matching is in ``hungarian.py``.

Taught in book/det_rpn.ipynb.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .boxes import box_iou, check_boxes

__all__ = ["AnchorLabels", "BalancedPositiveNegativeSampler", "Matcher", "label_anchors"]


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
        """Match every prediction to a ground truth, or mark it below / between the thresholds.

        Args:
            match_quality_matrix (Tensor[M, N]): quality of (ground truth m, prediction n).

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

    def __call__(self, matched_idxs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Draw each image's positives and negatives.

        Args:
            matched_idxs (list of Tensor[N_i]): per image, labels -1, 0 or >= 1.

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
    """The training labels of anchors, as `label_anchors` returns them."""

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
        high (float): IoU at and above which an anchor is positive.
        low (float): IoU below which an anchor is negative.
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
