"""Chapters on visualization and understanding: filters, saliency, CAM, Grad-CAM, guided
backprop, and how to evaluate them.

- `filters_figure`: first-layer filters as RGB images, one row per model.
- `maps_figure`: images (with the target's outline) above one row of maps per method.
- `randomization_figure` / `randomization_maps_figure`: the cascading randomization test.
- `evaluation_figure`: pointing game and randomization scores of every method, side by side.
- `faithfulness_figure`: deletion and insertion curves (Petsiuk et al., 2018), one line per method.
- `explanation_figure` / `explanation_widget`: the explanation explorer — scene, target
  class, method and layer; maps cached per scene so redraws stay fast.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from matplotlib.figure import Figure

from .. import viz
from ..data import CLASSES

__all__ = [
    "filters_figure", "channels_figure", "gradient_rgb", "maps_figure", "randomization_figure",
    "randomization_maps_figure", "evaluation_figure",
    "EXPLORER_METHODS", "EXPLORER_LAYERS", "explorer_scenes", "explanation_map", "explanation_figure",
    "explanation_widget",
]

CLASS_NAMES = CLASSES[1:]  # the classifier's classes 0..2: circle, square, triangle
MAP_CMAP = "inferno"


# ------------------------------------------------------------------------------ mosaics
# Figures with many small panels are drawn as ONE image (a mosaic) in one axes: creating
# dozens of matplotlib axes, contours and a layout engine costs seconds on a small CPU,
# one imshow costs milliseconds, and the picture is the same.
def _rgb(image: torch.Tensor) -> np.ndarray:
    return viz.to_numpy_image(image)


def _map_rgb(m: torch.Tensor, image: torch.Tensor | None = None, alpha: float = 0.55,
             vmax: float | None = None) -> np.ndarray:
    """A ``[H, W]`` map coloured with `MAP_CMAP`: on its own (from 0, or the map's minimum if
    negative, to `vmax`, by default the map's 99.5th percentile, so that a few extreme pixels
    do not hide the rest) or, min-max normalised, blended over `image`."""
    from matplotlib import colormaps

    a = m.detach().float().cpu().numpy()
    if image is None:
        hi = float(np.percentile(a, 99.5)) if vmax is None else vmax
        lo = min(0.0, float(a.min()))
        return colormaps[MAP_CMAP](np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1))[..., :3]
    a = a - a.min()
    a = a / a.max() if a.max() > 0 else a
    return (1 - alpha) * _rgb(image) + alpha * colormaps[MAP_CMAP](a)[..., :3]


def _with_outline(rgb: np.ndarray, mask: torch.Tensor | None, color=(0.0, 1.0, 1.0), alpha: float = 0.8) -> np.ndarray:
    """`rgb` with the mask's boundary pixels (inside the mask) painted in `color`."""
    if mask is None or not mask.any():
        return rgb
    from ..interpret import boundary_band

    edge = (boundary_band(mask[None].cpu(), 3)[0] & mask.cpu()).numpy()
    out = rgb.copy()
    out[edge] = (1 - alpha) * out[edge] + alpha * np.asarray(color)
    return out


def _peak(m: torch.Tensor) -> tuple[int, int]:
    """(row, column) of a map's maximum (for [3, H, W] gradients: of max |.| over channels)."""
    m = m.detach().float().cpu()
    if m.dim() == 3:
        m = m.abs().amax(0)
    y, x = np.unravel_index(int(m.argmax()), tuple(m.shape))
    return int(y), int(x)


def _mosaic(grid, row_labels=None, col_titles=None, size: float = 1.6, stars=(), title: str | None = None,
            pad: int | None = None) -> Figure:
    """Panels ``grid[r][c]`` (``[h, w, 3]`` arrays of one size, or None) as one image.

    `stars` are ``(r, c, y, x, hit)``: a star at pixel (y, x) of panel (r, c), green for a
    hit, red otherwise.
    """
    rows, cols = len(grid), max(len(r) for r in grid)
    h, w = next(p for r in grid for p in r if p is not None).shape[:2]
    pad = max(1, round(0.08 * h)) if pad is None else pad
    canvas = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad, 3))
    for r, row in enumerate(grid):
        for c, panel in enumerate(row):
            if panel is not None:
                canvas[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = panel
    left = 0.9 if row_labels else 0.05
    lines = max((t.count("\n") + 1 for t in col_titles), default=0) if col_titles else 0
    top = 0.1 + 0.19 * lines + (0.3 if title else 0.0)
    width, height = cols * size + left, rows * size * h / w + top
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((left / width, 0, 1 - left / width - 0.01, 1 - top / height))
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    for r, label in enumerate(row_labels or []):
        ax.text(-pad, r * (h + pad) + h / 2, label, ha="right", va="center", fontsize=8)
    for c, label in enumerate(col_titles or []):
        ax.text(c * (w + pad) + w / 2, -pad, label, ha="center", va="bottom", fontsize=8)
    if stars:
        ys = [r * (h + pad) + y for r, c, y, x, hit in stars]
        xs = [c * (w + pad) + x for r, c, y, x, hit in stars]
        ax.scatter(xs, ys, marker="*", s=70, c=["lime" if s[4] else "red" for s in stars],
                   edgecolors="black", linewidths=0.5)
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.05 / height)
    return fig


# ------------------------------------------------------------------------------ filters
def filters_figure(weights: dict, size: float = 0.55, title: str | None = None) -> Figure:
    """One row per entry of ``{name: first-layer weight [K, 3, k, k]}``, one RGB image per
    filter (`cvcourse.interpret.filter_images`: grey = 0, each filter scaled on its own)."""
    from ..interpret import filter_images

    if not weights:
        raise ValueError("weights must hold at least one {name: [K, 3, k, k]} entry")
    rows = {name: filter_images(w).numpy() for name, w in weights.items()}
    k = max(len(r) for r in rows.values())
    return _mosaic([list(r) for r in rows.values()], list(rows), [str(c) for c in range(k)], size=size,
                   title=title)


def channels_figure(image: torch.Tensor, activations: dict, mask: torch.Tensor | None = None,
                    channels=None, size: float = 1.05) -> Figure:
    """The image, then one row per model of its channels' feature maps.

    Args:
        image: ``[3, H, W]``.
        activations: ``{name: [K, H, W]}`` (e.g. the first layer after its ReLU).
        mask: ``[H, W]`` bool, outlined on the image.
        channels: which channels to show (default all); each map is scaled to its own maximum
            (white), 0 is black.
    """
    first = next(iter(activations.values()))
    channels = list(range(len(first))) if channels is None else list(channels)
    picture = _with_outline(_rgb(image), mask)
    grid = []
    for acts in activations.values():
        row = [picture]
        for c in channels:
            a = acts[c].detach().float().cpu().numpy()
            a = a / a.max() if a.max() > 0 else a
            row.append(np.repeat(np.clip(a, 0, 1)[..., None], 3, axis=2))
        grid.append(row)
    return _mosaic(grid, list(activations), ["image"] + [f"ch {c}" for c in channels], size=size)


# --------------------------------------------------------------------------------- maps
def gradient_rgb(grad: torch.Tensor, percentile: float = 99.0) -> np.ndarray:
    """Signed gradients ``[3, H, W]`` as an RGB image ``[H, W, 3]``: grey = 0, scaled so that
    the `percentile` of |grad| reaches the ends (a few extreme pixels do not wash it out)."""
    g = grad.detach().float().cpu()
    if g.dim() != 3 or g.shape[0] != 3:
        raise ValueError(f"grad must be [3, H, W], got shape {tuple(g.shape)}")
    scale = max(float(np.percentile(g.abs().numpy(), percentile)), 1e-12)
    return np.clip(0.5 + 0.5 * g.numpy().transpose(1, 2, 0) / scale, 0, 1)


def _panel(m: torch.Tensor, image=None, mask=None, vmax: float | None = None) -> np.ndarray:
    """One map as an RGB panel: ``[3, H, W]`` signed gradients as colours, a ``[H, W]`` map
    on its own (up to `vmax`) or over `image`; the mask's outline in cyan."""
    m = m.detach().float().cpu()
    rgb = gradient_rgb(m) if m.dim() == 3 else _map_rgb(m, image, vmax=vmax)
    return _with_outline(rgb, mask, alpha=0.35)  # faint: maps are often strongest on the outline itself


def maps_figure(images: torch.Tensor, maps: dict, masks: torch.Tensor | None = None,
                titles=None, overlay: bool = False, point: bool = True, size: float = 1.6,
                shared_scale: bool = False) -> Figure:
    """Images in the first row, then one row per method.

    Args:
        images: ``[B, 3, H, W]``.
        maps: ``{row name: [B, H, W] maps or [B, 3, H, W] signed gradients (drawn as RGB)}``.
        masks: ``[B, H, W]`` bool target masks, outlined in cyan.
        titles: B column titles.
        overlay: draw ``[B, H, W]`` maps over the image instead of on their own.
        point: mark each map's maximum (green inside the mask, red outside: the pointing game);
            constant maps get no mark.
        shared_scale: one colour scale per row (the row's 99.5th percentile), so that the
            maps of a row can be compared in strength; by default each map has its own.
    """
    b = len(images)
    if titles is not None and len(titles) != b:
        raise ValueError(f"titles must have one entry per image ({b}), got {len(titles)}")
    for name, m in maps.items():
        if len(m) != b:
            raise ValueError(f"maps[{name!r}] must have one map per image ({b}), got {len(m)}")
    mask = (lambda j: masks[j]) if masks is not None else (lambda j: None)
    grid = [[_with_outline(_rgb(images[j]), mask(j)) for j in range(b)]]
    stars = []
    for r, m in enumerate(maps.values(), start=1):
        vmax = float(np.percentile(m.detach().float().cpu().numpy(), 99.5)) if shared_scale and m.dim() == 3 else None
        grid.append([_panel(m[j], images[j] if overlay else None, mask(j), vmax) for j in range(b)])
        if point:
            for j in range(b):
                if m[j].max() > m[j].min():  # a constant (e.g. empty) map has no maximum to mark
                    y, x = _peak(m[j])
                    stars.append((r, j, y, x, masks is None or bool(masks[j][y, x])))
    return _mosaic(grid, ["image", *maps], list(titles) if titles is not None else None, size=size, stars=stars)


# ------------------------------------------------------------------------ randomization
def randomization_figure(results: dict, title: str = "cascading randomization") -> Figure:
    """Mean Spearman correlation (± one standard deviation over images) with the trained
    model's maps, as more layers are re-initialised from the top, for each method.

    Args:
        results: ``{method: randomization_test(...) result}``, i.e. ``{method: {stage: [B]}}``
            with the same stages for every method.
    """
    if not results:
        raise ValueError("results must hold at least one method")
    fig = Figure(figsize=(7, 3.4), layout="constrained")
    ax = fig.add_subplot()
    markers = "osD^vPX*"
    for i, (name, stages) in enumerate(results.items()):
        v = torch.stack([torch.as_tensor(s, dtype=torch.float32) for s in stages.values()])   # (S, B)
        x = np.arange(len(stages))
        mean, std = v.mean(1).numpy(), v.std(1).numpy() if v.shape[1] > 1 else np.zeros(len(x))
        ax.plot(x, mean, marker=markers[i % len(markers)], label=name, color=viz.CLASS_COLORS[1 + i])
        ax.fill_between(x, mean - std, mean + std, alpha=0.12, color=viz.CLASS_COLORS[1 + i])
    labels = ["trained"] + [f"+ {s}" for s in list(next(iter(results.values())))[1:]]
    ax.set_xticks(np.arange(len(labels)), labels, fontsize=7, rotation=20)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Spearman ρ with the trained maps")
    ax.set_xlabel("layers re-initialised (cumulative, from the top)")
    viz.set_title(ax, title, fontsize=9)
    ax.legend(fontsize=7, loc="lower left")
    return fig


def evaluation_figure(table: dict) -> Figure:
    """Both tests side by side, one bar group per method.

    Args:
        table: ``{method: {"pointing": float, "pointing ±2px": float,
            "ρ, top layer random": float, "ρ, all layers random": float}}``; missing entries
            are left out of their panel.
    """
    fig = Figure(figsize=(10, 3.6), layout="constrained")
    ax_p, ax_r = fig.subplots(1, 2)
    panels = ((ax_p, ("pointing", "pointing ±2px"), "pointing game (higher: on the object)"),
              (ax_r, ("ρ, top layer random", "ρ, all layers random"),
               "Spearman ρ with the trained maps (lower: depends on the model)"))
    for ax, keys, title in panels:
        names = [n for n in table if any(k in table[n] for k in keys)]
        y = np.arange(len(names))
        for j, key in enumerate(keys):
            values = [table[n].get(key, np.nan) for n in names]
            ax.barh(y + (j - 0.5) * 0.38, values, 0.38, label=key, color=["#4363d8", "#f58231"][j])
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="grey", lw=0.6)
        viz.set_title(ax, title, fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
        ax.tick_params(labelsize=8)
    ax_p.set_xlim(0, 1)
    ax_r.set_xlim(-0.5, 1.05)
    return fig


def faithfulness_figure(curves: dict, title: str | None = None) -> Figure:
    """Deletion and insertion curves (Petsiuk et al., 2018), mean over images, one line per method.

    Args:
        curves: ``{method: (deletion [B, K], insertion [B, K])}``, target probabilities at
            K equally spaced fractions of the pixels changed (``deletion_curve``,
            ``insertion_curve``). The legend gives each curve's mean area (``auc``).
        title: an optional figure title.
    """
    from ..interpret.faithfulness import auc

    if not curves:
        raise ValueError("curves must hold at least one method")
    fig = Figure(figsize=(10, 3.4), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for k, (ax, test, better) in enumerate(zip(axes, ("deletion", "insertion"), ("lower", "higher"))):
        for i, (name, pair) in enumerate(curves.items()):
            c = torch.as_tensor(pair[k], dtype=torch.float32)                  # (B, K)
            x = np.linspace(0, 1, c.shape[1])
            ax.plot(x, c.mean(0).numpy(), marker=".", color=viz.CLASS_COLORS[1 + i],
                    label=f"{name} (AUC {auc(c).mean():.2f})")
        ax.set_xlabel(f"fraction of pixels {'removed' if k == 0 else 'inserted'}, most important first")
        viz.set_title(ax, f"{test}: {better} area = more faithful", fontsize=9)
        ax.legend(fontsize=7)
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("probability of the target class")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def randomization_maps_figure(image: torch.Tensor, maps: dict, mask: torch.Tensor | None = None,
                              size: float = 1.2) -> Figure:
    """Adebayo et al.'s picture: one row per method, one column per randomization stage.

    Args:
        image: ``[3, H, W]``.
        maps: ``{stage: {method: [H, W] map}}``, stages in cascade order, the first being
            the trained model.
        mask: ``[H, W]`` bool, outlined on the image.
    """
    stages = list(maps)
    methods = list(maps[stages[0]])
    picture = _with_outline(_rgb(image), mask)
    grid = [[picture] + [_panel(maps[stage][method]) for stage in stages] for method in methods]
    titles = ["image", stages[0]] + [f"+ {stage}" for stage in stages[1:]]
    return _mosaic(grid, methods, titles, size=size)


# ------------------------------------------------------------------ explanation explorer
EXPLORER_METHODS = ("saliency", "guided backprop", "CAM", "Grad-CAM", "guided Grad-CAM")
EXPLORER_LAYERS = ("features.1", "features.3", "features.4", "features.6", "features.7")
EXPLORER_SCENES = 40


@lru_cache(maxsize=1)
def _classifier():
    from .. import pretrained

    return pretrained.load("classifier", device="cpu")


@lru_cache(maxsize=4)
def explorer_scenes(objects: int = 1, n: int = EXPLORER_SCENES, split: str = "test") -> dict:
    """The explorer's held-out scenes (cached): "images" ``[n, 3, 64, 64]``, "labels" (the
    classes present, 0-based, per scene), "masks" ``[n, 3, 64, 64]`` (one per class) and
    the classifier's "probs" ``[n, 3]``."""
    from ..data import ShapesDataset
    from ..recipes.classification import OBJECT_SIZE, SIZE

    ds = ShapesDataset(split=split, length=n, size=SIZE, view="scene", min_objects=objects,
                       max_objects=objects, object_size=OBJECT_SIZE)
    scenes = [ds.scene(i) for i in range(n)]
    images = torch.stack([s["image"] for s in scenes])                                  # (n, 3, H, W)
    semantic = torch.stack([s["semantic"] for s in scenes])                             # (n, H, W)
    masks = torch.stack([semantic == c + 1 for c in range(len(CLASS_NAMES))], 1)       # (n, 3, H, W)
    with torch.no_grad():
        probs = _classifier()(images).softmax(1)
    labels = [sorted({int(c) - 1 for c in s.unique() if c > 0}) for s in semantic]
    return {"images": images, "labels": labels, "masks": masks, "probs": probs}


@lru_cache(maxsize=4096)
def explanation_map(scene: int, target: int, method: str, layer: str = "features.7", objects: int = 1) -> torch.Tensor:
    """The ``[64, 64]`` map of `method` for class `target` (0-based) on explorer scene
    `scene`, computed once and cached (the explorer redraws without recomputing)."""
    from ..interpret import class_activation_map, grad_cam, guided_backprop, saliency

    if method not in EXPLORER_METHODS:
        raise ValueError(f"method must be one of {EXPLORER_METHODS}, got {method!r}")
    model, x = _classifier(), explorer_scenes(objects)["images"][scene:scene + 1]
    if method == "saliency":
        m = saliency(model, x, target)
    elif method == "guided backprop":
        m = guided_backprop(model, x, target).abs().amax(1)
    elif method == "CAM":
        m = class_activation_map(model, x, target)
    elif method == "Grad-CAM":
        m = grad_cam(model, layer, x, target)
    else:  # guided Grad-CAM (Selvaraju et al.): the sharp guided map, gated by the class map
        m = guided_backprop(model, x, target).abs().amax(1) * grad_cam(model, layer, x, target)
    return m[0]


def explanation_figure(scene: int = 0, target: str = "square", method: str = "Grad-CAM",
                       layer: str = "features.7", objects: int = 1) -> Figure:
    """The explorer's figure: the scene with the target class outlined in cyan and the
    classifier's probabilities, and the chosen map with its maximum marked (green: inside
    the target class, a pointing-game hit; red: outside). Class maps (CAM, Grad-CAM) are
    drawn over the image, pixel-level maps on their own."""
    if target not in CLASS_NAMES:
        raise ValueError(f"target must be one of {CLASS_NAMES}, got {target!r}")
    if layer not in EXPLORER_LAYERS:
        raise ValueError(f"layer must be one of {EXPLORER_LAYERS}, got {layer!r}")
    data = explorer_scenes(objects)
    if not 0 <= scene < len(data["images"]):
        raise ValueError(f"scene must be in 0..{len(data['images']) - 1}, got {scene}")
    c = CLASS_NAMES.index(target)
    image, mask = data["images"][scene], data["masks"][scene, c]
    uses_layer = method in ("Grad-CAM", "guided Grad-CAM")
    m = explanation_map(scene, c, method, layer if uses_layer else "features.7", objects)  # one cache entry
    y, x = _peak(m)
    hit = bool(mask[y, x])
    present = ", ".join(CLASS_NAMES[k] for k in data["labels"][scene])
    scores = " ".join(f"{n} {p:.2f}" for n, p in zip(CLASS_NAMES, data["probs"][scene].tolist()))
    name = f"{method} ({layer})" if uses_layer else method
    verdict = "no such object here" if not mask.any() else ("maximum on it: hit" if hit else "maximum off it: miss")
    panels = [_with_outline(_rgb(image), mask), _panel(m, image if method in ("CAM", "Grad-CAM") else None, mask)]
    return _mosaic([panels], col_titles=[f"scene {scene}: {present}\np: {scores}", f"{name} for '{target}'\n{verdict}"],
                   size=2.8, stars=[(0, 1, y, x, hit)])


def explanation_widget(objects: int = 1):
    """Explanation explorer: scene, target class, method and (for Grad-CAM) layer."""
    import ipywidgets as W

    from . import interactive_figure

    controls = {
        "scene": W.IntSlider(value=0, min=0, max=EXPLORER_SCENES - 1, description="scene"),
        "target": W.Dropdown(options=list(CLASS_NAMES), value="square", description="target"),
        "method": W.Dropdown(options=list(EXPLORER_METHODS), value="Grad-CAM", description="method"),
        "layer": W.Dropdown(options=list(EXPLORER_LAYERS), value="features.7", description="layer"),
        "objects": W.Dropdown(options=[1, 2], value=objects, description="objects"),
    }
    return interactive_figure(explanation_figure, controls, columns=3,
                              grid={"scene": [0, 1], "target": list(CLASS_NAMES), "method": list(EXPLORER_METHODS)})
