r"""Saliency maps (Simonyan, Vedaldi & Zisserman, 2014): the gradient of a class score with
respect to the input pixels.

Near an image $I_0$ the class score is approximately linear, $S_c(I) \approx w^\top I + b$
with $w = \partial S_c / \partial I$ at $I_0$: the magnitude of $w$ says which pixels
would change the score most if they changed a little. One backward pass gives it; the
saliency map keeps, per pixel, the largest magnitude over the colour channels:

$$M_{ij} = \max_{ch} \left| \frac{\partial S_c}{\partial I_{ch,i,j}} \right|.$$

Taught in book/int_saliency.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import check_images, explaining, model_device, target_scores


def input_gradient(model: nn.Module, images: Tensor, targets) -> Tensor:
    r"""The plain gradient of each image's target class score w.r.t. its pixels.

    Args:
        model: a classifier returning logits ``[B, num_classes]``.
        images: ``[B, C, H, W]``, on any device (moved to the model's).
        targets: class index per image (an int for all, or B ints), ``0..num_classes-1``.

    Returns:
        ``[B, C, H, W]`` gradients $\partial S_c / \partial I$, on the images' device.
        The model is left as it was found (modes, ``requires_grad``, no hooks, no ``.grad``).
    """
    images = check_images(images)
    x = images.detach().to(model_device(model, images.device)).requires_grad_(True)
    with explaining(model):
        scores = target_scores(model(x), targets, len(x))  # (B,)
        # the images are independent in eval mode, so the gradient of the sum holds every
        # image's own gradient
        (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad.to(images.device)


def saliency(model: nn.Module, images: Tensor, targets) -> Tensor:
    r"""Saliency maps $M = \max_{ch} |\partial S_c / \partial I|$, ``[B, H, W]``.

    Same arguments as `input_gradient`; equals captum's ``Saliency(model).attribute(images,
    target=targets)`` (absolute gradients ``[B, C, H, W]``) maximised over channels.
    """
    return input_gradient(model, images, targets).abs().amax(1)
