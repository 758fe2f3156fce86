"""Hungarian matching: DETR's one-to-one assignment of predictions to ground-truth objects.

A set predictor outputs a fixed number Q of (class, box) guesses per image, in no particular
order. To train it, each of the N <= Q true objects is paired with exactly one guess: the
pairing (a permutation) that minimises the total matching cost

    C[q, j] = -w_class p_q(c_j) + w_bbox ||b_q - b_j||_1 - w_giou GIoU(b_q, b_j)

over all one-to-one assignments, found by the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``, O(Q^3)) instead of trying all Q!/(Q-N)!
assignments. Unmatched guesses must predict "no object". Because the assignment is
one-to-one, two guesses cannot both be rewarded for the same object, which is why DETR
needs no non-maximum suppression.

The interface is DETR's (Carion et al., 2020, ``models/matcher.py``):
``matcher(outputs, targets)`` with ``outputs = {"pred_logits": [B, Q, K], "pred_boxes":
[B, Q, 4]}`` (boxes normalized cxcywh in [0, 1]) and ``targets`` a list of B dicts with
``"labels"`` [N] (indices into the K logits) and ``"boxes"`` [N, 4] normalized cxcywh;
it returns, per image, ``(pred_indices, target_indices)``, two int64 tensors of length N.

Taught in book/ss_detr.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from .boxes import box_convert, generalized_box_iou

__all__ = ["HungarianMatcher", "check_matcher_inputs"]


def check_matcher_inputs(outputs: dict[str, Tensor], targets: Sequence[dict[str, Tensor]]) -> None:
    """Raise a ValueError naming the argument when `outputs` / `targets` are not DETR's format."""
    if not isinstance(outputs, dict) or "pred_logits" not in outputs or "pred_boxes" not in outputs:
        raise ValueError("outputs must be a dict with 'pred_logits' [B, Q, K] and 'pred_boxes' [B, Q, 4]")
    logits, boxes = outputs["pred_logits"], outputs["pred_boxes"]
    if not isinstance(logits, Tensor) or logits.dim() != 3:
        raise ValueError(f"outputs['pred_logits'] must be a Tensor[B, Q, K], got {_shape(logits)}")
    if not isinstance(boxes, Tensor) or boxes.dim() != 3 or boxes.shape[-1] != 4:
        raise ValueError(f"outputs['pred_boxes'] must be a Tensor[B, Q, 4] (cxcywh), got {_shape(boxes)}")
    if boxes.shape[:2] != logits.shape[:2]:
        raise ValueError(f"outputs['pred_logits'] {tuple(logits.shape)} and outputs['pred_boxes'] "
                         f"{tuple(boxes.shape)} must share B and Q")
    if not isinstance(targets, (list, tuple)):
        raise ValueError(f"targets must be a list of dicts, one per image, got {type(targets).__name__}")
    B, Q, K = logits.shape
    if len(targets) != B:
        raise ValueError(f"targets must have one dict per image: got {len(targets)} targets for a "
                         f"batch of {B} predictions (mismatched batch sizes)")
    for i, t in enumerate(targets):
        if not isinstance(t, dict) or "labels" not in t or "boxes" not in t:
            raise ValueError(f"targets[{i}] must be a dict with 'labels' [N] and 'boxes' [N, 4]")
        labels, tboxes = t["labels"], t["boxes"]
        if not isinstance(tboxes, Tensor) or tboxes.dim() != 2 or tboxes.shape[1] != 4:
            raise ValueError(f"targets[{i}]['boxes'] must be a Tensor[N, 4] (normalized cxcywh), "
                             f"got {_shape(tboxes)}")
        if not isinstance(labels, Tensor) or labels.dim() != 1 or len(labels) != len(tboxes):
            raise ValueError(f"targets[{i}]['labels'] must be a Tensor[N] with N = {len(tboxes)} "
                             f"(one per box), got {_shape(labels)}")
        if labels.is_floating_point() or (len(labels) and (labels.min() < 0 or labels.max() >= K)):
            raise ValueError(f"targets[{i}]['labels'] must be integers in [0, {K}) (indices into the "
                             f"K = {K} logits), got {labels.tolist()}")
        if len(tboxes) > Q:
            raise ValueError(f"targets[{i}] has {len(tboxes)} objects but there are only Q = {Q} "
                             f"queries: a one-to-one matching needs Q >= objects")


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


class HungarianMatcher(nn.Module):
    """One-to-one assignment of predictions to targets at minimum total matching cost.

    Args:
        cost_class: weight of the classification cost ``-p_q(c_j)`` (probability of the true
            class, not its log, as in DETR: it is on the same scale as the box costs).
        cost_bbox: weight of the L1 distance of the normalized cxcywh boxes.
        cost_giou: weight of ``-GIoU`` of the boxes (as xyxy).
    """

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0):
        super().__init__()
        for name, w in (("cost_class", cost_class), ("cost_bbox", cost_bbox), ("cost_giou", cost_giou)):
            if not isinstance(w, (int, float)) or w < 0:
                raise ValueError(f"{name} must be a number >= 0, got {w!r}")
        if cost_class == cost_bbox == cost_giou == 0:
            raise ValueError("at least one of cost_class, cost_bbox, cost_giou must be > 0")
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou

    @torch.no_grad()
    def cost_parts(self, outputs: dict[str, Tensor], targets: Sequence[dict[str, Tensor]]
                   ) -> list[dict[str, Tensor]]:
        """The cost terms per image, unweighted, and their weighted sum.

        Returns per image {"class", "bbox", "giou"} each ``[Q, N_i]``, and "total", their
        weighted sum (the matrix the assignment minimises).
        """
        check_matcher_inputs(outputs, targets)
        B, Q, K = outputs["pred_logits"].shape
        if B == 0:
            return []
        prob = outputs["pred_logits"].flatten(0, 1).float().softmax(-1)   # (B*Q, K)
        out_boxes = outputs["pred_boxes"].flatten(0, 1).float()           # (B*Q, 4) cxcywh
        # all images at once against all targets of the batch (as DETR), then split per image
        labels = torch.cat([t["labels"] for t in targets]).to(prob.device)             # (T,)
        tgt = torch.cat([t["boxes"] for t in targets]).to(out_boxes)                   # (T, 4)
        full = {
            "class": -prob[:, labels],                                                 # (B*Q, T)
            "bbox": torch.cdist(out_boxes, tgt, p=1),
            "giou": -generalized_box_iou(box_convert(out_boxes, "cxcywh", "xyxy"),
                                         box_convert(tgt, "cxcywh", "xyxy")),
        }
        full["total"] = (self.cost_class * full["class"] + self.cost_bbox * full["bbox"]
                         + self.cost_giou * full["giou"])
        sizes = [len(t["labels"]) for t in targets]
        split = {k: v.view(B, Q, -1).split(sizes, -1) for k, v in full.items()}
        return [{k: split[k][b][b] for k in full} for b in range(B)]                 # (Q, N_b) each

    def cost_matrix(self, outputs, targets) -> list[Tensor]:
        """The total matching cost ``[Q, N_i]`` of every (prediction, target) pair per image."""
        return [p["total"] for p in self.cost_parts(outputs, targets)]

    @torch.no_grad()
    def forward(self, outputs: dict[str, Tensor], targets: Sequence[dict[str, Tensor]]
                ) -> list[tuple[Tensor, Tensor]]:
        """The one-to-one assignment of minimum total cost, per image.

        Returns per image ``(pred_indices [N_i], target_indices [N_i])``, int64, pred_indices
        sorted; prediction ``pred_indices[k]`` is matched to target ``target_indices[k]``. An
        image without targets gets two empty tensors.
        """
        out = []
        for cost in self.cost_matrix(outputs, targets):
            if cost.shape[1] == 0:
                empty = torch.empty(0, dtype=torch.int64)
                out.append((empty, empty.clone()))
                continue
            if not torch.isfinite(cost).all():
                raise ValueError("the matching cost is not finite: outputs hold NaN or inf values")
            rows, cols = linear_sum_assignment(cost.cpu().numpy())   # rows sorted ascending
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out

    def extra_repr(self) -> str:
        """The cost weights, shown in the module's repr."""
        return f"cost_class={self.cost_class}, cost_bbox={self.cost_bbox}, cost_giou={self.cost_giou}"
