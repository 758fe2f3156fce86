"""Drawing for every chapter: images, boxes, masks, heatmaps, grids, loss curves.

Each function is pure: it draws into the `ax` it is given (or a new figure when `ax` is
None) and returns the `matplotlib.figure.Figure`. Figures are made with
``matplotlib.figure.Figure`` rather than pyplot, so nothing is left open, a notebook shows
a returned figure exactly once, and widgets can redraw by calling the same function.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle

# One colour per class index (0 = background), reused by every chapter.
CLASS_COLORS = ["#222222", "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4",
                "#46f0f0", "#f032e6", "#bcf60c", "#fabebe", "#008080", "#e6beff"]
# Distinct colours for instances (independent of class).
INSTANCE_COLORS = ["#ffe119", "#00c8ff", "#ff4fa3", "#7cff4f", "#ff8c1a", "#b68cff",
                   "#ffffff", "#00ff9c", "#ff5050", "#4f7cff"]


def new_axes(ax: Axes | None = None, figsize=(4, 4)) -> Axes:
    """`ax` itself, or the single axes of a new Figure of `figsize`."""
    if ax is not None:
        return ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig.add_subplot()


def subplots(nrows: int = 1, ncols: int = 1, size: float = 3.0, **kw) -> tuple[Figure, np.ndarray]:
    """A new Figure with a grid of axes (always a 2-D array), each about `size` inches."""
    fig = Figure(figsize=(size * ncols, size * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def image_row(n: int, size: float = 3.0, title_lines: int = 2, gap: float = 0.2) -> tuple[Figure, list]:
    """A new Figure with `n` square image axes of `size` inches in a row, room above each
    for a title of `title_lines` lines (fontsize 9), at fixed places: no layout engine, whose
    pass at every draw would take about a third of a widget's redraw."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n!r}")
    top = 0.16 * title_lines + 0.14                      # inches: the title lines and the 6 pt pad
    width, height = n * size + (n + 1) * gap, size + top + gap
    fig = Figure(figsize=(width, height))
    axes = [fig.add_axes(((gap + i * (size + gap)) / width, gap / height, size / width, size / height))
            for i in range(n)]
    return fig, axes


def to_numpy_image(image) -> np.ndarray:
    """A ``[3,H,W]`` / ``[H,W]`` tensor, or a ``[H,W,3]`` / ``[3,H,W]`` / ``[H,W]`` array, as an
    ``[H,W,(3)]`` float array. A 3-D tensor is always channels-first (torch's convention)."""
    channels_first = torch.is_tensor(image)
    if channels_first:
        image = image.detach().float().cpu().numpy()
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3 and image.shape[0] in (1, 3) and (channels_first or image.shape[-1] not in (1, 3)):
        image = image.transpose(1, 2, 0)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be [3,H,W], [H,W,3] or [H,W], got shape {image.shape}")
    return np.clip(image, 0.0, 1.0) if image.ndim == 3 else image


def set_title(ax: Axes, title: str, fontsize: float = 9, **kw):
    """``ax.set_title`` at its default place (centred, 6 pt above the axes) without the
    automatic placement that measures the axes' tick labels at every draw (~15 ms an axes on
    matplotlib 3.11, pixel-identical here): for axes with no tick labels above them."""
    return ax.set_title(title, fontsize=fontsize, y=1.0, **kw)


def show_image(image, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Show an image (``[3,H,W]`` tensor in [0, 1], or anything `to_numpy_image` takes)."""
    ax = new_axes(ax)
    img = to_numpy_image(image)
    ax.imshow(img, cmap=None if img.ndim == 3 else "gray", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        set_title(ax, title)
    return ax.figure


def semantic_cmap(num_classes: int) -> mcolors.ListedColormap:
    return mcolors.ListedColormap(CLASS_COLORS[:num_classes])


def show_semantic(semantic, class_names: Sequence[str], ax: Axes | None = None,
                  title: str | None = None, legend: bool = True) -> Figure:
    """Show a ``[H,W]`` map of class indices in the fixed class colours, with a legend."""
    sem = semantic.detach().cpu().numpy() if torch.is_tensor(semantic) else np.asarray(semantic)
    if sem.ndim != 2:
        raise ValueError(f"semantic must be a [H, W] map of class indices, got shape {sem.shape}")
    n = len(class_names)
    ax = new_axes(ax)
    ax.imshow(sem, cmap=semantic_cmap(n), vmin=-0.5, vmax=n - 0.5, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        set_title(ax, title)
    if legend:
        present = [c for c in range(n) if (sem == c).any()]
        ax.legend(handles=[Patch(color=CLASS_COLORS[c], label=class_names[c]) for c in present],
                  fontsize=7, loc="lower right", framealpha=0.7)
    return ax.figure


def draw_box(ax: Axes, box, color, linewidth: float = 1.8, linestyle: str = "-",
             dx: float = 0.0) -> None:
    """Outline one xyxy `box` (pixel edges) on `ax`, shifted right by `dx` pixels.

    Pixel ``j`` covers ``[j, j + 1)`` and imshow centres it at ``j``, hence the -0.5.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    ax.add_patch(Rectangle((dx + x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False,
                           edgecolor=color, linewidth=linewidth, linestyle=linestyle))


def draw_boxes(image, boxes, labels=None, scores=None, class_names: Sequence[str] | None = None,
               ax: Axes | None = None, title: str | None = None, color_by: str = "class",
               linestyle: str = "-") -> Figure:
    """Draw xyxy `boxes` ``[N,4]`` on `image` (or on the existing axes if `image` is None).

    Labels are drawn as ``name score`` above each box; colours follow the class
    (``color_by="class"``) or the instance (``color_by="instance"``).
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4).detach().cpu()
    n = len(boxes)
    if labels is not None and len(labels) != n:
        raise ValueError(f"labels must have one entry per box ({n}), got {len(labels)}")
    if scores is not None and len(scores) != n:
        raise ValueError(f"scores must have one entry per box ({n}), got {len(scores)}")
    if color_by not in ("class", "instance"):
        raise ValueError(f"color_by must be 'class' or 'instance', got {color_by!r}")
    ax = new_axes(ax)
    if image is not None:
        show_image(image, ax=ax, title=title)
    elif title:
        set_title(ax, title)
    for i, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        lab = int(labels[i]) if labels is not None else None
        if color_by == "class" and lab is not None:
            color = CLASS_COLORS[lab % len(CLASS_COLORS)]
        else:
            color = INSTANCE_COLORS[i % len(INSTANCE_COLORS)]
        draw_box(ax, (x1, y1, x2, y2), color, linestyle=linestyle)
        text = []
        if lab is not None:
            text.append(class_names[lab] if class_names is not None else str(lab))
        if scores is not None:
            text.append(f"{float(scores[i]):.2f}")
        if text:
            ax.text(x1 - 0.5, y1 - 1.5, " ".join(text), fontsize=7, color="white", va="bottom",
                    bbox=dict(facecolor=color, alpha=0.8, pad=1, linewidth=0))
    return ax.figure


def overlay_masks(image, masks, ax: Axes | None = None, alpha: float = 0.55,
                  title: str | None = None, labels=None, outline: bool = True) -> Figure:
    """Overlay instance `masks` ``[N,H,W]`` (bool or probabilities ≥ 0.5) on `image`,
    one colour per instance."""
    m = torch.as_tensor(masks).detach().cpu()
    if m.dim() == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.dim() != 3:
        raise ValueError(f"masks must be [N, H, W] (or [N, 1, H, W]), got shape {tuple(m.shape)}")
    m = (m >= 0.5) if m.is_floating_point() else m.bool()
    img = to_numpy_image(image)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    if m.shape[1:] != img.shape[:2]:
        raise ValueError(f"masks are {tuple(m.shape[1:])} but the image is {img.shape[:2]}")
    out = img.copy()
    masks_np = m.numpy()
    for i, mask in enumerate(masks_np):
        rgb = np.array(mcolors.to_rgb(INSTANCE_COLORS[i % len(INSTANCE_COLORS)]))
        out[mask] = (1 - alpha) * out[mask] + alpha * rgb
    if outline:  # each mask's edge pixels in full colour (in the image: no contour to trace)
        for i, mask in enumerate(masks_np):
            out[mask_edges(mask)] = mcolors.to_rgb(INSTANCE_COLORS[i % len(INSTANCE_COLORS)])
    ax = new_axes(ax)
    show_image(out, ax=ax, title=title)
    return ax.figure


def mask_edges(mask: np.ndarray) -> np.ndarray:
    """The pixels of a boolean ``[H, W]`` `mask` with a 4-neighbour outside it (or off the
    image)."""
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    inner[[0, -1], :] = False
    inner[:, [0, -1]] = False
    return mask & ~inner


def overlay_heatmap(image, heatmap, ax: Axes | None = None, alpha: float = 0.5,
                    cmap: str = "jet", title: str | None = None) -> Figure:
    """Overlay a ``[h,w]`` heatmap on `image`, upsampled bilinearly to the image size and
    min-max normalised (a constant map shows as zeros)."""
    img = to_numpy_image(image)
    h = torch.as_tensor(heatmap, dtype=torch.float32).detach().cpu()
    if h.dim() != 2:
        raise ValueError(f"heatmap must be [h, w], got shape {tuple(h.shape)}")
    if h.shape != img.shape[:2]:
        h = torch.nn.functional.interpolate(h[None, None], size=img.shape[:2], mode="bilinear",
                                            align_corners=False)[0, 0]
    h = h - h.min()
    h = (h / h.max()) if h.max() > 0 else h
    ax = new_axes(ax)
    show_image(img, ax=ax, title=title)
    ax.imshow(h.numpy(), cmap=cmap, alpha=alpha, vmin=0, vmax=1, interpolation="bilinear")
    return ax.figure


def image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 4,
               size: float = 2.2) -> Figure:
    """A grid of images with optional titles."""
    n = len(images)
    if n == 0:
        raise ValueError("images must not be empty")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must have one entry per image ({n}), got {len(titles)}")
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    fig, axes = subplots(nrows, ncols, size=size)
    for i, ax in enumerate(axes.flat):
        if i < n:
            show_image(images[i], ax=ax, title=titles[i] if titles else None)
        else:
            ax.axis("off")
    return fig


def plot_history(history, ax: Axes | None = None, title: str = "training loss",
                 parts: bool = True, window: int = 20) -> Figure:
    """Loss per step (light) and its running mean (bold); named parts when there are several."""
    ax = new_axes(ax, figsize=(5, 3))
    steps = np.arange(1, len(history.loss) + 1)
    ax.plot(steps, history.loss, color="#999999", lw=0.7, label="loss")
    ax.plot(steps, history.smoothed(window), color="black", lw=1.8, label=f"mean of {window}")
    if parts and len(history.parts) > 1:
        for k, v in history.parts.items():
            ax.plot(steps, v, lw=0.9, label=k)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return ax.figure
