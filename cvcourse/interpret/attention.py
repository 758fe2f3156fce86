"""Reading a Vision Transformer's attention: per-layer maps, the CLS token's attention, rollout.

A ViT's self-attention weights ``A[l] ∈ [B, heads, T, T]`` say, for every query token, how
much of every key token's value it mixes in at layer ``l``. Token 0 is CLS, whose final
vector the classifier reads; tokens ``1..T-1`` are the patches, row-major on an ``h × w``
grid. Two ways to turn them into a saliency-map-like picture over the patch grid:

- `cls_attention`: row 0 of one layer's attention (what CLS looks at in that layer);
- `attention_rollout` (Abnar & Zuidema, 2020): follow attention through *all* layers,
  accounting for the residual connections by mixing each layer's attention with the
  identity, ``Â = 0.5·A + 0.5·I`` (rows renormalised), and multiplying:
  ``R = Â[L-1] ··· Â[1] Â[0]``. Row 0 of R says how much each input patch flowed into CLS.

Taught in book/int_vit.ipynb.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import check_images, explaining, model_device

__all__ = ["attention_maps", "cls_attention", "attention_rollout", "upsample_to_image", "HEAD_FUSIONS"]

HEAD_FUSIONS = ("mean", "max", "min")


@torch.no_grad()
def attention_maps(model: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """Every layer's attention weights for `images`, stacked: ``[L, B, heads, T, T]``.

    Args:
        model: a `VisionTransformer` (anything whose ``forward(x, return_attention=True)``
            returns ``(logits, list of [B, heads, T, T])``). It is run in eval mode without
            gradients and left as found (each submodule's mode, ``requires_grad``); its
            parameters are not touched.
        images: ``[B, 3, S, S]`` (or one image ``[3, S, S]``); moved to the model's device.
        batch_size: images per forward pass (bounds memory).

    Returns:
        attention weights on the images' device, float32; ``out[l, b, h, i, j]`` is how much
        query token i attends to key token j in layer l, head h (rows sum to 1).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not torch.is_tensor(images) or images.dim() not in (3, 4):
        shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images must be a [B, 3, S, S] tensor (or one [3, S, S] image), got {shape}")
    if images.dim() == 3:
        images = images[None]
    check_images(images)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    device = model_device(model, images.device)
    chunks = []
    with explaining(model), torch.no_grad():  # every submodule's mode restored on exit
        for start in range(0, images.shape[0], batch_size):
            _, attns = model(images[start:start + batch_size].to(device), return_attention=True)
            chunks.append(torch.stack(attns).float())        # (L, b, heads, T, T)
    return torch.cat(chunks, dim=1).to(images.device)


def _as_stack(attentions) -> Tensor:
    """A list of ``[B, heads, T, T]`` or a ``[L, B, heads, T, T]`` tensor → the tensor."""
    if isinstance(attentions, (list, tuple)):
        if not attentions:
            raise ValueError("attentions must hold at least one layer, got an empty list")
        attentions = torch.stack(list(attentions))
    if not torch.is_tensor(attentions) or attentions.dim() != 5 or attentions.shape[-1] != attentions.shape[-2]:
        shape = tuple(attentions.shape) if torch.is_tensor(attentions) else type(attentions).__name__
        raise ValueError(f"attentions must be [L, B, heads, T, T] (or a list of [B, heads, T, T]), got {shape}")
    return attentions


def _grid(row: Tensor) -> Tensor:
    """Patch scores ``[..., T-1]`` (CLS dropped) → ``[..., h, w]`` on the square patch grid."""
    n = row.shape[-1]
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"the {n} patch tokens do not form a square grid (expected T - 1 = h*h)")
    return row.reshape(*row.shape[:-1], side, side)


def cls_attention(attentions, layer: int, head: int | None = None) -> Tensor:
    """What the CLS token attends to in one layer, on the patch grid: ``[B, h, w]``.

    Args:
        attentions: ``[L, B, heads, T, T]`` from `attention_maps` (or the model's list).
        layer: which layer (negative counts from the end, like a list index).
        head: which head; None averages the heads.

    Returns:
        ``A[layer, :, head, 0, 1:]`` reshaped to the ``h × w`` patch grid (the CLS→CLS weight
        is dropped, so a map sums to at most 1).
    """
    a = _as_stack(attentions)
    L, _, H = a.shape[:3]
    if not isinstance(layer, int) or not -L <= layer < L:
        raise ValueError(f"layer must be an int in [-{L}, {L}), got {layer!r}")
    if head is not None and (not isinstance(head, int) or not 0 <= head < H):
        raise ValueError(f"head must be None (mean of heads) or an int in [0, {H}), got {head!r}")
    row = a[layer, :, :, 0, 1:]                              # (B, heads, T-1)
    row = row.mean(1) if head is None else row[:, head]      # (B, T-1)
    return _grid(row)


def _fuse_heads(a: Tensor, head_fusion: str) -> Tensor:
    if head_fusion == "mean":
        return a.mean(1)
    if head_fusion == "max":
        return a.amax(1)
    return a.amin(1)


def _discard_lowest(fused: Tensor, discard_ratio: float) -> Tensor:
    """Zero the `discard_ratio` smallest weights of each image's ``[T, T]`` attention.

    Gildenblat's variant of rollout, which sharpens the map; CLS→CLS is never zeroed.
    """
    B, T, _ = fused.shape
    k = int(T * T * discard_ratio)
    if k == 0:
        return fused
    flat = fused.reshape(B, T * T)
    lowest = flat.topk(k, dim=-1, largest=False).indices      # (B, k)
    keep = torch.ones_like(flat).scatter_(1, lowest, 0.0)     # (B, T*T)
    keep[:, 0] = 1.0                                           # keep CLS→CLS
    return (flat * keep).reshape(B, T, T)


def _residual_attention(fused: Tensor, residual: bool) -> Tensor:
    """``Â = 0.5·A + 0.5·I`` (with `residual`), rows renormalised to sum to 1: ``[B, T, T]``.

    The identity stands for the skip connection around attention, which carries each
    token's own value to the next layer next to what attention mixes in.
    """
    if residual:
        fused = 0.5 * fused + 0.5 * torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
    return fused / fused.sum(-1, keepdim=True).clamp_min(1e-12)  # rows sum to 1


def attention_rollout(attentions, head_fusion: str = "mean", discard_ratio: float = 0.0,
                      residual: bool = True) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) of CLS onto the patch grid: ``[B, h, w]``.

    For each layer l: fuse the heads (`head_fusion`: "mean", "max" or "min" over heads) to
    ``A_l [B, T, T]``; optionally zero the `discard_ratio` smallest weights of each image
    (`_discard_lowest`); with `residual` take ``0.5·A_l + 0.5·I`` and renormalise the rows
    to sum to 1 (`_residual_attention`). Then ``R = A_{L-1} ··· A_1 A_0`` and the map is row 0
    of R without its CLS entry: how much of each input patch reached the CLS token.

    Args:
        attentions: ``[L, B, heads, T, T]`` from `attention_maps` (or the model's list).
        head_fusion: "mean" (the paper's choice), "max" or "min".
        discard_ratio: fraction in [0, 1) of each fused layer's weights to set to zero.
        residual: mix in the identity (True, the paper's rollout) or multiply raw attention.

    Returns:
        ``[B, h, w]``, non-negative; sums to at most 1 per image.
    """
    a = _as_stack(attentions)
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if not 0.0 <= float(discard_ratio) < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio!r}")
    L, B, _, T, _ = a.shape
    rollout = torch.eye(T, dtype=a.dtype, device=a.device).expand(B, T, T)
    for layer in range(L):
        fused = _fuse_heads(a[layer], head_fusion)                # (B, T, T)
        fused = _discard_lowest(fused, discard_ratio)             # (B, T, T)
        rollout = _residual_attention(fused, residual) @ rollout  # (B, T, T)
    return _grid(rollout[:, 0, 1:])


def upsample_to_image(maps: Tensor, size: int | Sequence[int]) -> Tensor:
    """Bilinearly resize patch-grid maps ``[B, h, w]`` (or one ``[h, w]``) to ``size`` pixels.

    Each patch's value lands on its patch's centre (``align_corners=False``), as when the
    map is drawn over the image. Returns ``[B, H, W]`` (or ``[H, W]``).
    """
    if not torch.is_tensor(maps) or maps.dim() not in (2, 3):
        shape = tuple(maps.shape) if torch.is_tensor(maps) else type(maps).__name__
        raise ValueError(f"maps must be [B, h, w] or [h, w], got {shape}")
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be a positive int or (H, W), got {size!r}")
    x = maps[None] if maps.dim() == 2 else maps
    out = F.interpolate(x[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    return out[0] if maps.dim() == 2 else out
