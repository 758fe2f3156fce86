"""Chapter "Seeing inside a Vision Transformer": figures and the attention explorer widget.

- `patch_tokens_figure`: an image cut into patches, and the token matrix the transformer reads
  (a CLS row, then one flattened patch per row).
- `attention_heads_figure`: the CLS token's attention in every layer (rows) and head (columns)
  for one image, over the image.
- `cls_vs_rollout_figure`: held-out images with the last layer's CLS attention and the
  attention rollout side by side, the object's outline drawn on top.
- `vit_attention_figure` / `vit_attention_widget`: the explorer (layer, head, CLS attention
  vs rollout) on attentions computed once (`cvcourse.interpret.attention.attention_maps`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.patheffects import withStroke

from .. import viz
from ..interpret.attention import attention_rollout, cls_attention, upsample_to_image
from ..models.vit import patchify
from . import check_setting

__all__ = ["VIEWS", "map_for", "patch_tokens_figure", "attention_heads_figure", "cls_vs_rollout_figure",
           "vit_attention_figure", "vit_attention_widget"]

VIEWS = ("CLS attention", "rollout")


def _outline(ax, mask, color="white"):
    if mask is not None:
        ax.contour(np.asarray(torch.as_tensor(mask).cpu(), dtype=float), levels=[0.5], colors=[color],
                   linewidths=1.0)


def _edge_image(mask) -> np.ndarray:
    """RGBA ``[S, S, 4]``: white on the mask's boundary pixels, transparent elsewhere (drawn
    as an image, it is much quicker than a contour)."""
    m = np.asarray(torch.as_tensor(mask).cpu(), dtype=bool)
    inner = m.copy()
    inner[1:-1, 1:-1] = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    edge = np.zeros((*m.shape, 4), dtype=np.float32)
    edge[m & ~inner] = 1.0
    return edge


def _blend(image: np.ndarray, heatmap: torch.Tensor, edge=None, alpha: float = 0.6) -> np.ndarray:
    """`image` ``[S, S, 3]`` with the ``[h, w]`` heatmap (bilinear, min-max scaled, "jet")
    blended on top, like `viz.overlay_heatmap`, as one RGB array (one imshow to draw)."""
    h = upsample_to_image(heatmap.float(), image.shape[0])
    h = h - h.min()
    h = (h / h.max()) if h.max() > 0 else h
    out = (1 - alpha) * image + alpha * colormaps["jet"](h.numpy())[..., :3]
    out = out if edge is None else out * (1 - edge) + edge
    return out.clip(0.0, 1.0)


def map_for(attentions: torch.Tensor, index: int, layer: int, head, view: str) -> torch.Tensor:
    """The ``[h, w]`` map the explorer shows for image `index` of ``[L, B, heads, T, T]``.

    "CLS attention": row 0 of layer `layer` (head `head`, or "mean" / "max" over heads);
    "rollout": attention rollout through layers ``0..layer`` (heads fused by "mean" / "max",
    or only head `head` of every layer).
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    L, B, Hd = attentions.shape[:3]
    check_setting("index", index, 0, B, integer=True, open_high=True)
    check_setting("layer", layer, -L, L, integer=True, open_high=True)  # -1: the last layer
    if head not in ("mean", "max"):
        check_setting("head", head, 0, Hd, integer=True, open_high=True)
    a = attentions[:, index:index + 1]                            # (L, 1, heads, T, T)
    if view == "CLS attention":
        if head == "max":                                         # the strongest head per patch
            return cls_attention(a.amax(2, keepdim=True), layer, 0)[0]
        return cls_attention(a, layer, None if head == "mean" else int(head))[0]
    upto = a[: (layer % a.shape[0]) + 1]
    if head in ("mean", "max"):
        return attention_rollout(upto, head_fusion=head)[0]
    return attention_rollout(upto[:, :, int(head):int(head) + 1])[0]


def patch_tokens_figure(image: torch.Tensor, patch_size: int = 8) -> Figure:
    """Left: the image with its patch grid and each patch's token number. Right: the token
    matrix ``[1 + N, 3·p·p]``: a CLS row (learned, shown blank) above the N flattened patches."""
    _, H, W = image.shape
    g = H // patch_size
    tokens = patchify(image[None], patch_size)[0]                 # (N, 3·p·p)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax0, ax1 = fig.subplots(1, 2, width_ratios=[1, 1.5])
    viz.show_image(image, ax=ax0, title=f"{H}×{W} image → {g}×{g} = {g * g} patches of {patch_size}×{patch_size}")
    for k in range(1, g):
        ax0.axhline(k * patch_size - 0.5, color="white", lw=0.6)
        ax0.axvline(k * patch_size - 0.5, color="white", lw=0.6)
    for i in range(g):
        for j in range(g):
            ax0.text(j * patch_size + 0.8, i * patch_size + 0.6, str(1 + i * g + j), fontsize=5.5, color="white",
                     va="top", ha="left", path_effects=[withStroke(linewidth=1.5, foreground="black")])
    m = torch.cat([torch.full((1, tokens.shape[1]), float("nan")), tokens]).numpy()
    ax1.imshow(m, aspect="auto", cmap="viridis", interpolation="nearest")
    ax1.add_patch(Rectangle((-0.5, -0.5), m.shape[1], 1, facecolor="#e6194b", edgecolor="none"))
    ax1.text(m.shape[1] / 2, 0, "CLS token (learned)", color="white", fontsize=7, ha="center", va="center")
    pp = patch_size * patch_size
    for c, name in enumerate("RGB"):                         # channel-first: R pixels, G pixels, B pixels
        if c:
            ax1.axvline(c * pp - 0.5, color="white", lw=0.8)
        ax1.text((c + 0.5) * pp, m.shape[0] - 1, name, color="white", fontsize=9, ha="center", va="bottom",
                 path_effects=[withStroke(linewidth=2, foreground="black")])
    ax1.set_xlabel(f"feature (3 channels × {patch_size}×{patch_size} pixels = {m.shape[1]})")
    ax1.set_ylabel("token (0 = CLS, then patches row by row)")
    viz.set_title(ax1, f"token matrix [{m.shape[0]}, {m.shape[1]}], before the linear embedding", fontsize=9)
    return fig


def attention_heads_figure(image: torch.Tensor, attentions: torch.Tensor, mask=None, size: float = 1.6) -> Figure:
    """CLS attention of every layer (rows) and head (columns, then their mean) over one image.

    Args:
        image: ``[3, S, S]``; attentions: that image's ``[L, heads, T, T]`` (or ``[L, 1, heads, T, T]``).
        mask: optional ``[S, S]`` object mask, outlined in white.
    """
    a = attentions if attentions.dim() == 5 else attentions[:, None]
    L, _, Hd = a.shape[:3]
    fig, axes = viz.subplots(L, Hd + 1, size=size)
    for layer in range(L):
        for h in range(Hd + 1):
            head = h if h < Hd else None
            m = cls_attention(a, layer, head)[0]
            ax = axes[layer, h]
            viz.overlay_heatmap(image, m, ax=ax, alpha=0.6)
            _outline(ax, mask)
            if layer == 0:
                viz.set_title(ax, f"head {h}" if head is not None else "mean of heads", fontsize=8)
            if h == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=8)
    return fig


def cls_vs_rollout_figure(images: torch.Tensor, attentions: torch.Tensor, masks=None,
                          indices: Sequence[int] = (0, 1, 2, 3), size: float = 1.9) -> Figure:
    """Rows: images `indices`. Columns: image, last layer's CLS attention (mean of heads),
    attention rollout (mean fusion, residual) — each map min-max scaled over the image."""
    fig, axes = viz.subplots(len(indices), 3, size=size)
    rollout = attention_rollout(attentions[:, list(indices)])
    last = cls_attention(attentions[:, list(indices)], -1)
    for r, i in enumerate(indices):
        mask = None if masks is None else masks[i]
        viz.show_image(images[i], ax=axes[r, 0], title="image" if r == 0 else None)
        viz.overlay_heatmap(images[i], last[r], ax=axes[r, 1], alpha=0.6,
                            title="CLS attention, last layer" if r == 0 else None)
        viz.overlay_heatmap(images[i], rollout[r], ax=axes[r, 2], alpha=0.6,
                            title="attention rollout" if r == 0 else None)
        for ax in axes[r]:
            _outline(ax, mask)
    return fig


def vit_attention_figure(images: torch.Tensor, attentions: torch.Tensor, index: int = 0, layer: int = -1,
                         head="mean", view: str = "rollout", masks=None, titles: Sequence[str] | None = None) -> Figure:
    """The explorer's figure: image `index`, the chosen map over it, and that layer's full
    ``T × T`` attention matrix (the CLS row, which the map is cut from, outlined).

    Args:
        images: ``[B, 3, S, S]``; attentions: their ``[L, B, heads, T, T]`` (computed once).
        layer: for "CLS attention" the layer shown; for "rollout" the last layer rolled out.
        head: an int, "mean" or "max" (see `map_for`); view: one of `VIEWS`.
        masks: optional ``[B, S, S]`` object masks (outlined); titles: optional per image.
    """
    L, B, Hd, T, _ = attentions.shape
    check_setting("index", index, 0, B, integer=True, open_high=True)
    check_setting("layer", layer, -L, L, integer=True, open_high=True)  # -1: the last layer
    layer = layer % L  # a negative layer counts from the end, as Python's indexing
    m = map_for(attentions, index, layer, head, view)
    # One Axes holding three pre-blended RGB panels, no ticks, no layout engine: axes
    # creation, layout and tick labels were most of the redraw time (target < 150 ms).
    S = images.shape[-1]
    image = viz.to_numpy_image(images[index])                    # (S, S, 3)
    edge = None if masks is None else _edge_image(masks[index])[..., :1]
    heat = _blend(image, m, edge)
    a = attentions[layer, index]                                 # (heads, T, T)
    mat = a.mean(0) if head == "mean" else a.amax(0) if head == "max" else a[int(head)]
    mat = colormaps["magma"]((mat / mat.max().clamp_min(1e-12)).numpy())[..., :3]
    if edge is not None:
        image = (image * (1 - edge) + edge).clip(0.0, 1.0)
    fig = Figure(figsize=(9, 3.3))
    ax = fig.add_axes((0, 0, 1, 1))
    gap = 0.12 * S
    for k, (panel, size) in enumerate([(image, S), (heat, S), (mat, S)]):
        x0 = k * (S + gap)
        ax.imshow(panel, extent=(x0, x0 + size, S, 0), interpolation="nearest")
    x1 = 2 * (S + gap)
    cell = S / T
    ax.add_patch(Rectangle((x1 + cell, 0), S - cell, cell, fill=False, edgecolor="#00ff9c", lw=1.2))
    what = f"layer {layer}" if view == "CLS attention" else f"layers 0..{layer}"
    who = f"head {head}" if head not in ("mean", "max") else f"{head} of heads"
    who_map = f"head {head} of each layer" if view == "rollout" and head not in ("mean", "max") else who
    titles_ = [titles[index] if titles else f"held-out image {index}", f"{view}\n{what}, {who_map}",
               f"layer {layer} attention [{T}×{T}], {who}\nrow: query, column: key (0 = CLS)"]
    for k, t in enumerate(titles_):
        ax.text(k * (S + gap) + S / 2, -1.5, t, ha="center", va="bottom", fontsize=9)
    ax.set_xlim(-gap / 2, 3 * S + 2.5 * gap)
    ax.set_ylim(S + gap / 4, -0.3 * S)
    ax.axis("off")
    return fig


def vit_attention_widget(images: torch.Tensor, attentions: torch.Tensor, masks=None,
                         titles: Sequence[str] | None = None):
    """Explore `vit_attention_figure`: image, layer, head and CLS attention vs rollout.
    Pass attentions computed once with `attention_maps`; nothing is recomputed per redraw
    but one image's rollout (a few 65×65 products)."""
    import ipywidgets as W

    from . import interactive_figure
    from .static import evenly

    L, B, Hd = attentions.shape[:3]
    return interactive_figure(vit_attention_figure, {
        "index": W.IntSlider(value=0, min=0, max=B - 1, description="image"),
        "layer": W.IntSlider(value=L - 1, min=0, max=L - 1, description="layer"),
        "head": W.Dropdown(options=["mean", "max", *range(Hd)], value="mean", description="head"),
        "view": W.ToggleButtons(options=list(VIEWS), value="rollout", description="map"),
        "images": W.fixed(images), "attentions": W.fixed(attentions), "masks": W.fixed(masks),
        "titles": W.fixed(titles),
    }, columns=2, grid={"index": evenly(range(B), 4), "layer": evenly(range(L), 3, L - 1), "view": list(VIEWS)})
