"""What every explanation method shares: input checks, the target scores, and a context
manager that leaves the model exactly as it was found.

Every method here explains the *class score* $S_c$: the logit (the output before the
softmax) of the target class, as the papers do. A softmax probability can rise because
*other* classes' scores fall; the logit answers only "what raises the evidence for c".
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_images(images) -> Tensor:
    """`images` must be a floating ``[B, C, H, W]`` tensor with B >= 1."""
    if not torch.is_tensor(images):
        raise TypeError(f"images must be a torch.Tensor [B, C, H, W], got {type(images).__name__}")
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a [B, C, H, W] batch with B >= 1, got shape {tuple(images.shape)} "
                         "(for one image use image[None])")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point, got {images.dtype}")
    return images


def check_targets(targets, batch: int, num_classes: int | None = None, device=None) -> Tensor:
    """Target classes as an int64 ``[B]`` tensor: an int (the same class for every image), a
    sequence or a tensor of B ints, each in ``0..num_classes-1`` when `num_classes` is given."""
    t = torch.as_tensor(targets, device=device)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"targets must be integer class indices, got dtype {t.dtype}")
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"targets must be an int or {batch} class indices (one per image), "
                         f"got shape {tuple(t.shape)}")
    t = t.long()
    if num_classes is not None and batch and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(f"targets must be class indices in 0..{num_classes - 1}, got "
                         f"{sorted(set(t[(t < 0) | (t >= num_classes)].tolist()))}")
    return t


def model_device(model: nn.Module, default=None):
    """The device of the model's first parameter (or buffer); `default` if it has none."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return default


def resolve_layer(model: nn.Module, layer) -> tuple[str, nn.Module]:
    """``(name, module)`` for `layer`, given as a module of `model` or its dotted name
    (``"features.7"``, as in ``model.named_modules()``)."""
    names = {m: n for n, m in model.named_modules()}
    if isinstance(layer, str):
        try:
            module = model.get_submodule(layer)
        except AttributeError:
            listed = [n for n in names.values() if n][:12]
            raise ValueError(f"layer {layer!r} is not in the model; its layers include "
                             f"{', '.join(listed)}{', ...' if len(names) > 13 else ''}") from None
        return layer, module
    if isinstance(layer, nn.Module):
        if layer not in names:
            raise ValueError(f"layer {type(layer).__name__} is not a submodule of the model "
                             "(pass one of model.modules() or its name from model.named_modules())")
        return names[layer], layer
    raise TypeError(f"layer must be an nn.Module of the model or its name, got {type(layer).__name__}")


@contextlib.contextmanager
def explaining(model: nn.Module):
    """Run an explanation on `model` and leave it as it was.

    Inside: every module in eval mode (BatchNorm uses its running statistics, dropout is
    off: the explanation is of the deployed model) and gradients enabled even under
    ``torch.no_grad()``. On exit, always: each module's training flag and each parameter's
    ``requires_grad`` are restored, and every hook registered through the yielded list of
    handles is removed. Gradients are taken with ``torch.autograd.grad``, so parameters'
    ``.grad`` are never touched.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    handles: list = []
    model.eval()
    try:
        with torch.enable_grad():
            yield handles
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)


def target_scores(logits: Tensor, targets, batch: int) -> Tensor:
    """The logit of each image's target class, ``[B]``, after checking the targets."""
    if logits.dim() != 2 or logits.shape[0] != batch:
        raise ValueError(f"the model must return [B, num_classes] logits, got shape {tuple(logits.shape)}")
    t = check_targets(targets, batch, logits.shape[1], device=logits.device)
    return logits.gather(1, t[:, None])[:, 0]


def upsample(maps: Tensor, size) -> Tensor:
    """Bilinear upsampling of ``[B, h, w]`` maps to ``size = (H, W)`` (align_corners=False,
    as ``cv2.resize`` and most CAM implementations)."""
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


def normalize(maps: Tensor, eps: float = 1e-7) -> Tensor:
    """Min-max normalise each ``[..., H, W]`` map to [0, 1] (a constant map becomes 0)."""
    lo = maps.amin((-2, -1), keepdim=True)
    hi = maps.amax((-2, -1), keepdim=True)
    return (maps - lo) / (hi - lo + eps)
