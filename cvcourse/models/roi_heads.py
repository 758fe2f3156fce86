"""The second stage of Faster R-CNN: classify each proposal and refine its box.

Each proposal is cut out of the *shared* feature map with RoI Align (or RoI Pool, to
compare) into a fixed 7x7 grid, flattened, and passed through two fully connected layers;
then one linear layer scores C + 1 classes (0 = background) and another predicts one set of
box deltas per class. Training matches proposals (plus the ground-truth boxes themselves)
to the ground truth at IoU 0.5, samples 128 per image (at most a quarter positive) and
sums cross-entropy and smooth-L1 (beta 1/9, on the true class's deltas only), as
torchvision's ``fastrcnn_loss``. Inference: softmax, decode per class, clip, threshold,
drop small boxes, per-class NMS, keep the best detections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.boxes import BoxCoder, batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from ..ops.matching import BalancedPositiveNegativeSampler, Matcher
from ..ops.roi import roi_align, roi_pool

__all__ = ["RoIHeads", "TwoMLPHead", "fastrcnn_loss", "postprocess_detections",
           "proposal_targets", "class_scores_and_boxes", "class_candidates", "above_score_threshold",
           "nms_per_class"]


class TwoMLPHead(nn.Module):
    """Flatten the pooled RoI features and apply two FC layers with ReLU."""

    def __init__(self, in_features: int, representation_size: int):
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        """Flattened RoI features ``[K, C, 7, 7]`` to representations ``[K, R]``."""
        return F.relu(self.fc7(F.relu(self.fc6(x.flatten(1)))))  # (K, R)


def fastrcnn_loss(class_logits: Tensor, box_deltas: Tensor, labels: Tensor,
                  regression_targets: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy over all sampled RoIs; smooth-L1 on the deltas of each positive's class.

    Args:
        class_logits: [K, C+1] scores of the sampled RoIs.
        box_deltas: [K, 4(C+1)] per-class deltas.
        labels: [K] classes (0 background).
        regression_targets: [K, 4] deltas to each RoI's matched box.
    """
    classification = F.cross_entropy(class_logits, labels)
    pos = torch.where(labels > 0)[0]
    deltas = box_deltas.reshape(len(box_deltas), -1, 4)[pos, labels[pos]]  # (P, 4)
    box = F.smooth_l1_loss(deltas, regression_targets[pos], beta=1 / 9,
                           reduction="sum") / max(labels.numel(), 1)
    return classification, box


def proposal_targets(proposals: list[Tensor], targets: list[dict[str, Tensor]], matcher: Matcher,
                     box_coder: BoxCoder) -> tuple[list[Tensor], list[Tensor]]:
    """Label each proposal by its best ground truth and encode the box it should move to.

    Args:
        proposals: per image Tensor[K, 4] xyxy.
        targets: per image {"boxes" [G, 4], "labels" [G]}.
        matcher: e.g. ``Matcher(0.5, 0.5)``: IoU >= 0.5 is that object, below is background.
        box_coder: encodes each proposal's deltas to its matched box.

    Returns:
        (labels, regression_targets): per image int64 [K] (0 background, -1 ignored by the
        matcher's middle band) and [K, 4] deltas to the matched box (zeros for background).
    """
    labels, deltas = [], []
    for p, t in zip(proposals, targets):
        gt = t["boxes"].to(p)
        matches = matcher(box_iou(gt, p))                               # (K,) gt index, -1 or -2
        if len(gt):
            lab = t["labels"].to(p.device)[matches.clamp(min=0)]
            d = box_coder.encode(gt[matches.clamp(min=0)], p)
        else:
            lab, d = torch.zeros_like(matches), torch.zeros_like(p)
        lab = torch.where(matches >= 0, lab, torch.zeros_like(lab))
        lab[matches == Matcher.BETWEEN_THRESHOLDS] = -1
        labels.append(lab)
        deltas.append(torch.where(lab[:, None] > 0, d, torch.zeros_like(d)))  # (K, 4)
    return labels, deltas


Detections = dict[str, Tensor]  # {"boxes" [D, 4] xyxy, "scores" [D], "labels" [D]}


def class_scores_and_boxes(class_logits: Tensor, box_deltas: Tensor, proposals: Tensor,
                           image_size: tuple[int, int], box_coder: BoxCoder) -> tuple[Tensor, Tensor]:
    """Step 1 of post-processing: class probabilities and one clipped box per class and RoI.

    Args:
        class_logits (Tensor[K, C+1]): the classifier's scores (column 0 is background).
        box_deltas (Tensor[K, 4(C+1)]): one set of deltas per class.
        proposals (Tensor[K, 4]): the RoIs, xyxy (all images concatenated).
        image_size ((H, W)): boxes are clipped to it.
        box_coder (BoxCoder): decodes the deltas.

    Returns:
        (scores, boxes): softmax probabilities ``[K, C+1]`` and boxes ``[K, C+1, 4]``.
    """
    num_classes = class_logits.shape[1]
    boxes = box_coder.decode(box_deltas, proposals).view(-1, num_classes, 4)
    boxes = clip_boxes_to_image(boxes, image_size)                  # (K, C+1, 4)
    return class_logits.softmax(-1), boxes                          # (K, C+1), (K, C+1, 4)


def class_candidates(scores: Tensor, boxes: Tensor) -> Detections:
    """Step 2: every RoI x every object class as one candidate detection (background dropped).

    Args:
        scores (Tensor[K, C+1]): class probabilities of one image's RoIs.
        boxes (Tensor[K, C+1, 4]): the box of each class.

    Returns:
        Detections: ``K x C`` candidates, labels in 1..C.
    """
    labels = torch.arange(scores.shape[1], device=scores.device).expand_as(scores)  # (K, C+1)
    return {"boxes": boxes[:, 1:].reshape(-1, 4),
            "scores": scores[:, 1:].reshape(-1),
            "labels": labels[:, 1:].reshape(-1)}


def above_score_threshold(detections: Detections, score_thresh: float = 0.05,
                          min_size: float = 1e-2) -> Detections:
    """Step 3: keep the candidates scored above `score_thresh` whose box is not tiny.

    Args:
        detections (Detections): the candidates.
        score_thresh (float): keep scores strictly above it.
        min_size (float): keep boxes at least this wide and tall (pixels).

    Returns:
        Detections: the kept candidates, in their order.
    """
    keep = torch.where(detections["scores"] > score_thresh)[0]
    kept = {k: v[keep] for k, v in detections.items()}
    keep = remove_small_boxes(kept["boxes"], min_size)
    return {k: v[keep] for k, v in kept.items()}


def nms_per_class(detections: Detections, nms_thresh: float = 0.5,
                  detections_per_img: int = 100) -> Detections:
    """Step 4: non-maximum suppression within each class, then the best `detections_per_img`.

    Args:
        detections (Detections): one image's detections.
        nms_thresh (float): IoU above which the lower-scored box of a class is dropped.
        detections_per_img (int): how many detections to keep at most.

    Returns:
        Detections: the kept detections, best score first.
    """
    keep = batched_nms(detections["boxes"], detections["scores"], detections["labels"],
                       nms_thresh)[:detections_per_img]
    return {k: v[keep] for k, v in detections.items()}


def postprocess_detections(class_logits: Tensor, box_deltas: Tensor, proposals: list[Tensor],
                           image_size: tuple[int, int], box_coder: BoxCoder,
                           score_thresh: float = 0.05, nms_thresh: float = 0.5,
                           detections_per_img: int = 100,
                           min_size: float = 1e-2) -> list[Detections]:
    """Scores and class-specific boxes of every RoI -> per image {"boxes", "scores", "labels"}.

    The four named steps in order: softmax and decode each class's deltas, clip
    (`class_scores_and_boxes`); one candidate per RoI and object class (`class_candidates`);
    drop scores <= `score_thresh` and tiny boxes (`above_score_threshold`); NMS per class and
    keep the best `detections_per_img` (`nms_per_class`). Background (class 0) is never output.

    Args:
        class_logits (Tensor[K, C+1]): classifier scores of all images' RoIs.
        box_deltas (Tensor[K, 4(C+1)]): per-class box deltas.
        proposals (list[Tensor[K_i, 4]]): each image's RoIs (``sum K_i = K``).
        image_size ((H, W)): boxes are clipped to it.
        box_coder (BoxCoder): decodes the deltas.
        score_thresh (float): keep scores strictly above it.
        nms_thresh (float): per-class NMS IoU threshold.
        detections_per_img (int): most detections kept per image.
        min_size (float): smallest box side kept, in pixels.

    Returns:
        list[dict[str, Tensor]]: per image ``"boxes"`` ``[D, 4]``, ``"scores"`` ``[D]``,
        ``"labels"`` ``[D]`` in 1..C.
    """
    scores, boxes = class_scores_and_boxes(class_logits, box_deltas, torch.cat(proposals),
                                           image_size, box_coder)
    results, counts = [], [len(p) for p in proposals]
    for s, b in zip(scores.split(counts), boxes.split(counts)):     # a loop over images
        candidates = class_candidates(s, b)
        kept = above_score_threshold(candidates, score_thresh, min_size)
        results.append(nms_per_class(kept, nms_thresh, detections_per_img))
    return results


class RoIHeads(nn.Module):
    """RoI pooling + box head + predictor, with training targets and postprocessing.

    Args:
        in_channels: channels of the feature map; stride: image pixels per feature cell.
        num_classes: object classes (background excluded; the predictor has num_classes + 1).
        pooler: ``"align"`` (RoI Align, aligned=True) or ``"pool"`` (RoI Pool).
        output_size: pooled grid (7); representation_size: the two FC layers' width.
    """

    def __init__(self, in_channels: int, stride: int, num_classes: int = 3, pooler: str = "align",
                 output_size: int = 7, representation_size: int = 256,
                 fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.5,
                 batch_size_per_image: int = 128, positive_fraction: float = 0.25,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_img: int = 100, min_size: float = 1e-2):
        super().__init__()
        if pooler not in ("align", "pool"):
            raise ValueError(f"pooler must be 'align' or 'pool', got {pooler!r}")
        self.pooler, self.output_size, self.spatial_scale = pooler, output_size, 1.0 / stride
        self.box_head = TwoMLPHead(in_channels * output_size**2, representation_size)
        self.cls_score = nn.Linear(representation_size, num_classes + 1)
        self.bbox_pred = nn.Linear(representation_size, 4 * (num_classes + 1))
        self.box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=False)
        self.sampler = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img, self.min_size = detections_per_img, min_size

    def pool(self, features: Tensor, proposals: list[Tensor]) -> Tensor:
        """Fixed-size features for every proposal: [sum K_i, C, 7, 7]."""
        if self.pooler == "align":
            return roi_align(features, proposals, self.output_size, self.spatial_scale,
                             sampling_ratio=2, aligned=True)
        return roi_pool(features, proposals, self.output_size, self.spatial_scale)

    def select_training_samples(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]):
        """Append the gt boxes, match at IoU 0.5, sample; per image proposals, labels, deltas."""
        proposals = [torch.cat([p, t["boxes"].to(p)]) for p, t in zip(proposals, targets)]
        labels, deltas = proposal_targets(proposals, targets, self.matcher, self.box_coder)
        pos, neg = self.sampler(labels)
        keep = [torch.where(p.bool() | n.bool())[0] for p, n in zip(pos, neg)]
        return ([p[k] for p, k in zip(proposals, keep)], [lab[k] for lab, k in zip(labels, keep)],
                [d[k] for d, k in zip(deltas, keep)])

    def postprocess(self, class_logits: Tensor, box_deltas: Tensor, proposals: list[Tensor],
                    image_size: tuple[int, int]) -> list[dict[str, Tensor]]:
        """`postprocess_detections` with this head's box coder and thresholds."""
        return postprocess_detections(class_logits, box_deltas, proposals, image_size,
                                      self.box_coder, self.score_thresh, self.nms_thresh,
                                      self.detections_per_img, self.min_size)

    def forward(self, features: Tensor, proposals: list[Tensor], image_size: tuple[int, int],
                targets: list[dict[str, Tensor]] | None = None):
        """Returns (detections, losses): detections in eval mode, losses in training."""
        if self.training:
            proposals, labels, regression_targets = self.select_training_samples(proposals, targets)
        x = self.box_head(self.pool(features, proposals))           # (K, R)
        class_logits, box_deltas = self.cls_score(x), self.bbox_pred(x)  # (K, C+1), (K, 4(C+1))
        if self.training:
            cls, box = fastrcnn_loss(class_logits, box_deltas, torch.cat(labels),
                                     torch.cat(regression_targets))
            return [], {"loss_classifier": cls, "loss_box_reg": box}
        return self.postprocess(class_logits, box_deltas, proposals, image_size), {}
