r"""Guided backpropagation (Springenberg et al., 2015).

Plain backpropagation through a ReLU $y = \max(x, 0)$ passes the gradient where the
*forward* input was positive: $\partial S/\partial x = [x > 0]\,\partial S/\partial y$.
Guided backprop also drops the negative *gradients*:

$$\frac{\partial S}{\partial x} \leftarrow [x > 0]\,\Big[\frac{\partial S}{\partial y} > 0\Big]\,
  \frac{\partial S}{\partial y},$$

so only signals that would *increase* the activation of units that are on reach the image.
The result is much sharper than the plain gradient; it is no longer the gradient of
anything, which is why Adebayo et al. (2018) ask whether it still depends on the model.

The score $S$ need not be a class score. The course notes "pick a specific intermediate
neuron": $S$ is then one unit of a layer's output, $A_{c,y,x}$, or a whole channel's sum
$\sum_{y,x} A_{c,y,x}$, and the guided gradient shows the input pattern that unit responds to.

Taught in book/int_guided_backprop.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import check_images, explaining, model_device, resolve_layer, target_scores


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


def _check_neuron(neuron, shape: tuple[int, ...], name: str) -> tuple:
    """`neuron` as an index into one image's layer output of `shape` (``[K, h, w]``): an int c
    (the channel, summed over the other axes) or a tuple with one index per axis."""
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if is_int(neuron):
        neuron, full = (neuron,), False
    elif isinstance(neuron, (tuple, list)) and neuron and all(is_int(v) for v in neuron):
        neuron, full = tuple(neuron), True
    else:
        raise ValueError(f"neuron must be a channel index c or a tuple (c, y, x) of ints, got {neuron!r}")
    if full and len(neuron) != len(shape):
        raise ValueError(f"neuron must have one index per axis of layer {name!r}'s output {list(shape)} "
                         f"(per image), got {neuron!r}")
    if any(not 0 <= v < n for v, n in zip(neuron, shape)):
        raise ValueError(f"neuron {neuron!r} is out of range for layer {name!r}, whose output per image "
                         f"has shape {list(shape)}")
    return neuron


def guided_backprop(model: nn.Module, images: Tensor, targets=None, *, layer=None, neuron=None) -> Tensor:
    """Guided backpropagation of a class score, or of one intermediate neuron, to the pixels.

    Every ``nn.ReLU`` module of `model` passes only positive gradients during this one
    backward pass (ReLUs written as ``F.relu`` in ``forward`` cannot be reached by hooks and
    stay plain). With `targets` the score is each image's target class logit: equals captum's
    ``GuidedBackprop(model).attribute(images, target=targets)``. With `layer` and `neuron` the
    score is one unit of `layer`'s output: equals captum's
    ``NeuronGuidedBackprop(model, layer).attribute(images, neuron_selector=neuron)``.

    Args:
        model: a network with ``nn.ReLU`` modules; with `targets` it returns logits
            ``[B, num_classes]``.
        images: ``[B, C, H, W]``.
        targets: class index per image (int or B ints); only without `layer`/`neuron`.
        layer: a module of `model`, or its dotted name (``"features.4"``), that runs once
            per forward pass and returns one tensor ``[B, K, h, w]``.
        neuron: with `layer`: ``(c, y, x)``, one unit of the layer's output (one index per
            axis after the batch axis), or an int ``c``, the sum of channel c over all positions.

    Returns:
        ``[B, C, H, W]`` guided gradients on the images' device (reduce them to a map with
        ``.abs().amax(1)``, like a saliency map). The model is left as it was found.
    """
    images = check_images(images)
    if neuron is not None and layer is None:
        raise ValueError("neuron needs layer: pass layer= (a module of the model or its name) as well")
    if layer is not None and neuron is None:
        raise ValueError("layer needs neuron: pass neuron=(c, y, x) for one unit or neuron=c for a channel")
    if layer is not None and targets is not None:
        raise ValueError("targets cannot be combined with neuron: the score is the neuron itself, "
                         "so pass either targets or layer= and neuron=")
    if layer is None and targets is None:
        raise ValueError("targets is required (class index per image), unless layer= and neuron= are given")
    name, module = resolve_layer(model, layer) if layer is not None else (None, None)
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("guided backprop needs nn.ReLU modules in the model, found none")
    x = images.detach().to(model_device(model, images.device)).requires_grad_(True)
    seen: list[Tensor] = []

    def keep(m, inputs, output):
        seen.append(output)
        if torch.is_tensor(output):  # pass a copy on, so later in-place ops cannot change it
            return output.clone()

    with explaining(model) as handles:
        handles.extend(relu.register_forward_hook(_guide) for relu in relus)
        if module is None:
            scores = target_scores(model(x), targets, len(x))  # (B,)
        else:
            handles.append(module.register_forward_hook(keep))
            model(x)
            if len(seen) != 1 or not torch.is_tensor(seen[0]):
                raise ValueError(f"layer {name!r} must run once per forward pass and return one tensor, "
                                 f"it ran {len(seen)} times" + (f" and returned {type(seen[0]).__name__}"
                                                                 if seen and not torch.is_tensor(seen[0]) else ""))
            out = seen[0]  # (B, K, h, w)
            if out.dim() < 2 or out.shape[0] != len(x):
                raise ValueError(f"layer {name!r} must output [B, K, ...], got shape {tuple(out.shape)}")
            index = _check_neuron(neuron, tuple(out.shape[1:]), name)
            unit = out[(slice(None), *index)]  # (B,) for (c, y, x); (B, h, w) for c
            scores = unit.flatten(1).sum(1) if unit.dim() > 1 else unit  # (B,)
        (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad.to(images.device)


def strongest_units(model: nn.Module, images: Tensor, layer, channel: int | None = None) -> dict:
    """For each image, the strongest unit of one channel of `layer` and its guided backprop.

    Args:
        model: a network with ``nn.ReLU`` modules.
        images: ``[B, C, H, W]``.
        layer: a module of `model`, or its dotted name, returning ``[B, K, h, w]``.
        channel: the channel c; by default the one with the largest mean (over the images)
            of its per-image maximum.

    Returns:
        ``{"channel": c, "units": [B, 3] (c, y, x) per image, "patterns": [B, C, H, W]}``:
        the guided gradient of each image's own strongest unit, the input pattern it responds to.
    """
    images = check_images(images)
    name, module = resolve_layer(model, layer)
    out: list[Tensor] = []
    with explaining(model) as handles, torch.no_grad():
        handles.append(module.register_forward_hook(lambda m, i, o: out.append(o.detach().clone())))
        model(images.to(model_device(model, images.device)))
    if len(out) != 1 or out[0].dim() != 4:
        raise ValueError(f"layer {name!r} must run once and return [B, K, h, w]")
    a = out[0]                                                      # (B, K, h, w)
    peaks = a.flatten(2).amax(2)                                    # (B, K)
    c = int(peaks.mean(0).argmax()) if channel is None else channel
    if not 0 <= c < a.shape[1]:
        raise ValueError(f"channel must be in 0..{a.shape[1] - 1} for layer {name!r}, got {c}")
    w = a.shape[-1]
    flat = a[:, c].flatten(1).argmax(1)                             # (B,)
    units = torch.stack([torch.full_like(flat, c), flat // w, flat % w], 1).cpu()   # (B, 3)
    patterns = torch.cat([guided_backprop(model, images[j:j + 1], layer=name, neuron=tuple(units[j].tolist()))
                          for j in range(len(images))])             # (B, C, H, W)
    return {"channel": c, "units": units, "patterns": patterns}
