r"""Guided backpropagation (Springenberg et al., 2015).

Plain backpropagation through a ReLU $y = \max(x, 0)$ passes the gradient where the
*forward* input was positive: $\partial S/\partial x = [x > 0]\,\partial S/\partial y$.
Guided backprop also drops the negative *gradients*:

$$\frac{\partial S}{\partial x} \leftarrow [x > 0]\,\Big[\frac{\partial S}{\partial y} > 0\Big]\,
  \frac{\partial S}{\partial y},$$

so only signals that would *increase* the activation of units that are on reach the image.
The result is much sharper than the plain gradient; it is no longer the gradient of
anything, which is why Adebayo et al. (2018) ask whether it still depends on the model.

Taught in book/int_guided_backprop.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import check_images, explaining, model_device, target_scores


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward lets only positive gradients through."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


def _guide(module, inputs, output):
    # placed on the ReLU's output: its own backward then applies [x > 0], we add [grad > 0]
    return _PositiveGradient.apply(output)


def guided_backprop(model: nn.Module, images: Tensor, targets) -> Tensor:
    """Guided backpropagation of each image's target class score to its pixels.

    Every ``nn.ReLU`` module of `model` passes only positive gradients during this one
    backward pass (ReLUs written as ``F.relu`` in ``forward`` cannot be reached by hooks and
    stay plain). Equals captum's ``GuidedBackprop(model).attribute(images, target=targets)``.

    Args:
        model: a classifier with ``nn.ReLU`` modules, returning logits ``[B, num_classes]``.
        images: ``[B, C, H, W]``; targets: class index per image (int or B ints).

    Returns:
        ``[B, C, H, W]`` guided gradients on the images' device (reduce them to a map with
        ``.abs().amax(1)``, like a saliency map). The model is left as it was found.
    """
    images = check_images(images)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("guided backprop needs nn.ReLU modules in the model, found none")
    x = images.detach().to(model_device(model, images.device)).requires_grad_(True)
    with explaining(model) as handles:
        handles.extend(relu.register_forward_hook(_guide) for relu in relus)
        scores = target_scores(model(x), targets, len(x))  # (B,)
        (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad.to(images.device)
