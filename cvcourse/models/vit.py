"""A small Vision Transformer (Dosovitskiy et al., 2021) written with plain nn modules.

The image is cut into non-overlapping ``patch_size × patch_size`` patches; each patch is
flattened and linearly projected to a ``dim``-vector (a "token"). A learned CLS token is
put in front, learned position embeddings are added, and ``depth`` pre-norm transformer
blocks (multi-head self-attention, then an MLP, each with a residual connection) mix the
tokens. The class is read from the CLS token's final vector.

``stem="conv"`` replaces the one-step patch projection by a small convolutional stem (Xiao
et al., 2021, "Early convolutions help transformers see better"): ``log2(patch_size)``
3×3 stride-2 conv-BN-ReLU layers, then the 1×1 projection ``patch_embed``. Each token is
still one ``patch_size × patch_size`` cell of the image, but its vector is computed from a
slightly larger window by a few nonlinear layers rather than by one linear map. On the
course's textured scenes the plain ViT stayed at chance (loss ln 3) for thousands of steps;
with the stem it trains in the course's budget (the chapter shows both).

The attention is our own (not ``nn.MultiheadAttention``) so that every layer can hand back
its attention weights ``softmax(q kᵀ / √d_h)`` ``[B, heads, T, T]`` (``d_h = dim / heads``, one
head's width) — what the chapter
"Seeing inside a Vision Transformer" draws, and what attention rollout multiplies. Its
parameters are laid out like ``nn.MultiheadAttention``'s (one ``qkv`` projection holding
q, k, v stacked, then ``proj``), so the test copies weights across and compares outputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backbone import Standardize
from .checks import check_images


class Attention(nn.Module):
    """Multi-head self-attention that can return its attention weights.

    Args:
        dim: token width; heads: number of heads (``dim`` must be divisible by it).

    Input ``[B, T, dim]``; output ``[B, T, dim]`` and, with ``return_attention=True``, the
    attention weights ``[B, heads, T, T]`` (each row sums to 1: query t's weights over keys).
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim must be divisible by heads, got dim={dim}, heads={heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)   # q, k, v stacked like nn.MultiheadAttention's in_proj
        self.proj = nn.Linear(dim, dim)      # like its out_proj

    def forward(self, x: Tensor, return_attention: bool = False):
        """Tokens ``[B, T, dim]`` after attention (and the ``[B, heads, T, T]`` weights if asked)."""
        if x.dim() != 3 or x.shape[-1] != self.heads * self.head_dim:
            raise ValueError(f"x must be [B, T, {self.heads * self.head_dim}] tokens, got shape {tuple(x.shape)}")
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.heads, self.head_dim)   # (B, T, 3, h, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                           # each (B, h, T, d)
        if not return_attention:  # the same computation, fused (faster; weights not kept)
            out = F.scaled_dot_product_attention(q, k, v)              # (B, h, T, d)
            return self.proj(out.transpose(1, 2).reshape(B, T, D))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)    # (B, h, T, T)
        attn = scores.softmax(dim=-1)                                  # rows sum to 1
        out = (attn @ v).transpose(1, 2).reshape(B, T, D)             # (B, T, h·d)
        return self.proj(out), attn


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(LN(x))``, then ``x + mlp(LN(x))``."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 2.0):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, return_attention: bool = False):
        """One pre-norm block: attention, then MLP, each with a residual (and the attention if asked)."""
        if return_attention:
            a, attn = self.attn(self.norm1(x), return_attention=True)
        else:
            a, attn = self.attn(self.norm1(x)), None
        x = x + a                                  # (B, T, dim)
        x = x + self.mlp(self.norm2(x))            # (B, T, dim)
        return (x, attn) if return_attention else x


class VisionTransformer(nn.Module):
    """per-image standardization → patch embedding + CLS + positions → blocks → LN → linear.

    Args:
        image_size: side of the square input (a multiple of `patch_size`).
        patch_size: side of each patch; the patch grid is ``image_size / patch_size`` square.
        num_classes: outputs (3: circle, square, triangle).
        dim: token width; depth: number of blocks; heads: attention heads per block;
        mlp_ratio: MLP hidden width as a multiple of `dim`.
        stem: "patch" (the original: one linear map per patch) or "conv" (3×3 stride-2
            convolutions down to the patch grid, then a 1×1 projection; `patch_size` must
            be a power of two).

    ``forward(x)`` takes ``[B, 3, image_size, image_size]`` and returns logits
    ``[B, num_classes]``; with ``return_attention=True`` it returns ``(logits, attentions)``,
    a list of `depth` tensors ``[B, heads, T, T]`` with ``T = 1 + (image_size/patch_size)²``
    tokens, token 0 being CLS and tokens 1.. the patches in row-major order.
    """

    def __init__(self, image_size: int = 64, patch_size: int = 8, num_classes: int = 3, dim: int = 64,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 2.0, stem: str = "patch"):
        super().__init__()
        if stem not in ("patch", "conv"):
            raise ValueError(f"stem must be 'patch' or 'conv', got {stem!r}")
        for name, v in (("image_size", image_size), ("patch_size", patch_size), ("num_classes", num_classes),
                        ("dim", dim), ("depth", depth), ("heads", heads)):
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        if image_size % patch_size:
            raise ValueError(f"image_size must be a multiple of patch_size, got {image_size} and {patch_size}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        self.image_size, self.patch_size = image_size, patch_size
        self.grid = image_size // patch_size
        self.num_tokens = 1 + self.grid ** 2
        self.standardize = Standardize()
        if stem == "patch":
            # A conv with kernel = stride = patch_size is "flatten each patch, then one Linear".
            self.stem = nn.Identity()
            self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size)
        else:
            halvings = patch_size.bit_length() - 1
            if patch_size != 2 ** halvings or halvings < 1:
                raise ValueError(f"stem='conv' needs a power-of-two patch_size >= 2, got {patch_size}")
            layers, c = [], 3
            for i in range(halvings):          # channels double up to dim/2: 8, 16, 32 for dim 64
                out = max(8, dim // 2 ** (halvings - i))
                layers += [nn.Conv2d(c, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out),
                           nn.ReLU(inplace=True)]
                c = out
            self.stem = nn.Sequential(*layers)                     # (B, c, S/p, S/p)
            self.patch_embed = nn.Conv2d(c, dim, kernel_size=1)    # the per-token projection
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, dim))
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self):
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def tokens(self, x: Tensor) -> Tensor:
        """Images ``[B, 3, S, S]`` → input tokens ``[B, T, dim]`` (CLS first, positions added)."""
        if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 3:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must be a [B, 3, H, W] image batch, got shape {got}")
        check_images(x, "x")  # dtype, finite, range
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"x must be {self.image_size}x{self.image_size} images, "
                             f"got {x.shape[-2]}x{x.shape[-1]}")
        p = self.patch_embed(self.stem(self.standardize(x)))  # (B, dim, g, g)
        p = p.flatten(2).transpose(1, 2)                     # (B, g·g, dim), patches row-major
        cls = self.cls_token.expand(x.shape[0], -1, -1)      # (B, 1, dim)
        return torch.cat([cls, p], dim=1) + self.pos_embed   # (B, T, dim)

    def forward(self, x: Tensor, return_attention: bool = False):
        """Class logits ``[B, C]`` of images (and each block's attention if asked)."""
        t = self.tokens(x)
        attentions = []
        for block in self.blocks:
            if return_attention:
                t, attn = block(t, return_attention=True)   # attn (B, heads, T, T)
                attentions.append(attn)
            else:
                t = block(t)
        logits = self.head(self.norm(t[:, 0]))              # CLS token → (B, num_classes)
        return (logits, attentions) if return_attention else logits


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut ``[B, C, H, W]`` images into flattened patches ``[B, (H/p)(W/p), C·p·p]``, row-major.

    The reshape the patch embedding performs before its linear projection:
    ``patch_embed(x)`` equals ``patchify(x, p) @ W.view(dim, -1).T + b``.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be [B, C, H, W], got shape {tuple(images.shape)}")
    B, C, H, W = images.shape
    p = patch_size
    if H % p or W % p:
        raise ValueError(f"image height and width must be multiples of patch_size={p}, got {H}x{W}")
    x = images.reshape(B, C, H // p, p, W // p, p)            # (B, C, gh, p, gw, p)
    x = x.permute(0, 2, 4, 1, 3, 5)                            # (B, gh, gw, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)        # (B, N, C·p·p)


__all__ = ["Attention", "Block", "VisionTransformer", "patchify"]
