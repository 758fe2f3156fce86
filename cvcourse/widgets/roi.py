"""Chapter "Fast R-CNN, RoI Pool and RoI Align": where each operator reads a box's features.

- `shared_features_figure`: an image with boxes, and the backbone's feature map with the
  same boxes projected onto it (divided by the stride): Fast R-CNN's shared computation.
- `roi_figure` / `roi_widget`: one box on a feature-map grid. Left, RoI Pool: the box
  snapped to whole cells and split into bins with integer edges (each bin's cells shaded,
  its max is the output). Middle, RoI Align: the same box split into exact bins, with the
  bilinear sample points each bin averages. Right, the two ``oh x ow`` outputs.

The "feature map" is the scene itself, average-pooled by the stride (3 channels, so the
pooled outputs can be shown as tiny images). Drawing convention: cell (i, j) is the unit
square centred at (x=j, y=i), as ``imshow`` draws it; input pixel coordinate u then lies at
``u / stride - 0.5``, which is where the dashed true box is drawn.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .. import viz
from ..data import make_scene
from ..ops.roi import bilinear_sample_points, roi_align, roi_pool, roi_pool_bins, roi_pool_snapping_error
from . import check_setting

__all__ = ["feature_map", "roi_figure", "roi_widget", "shared_features_figure"]

BIN_COLORS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#008080", "#f032e6"]


@lru_cache(maxsize=16)
def feature_map(scene: int = 0, stride: int = 8, split: str = "test", size: int = 128) -> torch.Tensor:
    """Scene `scene` average-pooled by `stride`: a ``[1, 3, size/stride, size/stride]`` map."""
    if stride not in (4, 8, 16):
        raise ValueError(f"stride must be 4, 8 or 16, got {stride!r}")
    image = make_scene(scene, split=split, size=size)["image"]
    return F.avg_pool2d(image[None], stride)  # (1, 3, h, w)


def _box(x: float, y: float, width: float, height: float, size: int) -> torch.Tensor:
    for name, v in (("x", x), ("y", y), ("width", width), ("height", height)):
        if not 0 <= v <= size:
            raise ValueError(f"{name} must be in [0, {size}] image pixels, got {v!r}")
    return torch.tensor([x, y, min(x + width, size), min(y + height, size)], dtype=torch.float64)


def _draw_map(ax, fmap: torch.Tensor, x0: float = 0.0, indices: bool = True) -> None:
    """The map, faded, with its left edge at ``x0 - 0.5``, its cell borders (a LineCollection:
    ticks are slow to lay out) and, with `indices`, every fourth cell index along the left and
    bottom edges."""
    h, w = fmap.shape[-2:]
    ax.imshow(fmap[0].permute(1, 2, 0).clamp(0, 1).numpy(), alpha=0.45, interpolation="nearest",
              extent=(x0 - 0.5, x0 + w - 0.5, h - 0.5, -0.5))
    segs = [[(x0 - 0.5, r - 0.5), (x0 + w - 0.5, r - 0.5)] for r in range(h + 1)]
    segs += [[(x0 + c - 0.5, -0.5), (x0 + c - 0.5, h - 0.5)] for c in range(w + 1)]
    ax.add_collection(LineCollection(segs, colors="#999999", linewidths=0.3))
    for c in range(0, max(h, w) if indices else 0, 4):
        if c < w:
            ax.text(x0 + c, h - 0.3, str(c), ha="center", va="top", fontsize=6)
        if c < h:
            ax.text(x0 - 0.7, c, str(c), ha="right", va="center", fontsize=6)


def _true_box(ax, box: torch.Tensor, stride: int, x0: float = 0.0) -> None:
    x1, y1, x2, y2 = (box / stride - 0.5).tolist()
    ax.add_patch(Rectangle((x0 + x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="black",
                           linestyle="--", linewidth=1.4))


def roi_figure(x: float = 55.0, y: float = 32.0, width: float = 47.0, height: float = 47.0,
               output_size: int = 2, sampling_ratio: int = 2, aligned: bool = True,
               stride: int = 8, scene: int = 0) -> Figure:
    """RoI Pool and RoI Align of one box on the stride-`stride` map of test scene `scene`.

    Args:
        x, y, width, height: the box in input pixels (128 x 128 image); clipped to the image.
        output_size: ``oh = ow`` bins. sampling_ratio: samples per bin and axis (<= 0 adaptive).
        aligned: RoI Align's half-cell shift (True is correct). stride: 4, 8 or 16.
        scene: which held-out scene gives the map.

    Returns:
        Figure: three panels (RoI Pool bins, RoI Align samples, both outputs), drawn in one
        Axes in map-cell coordinates (one Axes draws faster than three).
    """
    if not isinstance(output_size, int) or not 1 <= output_size <= 14:
        raise ValueError(f"output_size must be an int in [1, 14], got {output_size!r}")
    check_setting("sampling_ratio", sampling_ratio, None, 16, integer=True)
    if not isinstance(aligned, bool):
        raise ValueError(f"aligned must be True or False, got {aligned!r}")
    fmap = feature_map(scene, stride)  # (1, 3, h, w)
    size = fmap.shape[-1] * stride
    box = _box(x, y, width, height, size)
    h, w = fmap.shape[-2:]
    scale = 1.0 / stride
    gap, side = 0.3 * w, 0.4 * h               # between panels; each output image's side, in cells
    x_align, x_out = w + gap, 2 * (w + gap)    # left edges (+ 0.5) of the middle and right panels
    fig = Figure(figsize=(10.5, 4.0))
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.84))
    ax.set_xlim(-0.5 - 0.1 * w, x_out + side + 0.1 * w)
    ax.set_ylim(h - 0.5 + 0.08 * h, -0.5)
    ax.set_aspect("equal")
    ax.axis("off")

    def title(x_centre, text):
        ax.text(x_centre, -0.5 - 0.02 * h, text, ha="center", va="bottom", fontsize=8)

    # RoI Pool: integer bins, neighbours may share a row or column of cells.
    hs, he, ws, we = (t[0].tolist() for t in roi_pool_bins(box[None], output_size, scale, (h, w)))
    polys, colors = [], []
    for i in range(output_size):
        for j in range(output_size):
            if he[i] > hs[i] and we[j] > ws[j]:
                x0, x1, y0, y1 = ws[j] - 0.5, we[j] - 0.5, hs[i] - 0.5, he[i] - 0.5
                polys.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
                colors.append(BIN_COLORS[(i * output_size + j) % len(BIN_COLORS)])
    _draw_map(ax, fmap)
    ax.add_collection(PolyCollection(polys, facecolors=colors, edgecolors=colors, alpha=0.25,
                                     linewidths=1.5))
    if polys:
        region = (ws[0] - 0.5, hs[0] - 0.5, we[-1] - ws[0], he[-1] - hs[0])
        ax.add_patch(Rectangle(region[:2], *region[2:], fill=False, edgecolor="red", linewidth=1.6))
    _true_box(ax, box, stride)
    dx1, dy1, dx2, dy2 = roi_pool_snapping_error(box[None], scale).shift[0].tolist()
    title(w / 2 - 0.5, f"RoI Pool: box snapped to cells {ws[0]}..{we[-1] - 1} × {hs[0]}..{he[-1] - 1}\n"
                       f"corners moved by ({dx1:+.0f}, {dy1:+.0f}, {dx2:+.0f}, {dy2:+.0f}) px")

    # RoI Align: exact bins and their bilinear samples (the same cells, shifted right).
    samples = bilinear_sample_points(box, output_size, sampling_ratio, scale, aligned, map_size=(h, w))
    _draw_map(ax, fmap, x_align, indices=False)
    xe, ye = (x_align + samples.x_edges).tolist(), samples.y_edges.tolist()
    ax.vlines(xe, ye[0], ye[-1], colors="#1f4fd8", linewidth=1.2)
    ax.hlines(ye, xe[0], xe[-1], colors="#1f4fd8", linewidth=1.2)
    pts, valid = samples.points.reshape(-1, 2), samples.valid.reshape(-1)
    ax.scatter(x_align + pts[valid, 0], pts[valid, 1], s=9, c="#1f4fd8", zorder=3)
    if (~valid).any():
        ax.scatter(x_align + pts[~valid, 0], pts[~valid, 1], s=9, c="#aaaaaa", marker="x", zorder=3)
    _true_box(ax, box, stride, x_align)
    bin_w, bin_h = float(xe[1] - xe[0]), float(ye[1] - ye[0])
    gx, gy = ((sampling_ratio,) * 2 if sampling_ratio > 0
              else (max(math.ceil(bin_w), 1), max(math.ceil(bin_h), 1)))
    title(x_align + w / 2 - 0.5, f"RoI Align (aligned={aligned}): {gy}×{gx} samples per bin\n"
                                 f"bins {bin_w:.2f} × {bin_h:.2f} cells, no rounding")

    # The outputs, as small images, one above the other.
    rois = box.float()[None]
    pooled = roi_pool(fmap, [rois], output_size, scale)[0]  # (3, oh, ow)
    aligned_out = roi_align(fmap, [rois], output_size, scale, sampling_ratio, aligned)[0]
    for k, (out, name) in enumerate(((pooled, "RoI Pool"), (aligned_out, "RoI Align"))):
        top = 0.08 * h + k * (side + 0.14 * h)
        ax.imshow(out.permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest",
                  extent=(x_out, x_out + side, top + side, top))
        ax.text(x_out + side / 2, top - 0.02 * h, f"{name} output", ha="center", va="bottom", fontsize=8)
    return fig


def roi_widget(scene: int = 0):
    """Sliders for the box (input pixels), output size, sampling ratio, aligned and stride."""
    import ipywidgets as W

    from . import interactive_figure

    slider = dict(min=0, max=127, continuous_update=False)
    return interactive_figure(roi_figure, {
        "x": W.IntSlider(value=55, description="x", **slider),
        "y": W.IntSlider(value=32, description="y", **slider),
        "width": W.IntSlider(value=47, description="width", **slider),
        "height": W.IntSlider(value=47, description="height", **slider),
        "output_size": W.IntSlider(value=2, min=1, max=7, description="output", continuous_update=False),
        "sampling_ratio": W.IntSlider(value=2, min=0, max=4, description="samples (0=auto)",
                                      continuous_update=False),
        "aligned": W.Checkbox(value=True, description="aligned"),
        "stride": W.Dropdown(options=[4, 8, 16], value=8, description="stride"),
        "scene": W.fixed(scene),
    }, grid={"x": [15, 35, 55, 75], "output_size": [1, 2, 4, 7], "aligned": [False, True]})


def shared_features_figure(image: torch.Tensor, features: torch.Tensor, boxes: torch.Tensor,
                           stride: int) -> Figure:
    """An image ``[3, H, W]`` with xyxy `boxes` ``[K, 4]``, and its feature map ``[C, h, w]``
    (the norm over channels) with the boxes projected by ``1 / stride``: every RoI reads the
    same map, computed once."""
    if features.dim() != 3 or image.dim() != 3:
        raise ValueError(f"image must be [3, H, W] and features [C, h, w], got "
                         f"{tuple(image.shape)} and {tuple(features.shape)}")
    fig, axes = viz.subplots(1, 2, size=3.6)
    viz.draw_boxes(image, boxes, ax=axes[0, 0], color_by="instance",
                   title=f"image {list(image.shape)}: {len(boxes)} RoIs")
    energy = features.detach().float().norm(dim=0).cpu()  # (h, w)
    axes[0, 1].imshow(energy.numpy(), cmap="magma", interpolation="nearest")
    h, w = energy.shape
    for i, box in enumerate((boxes.float().cpu() / stride - 0.5).tolist()):
        color = viz.INSTANCE_COLORS[i % len(viz.INSTANCE_COLORS)]
        axes[0, 1].add_patch(Rectangle(box[:2], box[2] - box[0], box[3] - box[1], fill=False,
                                       edgecolor=color, linewidth=1.8))
    axes[0, 1].set_xlim(-0.5, w - 0.5)
    axes[0, 1].set_ylim(h - 0.5, -0.5)
    axes[0, 1].axis("off")
    viz.set_title(axes[0, 1], f"feature map {list(features.shape)} (norm over channels)\n"
                  f"RoIs projected: box / {stride}", fontsize=9)
    return fig
