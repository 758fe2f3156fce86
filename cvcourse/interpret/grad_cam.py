r"""Grad-CAM (Selvaraju et al., 2017): a class activation map for any convolutional layer.

CAM needs a network whose head is global average pooling + one linear layer. Grad-CAM
replaces the linear layer's weights by *gradients*, which every network has. For the
feature maps $A^k$ (``[K, h, w]``) of a chosen layer and the class score $S_c$:

$$\alpha_k^c = \frac{1}{hw} \sum_{i,j} \frac{\partial S_c}{\partial A^k_{ij}}, \qquad
  L^c_{\text{Grad-CAM}} = \mathrm{ReLU}\Big(\sum_k \alpha_k^c A^k\Big).$$

$\alpha_k^c$ says how much channel k matters for class c (its gradient, averaged over the
positions); the ReLU keeps the regions that speak *for* the class. Deep layers give coarse
but class-specific maps; earlier layers give finer maps that are less specific.

Taught in book/int_cam.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import check_images, explaining, model_device, resolve_layer, target_scores
from ._common import upsample as upsample_maps


def activations_and_gradients(model: nn.Module, target_layer, images: Tensor, targets) -> tuple[Tensor, Tensor]:
    r"""The output $A$ of `target_layer` and $\partial S_c / \partial A$, for each image.

    Args:
        model: a classifier returning logits ``[B, num_classes]``.
        target_layer: a module of `model`, or its name (``"features.7"``); it must run
            exactly once per forward pass and return one ``[B, K, h, w]`` tensor.
        images: ``[B, C, H, W]``; targets: class index per image (int or B ints).

    Returns:
        activations and gradients, both ``[B, K, h, w]`` and detached, on the model's device.
    """
    images = check_images(images)
    name, layer = resolve_layer(model, target_layer)
    x = images.detach().to(model_device(model, images.device))
    seen: list[Tensor] = []

    def keep(module, inputs, output):
        if not torch.is_tensor(output):
            raise ValueError(f"layer {name!r} must return one tensor, got {type(output).__name__}")
        seen.append(output)
        # pass a copy on, so an in-place op after the layer (ReLU(inplace=True)) cannot
        # overwrite the activations we keep; the gradient flows through the copy unchanged
        return output.clone()

    with explaining(model) as handles:
        handles.append(layer.register_forward_hook(keep))
        x.requires_grad_(True)  # so that the layer's output is in the graph even if frozen
        logits = model(x)
        if len(seen) != 1:
            raise ValueError(f"layer {name!r} ran {len(seen)} times in one forward pass; "
                             "Grad-CAM needs a layer that runs exactly once")
        activations = seen[0]
        if activations.dim() != 4:
            raise ValueError(f"layer {name!r} must output [B, K, h, w] feature maps, got shape "
                             f"{tuple(activations.shape)}")
        scores = target_scores(logits, targets, len(x))  # (B,)
        (gradients,) = torch.autograd.grad(scores.sum(), activations)
    return activations.detach(), gradients


def grad_cam_from(activations: Tensor, gradients: Tensor, relu: bool = True) -> Tensor:
    r"""Grad-CAM from a layer's activations and gradients, both ``[B, K, h, w]``.

    Returns:
        ``[B, h, w]``: $\mathrm{ReLU}(\sum_k \alpha_k A^k)$ with $\alpha_k$ the spatial mean
        of the gradient of channel k (no ReLU when ``relu=False``).
    """
    if activations.dim() != 4 or activations.shape != gradients.shape:
        raise ValueError(f"activations and gradients must both be [B, K, h, w] of one shape, got "
                         f"{tuple(activations.shape)} and {tuple(gradients.shape)}")
    weights = gradients.mean((2, 3))                                  # (B, K): alpha_k
    cam = torch.einsum("bk,bkhw->bhw", weights, activations)         # (B, h, w)
    return cam.clamp(min=0) if relu else cam


def grad_cam(model: nn.Module, target_layer, images: Tensor, targets, upsample: bool = True,
             relu: bool = True) -> Tensor:
    """Grad-CAM maps of `target_layer` for each image's target class.

    Args:
        model, target_layer, images, targets: as in `activations_and_gradients`.
        upsample: resize the ``[h, w]`` maps bilinearly to the images' ``[H, W]``.
        relu: keep only the positive part (the method's definition); False shows the
            regions that speak against the class too.

    Returns:
        ``[B, H, W]`` (or ``[B, h, w]`` with ``upsample=False``) unnormalised maps, on the
        images' device. The model is left as it was found.
    """
    activations, gradients = activations_and_gradients(model, target_layer, images, targets)
    cam = grad_cam_from(activations, gradients, relu=relu)
    if upsample:
        cam = upsample_maps(cam, images.shape[-2:])
    return cam.to(images.device)
