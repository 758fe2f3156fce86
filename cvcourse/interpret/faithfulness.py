"""Is a map faithful to the model? Perturb the pixels it ranks first and watch the score.

The pointing game asks whether a map points at the *object*; these tests ask whether it
points at what the *model* uses:

- `occlusion_map` (Zeiler & Fergus, 2014): slide a patch of the baseline over the image;
  each pixel gets the mean drop of the class score over the windows that cover it. A
  method of its own (no gradients), and the most direct answer to "what if this region
  were missing";
- `deletion_curve` / `insertion_curve` (Petsiuk et al., 2018, RISE): replace the pixels in
  the order a map ranks them, most important first, by the baseline (deletion) — or start
  from the baseline and put the image's pixels back in that order (insertion) — and record
  the target class's probability after each step. `auc` is the area under the curve:
  a faithful map makes the deletion curve fall fast (low AUC) and the insertion curve
  rise fast (high AUC).

The baseline is what "removed" means. `blurred` gives the image with its shapes blurred
away; on our scenes, where the class is read from shape and colour is random, that keeps
the colours and erases the evidence without drawing new edges (a grey square has edges
of its own, which a shape classifier can read).

Taught in book/int_evaluation.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.transforms.functional import gaussian_blur

from ._common import check_images, check_targets, explaining, model_device

__all__ = ["blurred", "occlusion_map", "deletion_curve", "insertion_curve", "auc"]


def blurred(images: Tensor, sigma: float = 8.0) -> Tensor:
    """The images under a Gaussian blur of standard deviation `sigma` pixels, ``[B, C, H, W]``
    (kernel ``±3σ``, cut to fit the image; borders reflected)."""
    check_images(images)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma must be a positive number of pixels, got {sigma!r}")
    k = min(2 * int(3 * sigma) + 1, 2 * ((min(images.shape[-2:]) - 1) // 2) + 1)  # odd, < the image side
    return gaussian_blur(images, [k, k], [float(sigma), float(sigma)])


def _baseline(images: Tensor, baseline) -> Tensor:
    """`baseline` (a number or a tensor broadcastable to the images) as ``[B, C, H, W]``."""
    base = torch.as_tensor(baseline, dtype=images.dtype, device=images.device)
    try:
        return base.expand_as(images)
    except RuntimeError:
        raise ValueError(f"baseline must be a number or a tensor broadcastable to the images' shape "
                         f"{tuple(images.shape)}, got shape {tuple(base.shape)}") from None


@torch.no_grad()
def _masked_scores(model: nn.Module, images: Tensor, base: Tensor, masks: Tensor, targets: Tensor,
                   batch_size: int, probability: bool) -> Tensor:
    """The target's logit (or softmax probability) for every image with the pixels of each of
    its masks taken from `base`: masks ``[P, H, W]`` (the same for every image) or
    ``[B, P, H, W]`` (per image), bool → scores ``[B, P]``. Forward passes in chunks."""
    B, P = len(images), masks.shape[-3]
    device = model_device(model, images.device)
    out = []
    for start in range(0, B * P, batch_size):
        i = torch.arange(start, min(start + batch_size, B * P), device=images.device)
        b, p = i // P, i % P                                                     # image, mask
        m = masks[p] if masks.dim() == 3 else masks[b, p]                        # (n, H, W)
        x = torch.where(m[:, None], base[b], images[b])                          # (n, C, H, W)
        logits = model(x.to(device))                                             # (n, classes)
        if start == 0:
            targets = check_targets(targets, B, logits.shape[1], device=images.device)
        if probability:
            logits = logits.softmax(1)
        out.append(logits.gather(1, targets[b].to(device)[:, None])[:, 0].to(images.device))
    return torch.cat(out).view(B, P)


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")


def occlusion_map(model: nn.Module, images: Tensor, targets, window: int = 8, stride: int = 4,
                  baseline=0.0, batch_size: int = 512) -> Tensor:
    """Occlusion sensitivity (Zeiler & Fergus, 2014): how much the class score drops when a
    ``window × window`` patch is replaced by the baseline, as captum's ``Occlusion``.

    Args:
        model: a classifier returning ``[B, classes]`` logits (run in eval mode, left as found).
        images: ``[B, C, H, W]``.
        targets: an int or B class indices.
        window: side of the square patch, in pixels (all channels at once).
        stride: step between patch positions (``1 <= stride <= window``); positions run
            ``0, stride, ...`` up to the first that reaches the border (that one may be cut).
        baseline: what fills the patch: a number or a tensor broadcastable to the images
            (e.g. `blurred(images)`).
        batch_size: occluded images per forward pass.

    Returns:
        ``[B, H, W]``: each pixel's mean logit drop over the windows that cover it
        (positive = the region supported the class).
    """
    check_images(images)
    H, W = images.shape[-2:]
    for name, value in (("window", window), ("stride", stride), ("batch_size", batch_size)):
        _check_int(name, value, 1)
    if window > min(H, W) or stride > window:
        raise ValueError(f"window must be <= the image side {min(H, W)} and stride <= window, "
                         f"got window={window}, stride={stride}")
    targets = check_targets(targets, len(images), device=images.device)
    base = _baseline(images, baseline)
    y, x = torch.arange(H, device=images.device), torch.arange(W, device=images.device)
    y0 = torch.arange(0, H - window + stride, stride, device=images.device)[:, None]   # (Py, 1) window tops
    x0 = torch.arange(0, W - window + stride, stride, device=images.device)[:, None]   # (Px, 1) window lefts
    rows, cols = (y >= y0) & (y < y0 + window), (x >= x0) & (x < x0 + window)          # (Py, H), (Px, W)
    masks = (rows[:, None, :, None] & cols[None, :, None, :]).flatten(0, 1)            # (P, H, W)
    with explaining(model):
        none = torch.zeros_like(masks[:1])                                              # (1, H, W) no pixel occluded
        clean = _masked_scores(model, images, base, none, targets, batch_size, False)           # (B, 1)
        drops = clean - _masked_scores(model, images, base, masks, targets, batch_size, False)      # (B, P)
    return torch.einsum("bp,phw->bhw", drops, masks.to(drops.dtype)) / masks.sum(0)


def _curve(model: nn.Module, images: Tensor, targets, maps: Tensor, baseline, steps: int, batch_size: int,
           insert: bool) -> Tensor:
    """Deletion (``insert=False``) or insertion curve: ``[B, steps + 1]`` target probabilities."""
    check_images(images)
    B, _, H, W = images.shape
    if not torch.is_tensor(maps) or maps.shape != (B, H, W):
        shape = tuple(maps.shape) if torch.is_tensor(maps) else type(maps).__name__
        raise ValueError(f"maps must be a [B, H, W] tensor of the images' size {(B, H, W)}, got {shape}")
    if maps.is_floating_point() and not torch.isfinite(maps).all():
        raise ValueError("maps must be finite, got NaN or inf values")
    _check_int("steps", steps, 1)
    _check_int("batch_size", batch_size, 1)
    targets = check_targets(targets, B, device=images.device)
    base = _baseline(images, baseline)
    order = maps.to(images.device).flatten(1).argsort(dim=1, descending=True, stable=True)  # (B, HW) ties: raster
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(H * W, device=images.device).expand(B, -1))
    counts = torch.linspace(0, H * W, steps + 1, device=images.device).round().long()    # (steps+1,) pixels changed
    changed = (ranks[:, None, :] < counts[None, :, None]).view(B, steps + 1, H, W)       # (B, steps+1, H, W)
    masks = ~changed if insert else changed                     # True = the pixel comes from the baseline
    with explaining(model):
        return _masked_scores(model, images, base, masks, targets, batch_size, probability=True)


def deletion_curve(model: nn.Module, images: Tensor, targets, maps: Tensor, baseline=0.0, steps: int = 16,
                   batch_size: int = 512) -> Tensor:
    """The deletion test (Petsiuk et al., 2018): the target class's probability as the pixels
    are replaced by the baseline, most important first.

    Args:
        model: a classifier returning ``[B, classes]`` logits (run in eval mode, left as found).
        images: ``[B, C, H, W]``.
        targets: an int or B class indices.
        maps: ``[B, H, W]`` explanation maps (higher = more important); ties are removed
            in raster order.
        baseline: a number or a tensor broadcastable to the images (e.g. `blurred(images)`).
        steps: the pixels are removed in this many equal steps (``round(k·H·W / steps)``
            after step k).
        batch_size: perturbed images per forward pass.

    Returns:
        ``[B, steps + 1]`` softmax probabilities of the target: column 0 is the image,
        the last column the baseline. Lower area under the curve (`auc`) = more faithful.
    """
    return _curve(model, images, targets, maps, baseline, steps, batch_size, insert=False)


def insertion_curve(model: nn.Module, images: Tensor, targets, maps: Tensor, baseline=0.0, steps: int = 16,
                    batch_size: int = 512) -> Tensor:
    """The insertion test (Petsiuk et al., 2018): start from the baseline and put the image's
    pixels back, most important first; arguments as `deletion_curve`.

    Returns:
        ``[B, steps + 1]`` target probabilities: column 0 is the baseline, the last column
        the image. Higher area under the curve (`auc`) = more faithful.
    """
    return _curve(model, images, targets, maps, baseline, steps, batch_size, insert=True)


def auc(curves: Tensor) -> Tensor:
    """Area under each curve ``[B, K]`` sampled at K equally spaced points of [0, 1]
    (the trapezoidal rule, as RISE's evaluation code) → ``[B]``."""
    if not torch.is_tensor(curves) or curves.dim() != 2 or curves.shape[1] < 2:
        shape = tuple(curves.shape) if torch.is_tensor(curves) else type(curves).__name__
        raise ValueError(f"curves must be a [B, K] tensor with K >= 2 points, got {shape}")
    return (curves[:, 1:] + curves[:, :-1]).sum(1) / (2 * (curves.shape[1] - 1))
