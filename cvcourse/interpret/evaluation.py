"""Do explanations point at the object, and do they depend on the model?

Two tests, applicable to any method that turns ``(model, images, targets)`` into maps:

- the **pointing game** (Zhang et al., 2016): is the map's maximum inside the target
  class's ground-truth mask? Cheap and needs only masks;
- the **model randomization test** (Adebayo et al., 2018): re-initialise the layers one by
  one from the top (cascading) and measure how similar the maps stay (Spearman rank
  correlation). A map that does not change when the model's weights are destroyed cannot
  be explaining what the model learned — however good it looks.

Taught in book/int_evaluation.ipynb.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_images, resolve_layer

Method = Callable[[nn.Module, Tensor, Tensor], Tensor]  # (model, images, targets) -> [B, H, W]


# ----------------------------------------------------------------------------- pointing game
def pointing_game(maps: Tensor, masks: Tensor, tolerance: int = 0) -> Tensor:
    """Pointing-game score of each map: is its maximum inside the mask?

    Args:
        maps: ``[B, H, W]`` explanation maps (higher = more important).
        masks: ``[B, H, W]`` bool ground truth of the target class.
        tolerance: also count a maximum within this many pixels of the mask (a square
            neighbourhood; Zhang et al. use 15 px on 224-px images).

    Returns:
        ``[B]`` float: 1.0 for a hit, 0.0 for a miss. When several pixels tie for the
        maximum the score is the fraction of them inside the mask, so a constant map
        scores the mask's area fraction (chance), not an arbitrary corner.
    """
    if maps.dim() != 3:
        raise ValueError(f"maps must be [B, H, W], got shape {tuple(maps.shape)}")
    if masks.shape != maps.shape or masks.dtype != torch.bool:
        raise ValueError(f"masks must be a bool tensor of the maps' shape {tuple(maps.shape)}, got "
                         f"{masks.dtype} {tuple(masks.shape)}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, int) or tolerance < 0:
        raise ValueError(f"tolerance must be an int >= 0 (pixels), got {tolerance!r}")
    if maps.is_floating_point() and not torch.isfinite(maps).all():
        raise ValueError("maps must be finite, got NaN or inf values")
    masks = masks.to(maps.device)
    if tolerance:
        k = 2 * tolerance + 1
        masks = F.max_pool2d(masks[:, None].float(), k, 1, tolerance)[:, 0] > 0
    top = maps == maps.amax((1, 2), keepdim=True)                        # (B, H, W) the maxima
    return (top & masks).sum((1, 2)).float() / top.sum((1, 2)).float()


def image_edges(images: Tensor) -> Tensor:
    """A model-free baseline map: the image's own edges, ``[B, H, W]``.

    The largest absolute difference to the right and lower neighbours, over the colour
    channels. It needs no network at all — a map any explanation should beat before it is
    credited with showing what the *model* uses.
    """
    check_images(images)
    dx = F.pad((images[..., :, 1:] - images[..., :, :-1]).abs(), (0, 1))        # (B, C, H, W)
    dy = F.pad((images[..., 1:, :] - images[..., :-1, :]).abs(), (0, 0, 0, 1))
    return torch.maximum(dx, dy).amax(1)


# ---------------------------------------------------------------------- rank correlation
def rank(x: Tensor) -> Tensor:
    """Ranks 1..N along the last dimension, ties given their average rank (as
    ``scipy.stats.rankdata``)."""
    s = x.sort(-1).values
    below = torch.searchsorted(s, x.contiguous(), right=False)          # how many are smaller
    upto = torch.searchsorted(s, x.contiguous(), right=True)            # smaller or equal
    return (below + upto + 1).to(torch.float64) / 2


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of each pair of maps: ``[B, ...]`` and ``[B, ...]`` → ``[B]``.

    The Pearson correlation of the ranks (ties averaged), as ``scipy.stats.spearmanr``;
    NaN where a map is constant (its ranks carry no order).
    """
    if a.shape != b.shape or a.dim() < 2:
        raise ValueError(f"a and b must be [B, ...] maps of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    ra, rb = rank(a.flatten(1)), rank(b.to(a.device).flatten(1))           # (B, N) each
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    denom = (ra.square().sum(1) * rb.square().sum(1)).sqrt()
    r = (ra * rb).sum(1) / denom
    return torch.where(denom > 0, r, torch.full_like(r, float("nan"))).float()


# -------------------------------------------------------------------- model randomization
def cascade_layers(model: nn.Module) -> list[str]:
    """Names of the model's layers from the top (output) down, for cascading randomization.

    The model's children in registration order, with containers (``nn.Sequential``,
    ``nn.ModuleList``) opened one level; only layers holding parameters; reversed.
    For `ShapeClassifier`: ``fc, features.7, features.6, features.4, features.3, features.1``.
    Parameters registered directly on the model (a ViT's position embedding) are not
    layers and stay trained.
    """
    names = []
    for name, child in model.named_children():
        parts = child.named_children() if isinstance(child, (nn.Sequential, nn.ModuleList)) else [(None, child)]
        for sub, module in parts:
            if any(True for _ in module.parameters()):
                names.append(name if sub is None else f"{name}.{sub}")
    return names[::-1]


def reinitialize(module: nn.Module) -> None:
    """Give `module` and every submodule fresh random weights (their ``reset_parameters``,
    which also resets BatchNorm's running statistics)."""
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def cascading_randomization(model: nn.Module, layers=None, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Copies of `model` with more and more layers re-initialised, top layer first.

    Yields ``(name, copy)`` after re-initialising each layer of `layers` (names or modules,
    default `cascade_layers`) in turn: the k-th copy has the first k layers random. One copy
    is mutated in place and yielded each time; `model` itself is never touched. Random
    weights come from ``torch.manual_seed(1000 * seed + k)`` for the k-th layer, without
    disturbing the global RNG.
    """
    names = [resolve_layer(model, layer)[0] for layer in (cascade_layers(model) if layers is None else layers)]
    if not names:
        raise ValueError("layers must name at least one layer of the model")
    randomized = copy.deepcopy(model)
    device = next(randomized.parameters()).device
    for k, name in enumerate(names):
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed * 1000 + k)
            reinitialize(randomized.get_submodule(name))
        yield name, randomized


def randomization_test(model: nn.Module, method: Method, images: Tensor, targets, layers=None,
                       seed: int = 0, reference: Tensor | None = None) -> dict[str, Tensor]:
    """The cascading model-randomization test of Adebayo et al. (2018) for one method.

    Args:
        model: the trained model.
        method: ``method(model, images, targets) -> [B, H, W]`` maps.
        images: ``[B, C, H, W]``; targets: class index per image (kept fixed throughout).
        layers: the cascade, top first (default `cascade_layers(model)`).
        seed: seed of the random weights.
        reference: the trained model's maps, if already computed (saves one pass).

    Returns:
        ``{"trained": ones, layer name: [B] correlations, ...}``: the Spearman rank
        correlation between each image's map from the trained model and from the copy
        whose layers down to (and including) that one are random. A constant map (no
        ranking at all) counts as correlation 0.
    """
    check_images(images)
    reference = method(model, images, targets) if reference is None else reference
    out = {"trained": torch.ones(len(images))}
    for name, randomized in cascading_randomization(model, layers, seed):
        out[name] = spearman(reference, method(randomized, images, targets)).nan_to_num(0.0).cpu()
    return out


# ------------------------------------------------------------------------ held-out scenes
def pointing_game_scenes(n: int = 100, split: str = "test", objects: int = 1, seed: int = 0,
                         size: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Held-out shapes scenes with a target class and its ground-truth mask, as the
    classifier recipe draws them (64 × 64, objects of 12-32 px).

    Args:
        n: number of scenes; split: "test" (or "val"); objects: objects per scene;
        seed: scene family; size: image side (default: the recipe's 64).

    Returns:
        images ``[n, 3, S, S]``, targets ``[n]`` (0-based classes: circle 0, square 1,
        triangle 2) and masks ``[n, S, S]`` bool: every pixel of the target class. With
        several objects, scene i targets the class of its object ``i % objects``.
    """
    from ..data import ShapesDataset
    from ..recipes.classification import OBJECT_SIZE, SIZE

    if split == "train":
        raise ValueError("split must be a held-out split ('test' or 'val'), got 'train'")
    ds = ShapesDataset(split=split, length=n, size=size or SIZE, view="scene", min_objects=objects,
                       max_objects=objects, seed=seed, object_size=OBJECT_SIZE)
    images, targets, masks = [], [], []
    for i in range(n):
        s = ds.scene(i)
        label = s["labels"][i % objects]
        images.append(s["image"])
        targets.append(label - 1)
        masks.append(s["semantic"] == label)
    return torch.stack(images), torch.stack(targets), torch.stack(masks)


def explanation_methods(last_layer: str = "features.7", early_layer: str = "features.4",
                        features: str = "features", classifier: str = "fc") -> dict[str, Method]:
    """The chapter's methods as ``(model, images, targets) -> [B, H, W]`` functions.

    Defaults name the layers of `ShapeClassifier`: Grad-CAM at the last convolutional
    stage (16 × 16) and at an earlier one (32 × 32); CAM from ``features`` and ``fc``.
    Guided backprop and the plain gradient are reduced to maps like saliency: max |·| over
    the colour channels.
    """
    from .cam import class_activation_map
    from .grad_cam import grad_cam
    from .guided_backprop import guided_backprop
    from .saliency import saliency

    return {
        "saliency": saliency,
        "CAM": lambda m, x, t: class_activation_map(m, x, t, features, classifier),
        f"Grad-CAM {last_layer}": lambda m, x, t: grad_cam(m, last_layer, x, t),
        f"Grad-CAM {early_layer}": lambda m, x, t: grad_cam(m, early_layer, x, t),
        "guided backprop": lambda m, x, t: guided_backprop(m, x, t).abs().amax(1),
    }


def attention_rollout_method(**rollout_kwargs) -> Method:
    """ViT attention rollout (Abnar & Zuidema, 2020) as a method like the others: the
    rollout of CLS onto the patch grid, upsampled bilinearly to the image size.

    The map is class-agnostic (`targets` is ignored): it says where information flowed
    into the CLS token, not what spoke for a class. Keyword arguments go to
    `cvcourse.interpret.attention.attention_rollout`.
    """
    from ._common import upsample
    from .attention import attention_maps, attention_rollout

    def rollout(model: nn.Module, images: Tensor, targets=None) -> Tensor:
        check_images(images)
        maps = attention_rollout(attention_maps(model, images), **rollout_kwargs)  # (B, h, w)
        return upsample(maps.float(), images.shape[-2:]).to(images.device)

    return rollout
