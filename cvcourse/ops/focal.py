"""The focal loss (Lin et al., 2017): cross-entropy that down-weights well-classified examples.

A dense detector scores ~10^4 anchors per image, and almost all of them are easy background.
With plain binary cross-entropy each easy negative adds only a little loss, but there are so
many that together they dominate the total and the gradient. The focal loss multiplies the
cross-entropy by ``(1 - p_t) ** gamma``, where ``p_t`` is the probability given to the true
label: an anchor classified with ``p_t = 0.9`` keeps 1 % of its loss at ``gamma = 2``, one at
``p_t = 0.5`` keeps 25 %. ``alpha`` weights positives (``alpha``) against negatives
(``1 - alpha``).

`sigmoid_focal_loss` has the signature and the results of ``torchvision.ops.sigmoid_focal_loss``
(checked to 1e-6, gradients too, in ``tests/test_single_stage.py``).

Taught in book/ss_retinanet.ipynb.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["sigmoid_focal_loss"]

REDUCTIONS = ("none", "mean", "sum")


def sigmoid_focal_loss(inputs: Tensor, targets: Tensor, alpha: float = 0.25, gamma: float = 2,
                       reduction: str = "none") -> Tensor:
    """Focal loss of logits `inputs` against binary `targets`, elementwise.

    ``FL = alpha_t * (1 - p_t) ** gamma * CE(p, y)`` with ``p = sigmoid(inputs)``,
    ``p_t = p`` where ``y = 1`` and ``1 - p`` where ``y = 0``, ``alpha_t = alpha`` where
    ``y = 1`` and ``1 - alpha`` where ``y = 0``. ``gamma = 0`` with ``alpha < 0`` is plain
    binary cross-entropy.

    Args:
        inputs (Tensor[*]): logits, any shape.
        targets (Tensor[*]): same shape, 1 for the positive class and 0 for the negative one
            (soft targets in [0, 1] are allowed, as in torchvision).
        alpha (float): weight of the positives in [0, 1]; a negative value disables weighting.
        gamma (float): focusing parameter, >= 0.
        reduction (str): ``"none"`` (the elementwise loss), ``"mean"`` or ``"sum"``.

    Returns:
        Tensor: the loss, shaped like `inputs` for ``"none"``, else a scalar.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not isinstance(inputs, Tensor) or not isinstance(targets, Tensor):
        raise TypeError("inputs and targets must be Tensors")
    if inputs.shape != targets.shape:
        raise ValueError(f"inputs and targets must have the same shape, got "
                         f"{tuple(inputs.shape)} and {tuple(targets.shape)}")
    p = torch.sigmoid(inputs)
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)          # probability of the true label
    loss = ce * ((1 - p_t) ** gamma)                     # the modulating factor
    if alpha >= 0:
        alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
        loss = alpha_t * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss
