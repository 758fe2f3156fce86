"""DETR chapter: what each object query predicts, and how one scene is matched.

- `query_data`: a DETR's raw outputs on some scenes, with each scene's Hungarian matching
  and cost matrices (computed once; figures only read them).
- `held_out_query_data`: `query_data` of a shipped checkpoint on held-out scenes, cached.
- `query_centres_figure`: every query's predicted box centres over all scenes, one panel
  per query (DETR's figure of its "prediction slots").
- `query_explorer_figure` / `query_explorer`: pick a query and a scene: that query's
  predictions across the scenes, the scene with its ground truth and the matched queries,
  and the scene's cost matrix with the assignment the Hungarian algorithm chose.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from torch import Tensor

from .. import viz
from ..data import CLASSES
from ..inference import evaluating

__all__ = ["query_data", "held_out_query_data", "query_centres_figure", "query_explorer_figure",
           "query_explorer"]


@torch.no_grad()
def query_data(model, images: Tensor, targets: Sequence[dict[str, Tensor]], batch_size: int = 50) -> dict:
    """Raw outputs, matchings and matching costs of DETR `model` on `images`.

    Returns:
        dict with "images" [n, 3, S, S], "targets" (xyxy pixels), "prob" [n, Q, C+1]
        (softmax; column 0 is "no object"), "boxes" [n, Q, 4] xyxy pixels, "centres"
        [n, Q, 2] pixels, "matches" (per scene (query indices, target indices)) and "costs"
        (per scene {"class", "bbox", "giou", "total"}, each [Q, N]).
    """
    from ..ops.boxes import box_convert

    if len(images) != len(targets):
        raise ValueError(f"images and targets must have one entry per scene, got {len(images)} and {len(targets)}")
    dev = next(model.parameters()).device
    size = images.shape[-1]
    logits, boxes, matches, costs = [], [], [], []
    for i in range(0, len(images), batch_size):
        with evaluating(model):  # the caller's modes are restored afterwards
            out = model.forward_raw(images[i:i + batch_size].to(dev))
        out = {"pred_logits": out["pred_logits"].float().cpu(), "pred_boxes": out["pred_boxes"].float().cpu()}
        tgt = model.normalized_targets(targets[i:i + batch_size], images.shape[-2:])
        matches += model.matcher(out, tgt)
        costs += model.matcher.cost_parts(out, tgt)
        logits.append(out["pred_logits"])
        boxes.append(out["pred_boxes"])
    cxcywh = torch.cat(boxes) * size                                       # (n, Q, 4) pixels
    return {"images": images, "targets": list(targets), "prob": torch.cat(logits).softmax(-1),
            "boxes": box_convert(cxcywh, "cxcywh", "xyxy"), "centres": cxcywh[..., :2],
            "matches": matches, "costs": costs}


def held_out_query_data(name: str = "detr", split: str = "val", n: int = 100, weights_dir=None) -> dict:
    """`query_data` of shipped checkpoint `name` on the first `n` scenes of `split`, cached.
    Scenes hold as many objects as the model was trained with (`recipes.detr.MAX_OBJECTS`)."""
    return _held_out(name, split, n, None if weights_dir is None else str(weights_dir))


@lru_cache(maxsize=4)
def _held_out(name, split, n, weights_dir):
    from .. import pretrained
    from ..data.scenes import held_out_scenes
    from ..recipes.detr import MAX_OBJECTS

    images, targets = held_out_scenes(split, n, max_objects=MAX_OBJECTS)
    return query_data(pretrained.load(name, device="cpu", weights_dir=weights_dir), images, targets)


def _points(ax, data: dict, q: int, size: int, highlight: int | None = None, dx: float = 0.0) -> None:
    """Scatter query q's predicted centres over all scenes (shifted right by `dx`):
    colour = class where p(object) >= 0.5, grey otherwise; marker size ~ box side."""
    prob = data["prob"][:, q]                                           # (n, C+1)
    sure = (prob[:, 0] <= 0.5).numpy()
    labels = (prob[:, 1:].argmax(1) + 1).numpy()
    xy = data["centres"][:, q].numpy() + np.array([dx, 0.0])
    wh = (data["boxes"][:, q, 2:] - data["boxes"][:, q, :2]).numpy()
    area = 4 + 60 * np.sqrt(np.clip(wh[:, 0] * wh[:, 1], 0, None)) / size
    colors = np.array([viz.CLASS_COLORS[c] for c in labels])
    ax.scatter(xy[~sure, 0], xy[~sure, 1], s=area[~sure], c="#bbbbbb", alpha=0.5, linewidths=0)
    ax.scatter(xy[sure, 0], xy[sure, 1], s=area[sure], c=colors[sure], alpha=0.8, linewidths=0)
    if highlight is not None:
        ax.scatter(xy[highlight, 0], xy[highlight, 1], s=90, facecolors="none", edgecolors="k", linewidths=1.5)


def _frame(ax, x0: float, y0: float, w: float, h: float, color: str = "#999999", lw: float = 0.8) -> None:
    ax.add_patch(Rectangle((x0, y0), w, h, fill=False, edgecolor=color, linewidth=lw))


def query_centres_figure(data: dict | None = None, queries: Sequence[int] | None = None,
                         ncols: int = 5) -> Figure:
    """One panel per query: the centres of its predicted boxes over all scenes of `data`
    (default: `held_out_query_data()`), coloured by predicted class where it says "object"
    (p(no object) < 0.5), grey otherwise; marker size follows the box size."""
    data = held_out_query_data() if data is None else data
    Q = data["prob"].shape[1]
    queries = list(range(Q)) if queries is None else list(queries)
    size = data["images"].shape[-1]
    rows = (len(queries) + ncols - 1) // ncols
    fig = Figure(figsize=(1.8 * ncols, 1.9 * rows + 0.3), layout="constrained")
    axes = fig.subplots(rows, ncols, squeeze=False)
    for ax in axes.flat[len(queries):]:
        ax.set_visible(False)
    for ax, q in zip(axes.flat, queries):
        _points(ax, data, q, size)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        said = float((data["prob"][:, q, 0] < 0.5).float().mean())
        viz.set_title(ax, f"query {q}: object in {said:.0%}", fontsize=8)
    handles = [Line2D([], [], marker="o", ls="", color=viz.CLASS_COLORS[c], label=CLASSES[c])
               for c in range(1, len(CLASSES))]
    handles.append(Line2D([], [], marker="o", ls="", color="#bbbbbb", label="no object"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle(f"predicted box centres of each query over {len(data['images'])} scenes", fontsize=9)
    return fig


def query_explorer_figure(query: int = 0, scene: int = 0, data: dict | None = None) -> Figure:
    """Query `query` across all scenes; scene `scene` with its matching and cost matrix.

    Left: the query's predicted centres over all scenes (this scene circled). Middle: the
    scene, ground truth (solid), the matched queries' boxes (dashed, joined to their object)
    and the chosen query's box (thick). Right: the scene's total matching cost ``[Q, N]``
    with the Hungarian assignment outlined.
    """
    data = held_out_query_data() if data is None else data
    n, Q = data["prob"].shape[:2]
    if not isinstance(query, int) or not 0 <= query < Q:
        raise ValueError(f"query must be an int in [0, {Q}), got {query!r}")
    if not isinstance(scene, int) or not 0 <= scene < n:
        raise ValueError(f"scene must be an int in [0, {n}), got {scene!r}")
    S = data["images"].shape[-1]
    # one Axes for all three panels, in pixel units: several times quicker to redraw than three
    gap, cw = S / 6, S * 0.7                                          # panel gap, cost panel width
    xs, xc = S + gap, 2 * (S + gap) + S / 8                            # left edges: scene, cost panels
    fig = Figure(figsize=(10.5, 3.8))
    ax = fig.add_axes((0.0, 0.0, 1.0, 0.85))
    ax.set_axis_off()
    ax.set_xlim(-2, xc + cw + 12)
    ax.set_ylim(S + 10, -2)
    ax.set_aspect("equal")
    _frame(ax, 0, 0, S, S)
    _points(ax, data, query, S, highlight=scene)
    ax.text(S / 2, -4, f"query {query}: its boxes' centres\nin {n} scenes (scene {scene} circled)",
            ha="center", va="bottom", fontsize=8)

    target = data["targets"][scene]
    rows, cols = data["matches"][scene]
    ax.imshow(viz.to_numpy_image(data["images"][scene]), extent=(xs - 0.5, xs + S - 0.5, S - 0.5, -0.5),
              interpolation="nearest")
    for k, (box, lab) in enumerate(zip(target["boxes"].tolist(), target["labels"].tolist())):
        _rect(ax, box, viz.CLASS_COLORS[lab], "-", 1.6, dx=xs)
        ax.text(xs + box[0], box[1] - 1, f"object {k}", fontsize=7, color="white", va="bottom",
                bbox=dict(facecolor=viz.CLASS_COLORS[lab], alpha=0.8, pad=1, linewidth=0))
    for q, j in zip(rows.tolist(), cols.tolist()):
        box = data["boxes"][scene, q].tolist()
        _rect(ax, box, "white", "--", 1.0, dx=xs)
        gt = target["boxes"][j].tolist()
        ax.plot([xs + (box[0] + box[2]) / 2, xs + (gt[0] + gt[2]) / 2],
                [(box[1] + box[3]) / 2, (gt[1] + gt[3]) / 2], color="white", lw=0.8)
    prob = data["prob"][scene, query]
    label = int(prob[1:].argmax()) + 1
    _rect(ax, data["boxes"][scene, query].tolist(), "#ffe119", "-", 2.4, dx=xs)
    state = "matched" if query in rows.tolist() else "unmatched: should say no object"
    ax.text(xs + S / 2, -4, f"scene {scene}: ground truth (solid), matched queries (dashed),\n"
            f"query {query} (yellow): {CLASSES[label]}, p(object) {1 - float(prob[0]):.2f}, {state}",
            ha="center", va="bottom", fontsize=8)

    cost = data["costs"][scene]["total"].numpy()                        # (Q, N)
    N, ch = cost.shape[1], S / Q                                        # ch: cell height
    cwid = cw / max(N, 1)
    if N:
        ax.imshow(cost, cmap="viridis_r", aspect="auto", interpolation="nearest",
                  extent=(xc, xc + cw, S, 0))                           # low cost = yellow
        for q, j in zip(rows.tolist(), cols.tolist()):
            _frame(ax, xc + j * cwid, q * ch, cwid, ch, "red", 2)
        for j in range(N):  # numbers: the chosen query's row and the matched cells
            for q in {query, int(rows[cols == j][0])}:
                ax.text(xc + (j + 0.5) * cwid, (q + 0.5) * ch, f"{cost[q, j]:.2f}", ha="center",
                        va="center", fontsize=7, color="white" if cost[q, j] > np.median(cost) else "black")
            ax.text(xc + (j + 0.5) * cwid, S + 1, f"object {j}", ha="center", va="top", fontsize=7)
    else:
        ax.text(xc + cw / 2, S / 2, "no objects:\nnothing to match", ha="center", va="center", fontsize=8)
    _frame(ax, xc, query * ch, cw, ch, "#ffe119", 2)
    labelled = sorted({query, *rows.tolist()})
    for q in labelled:
        ax.text(xc - 1, (q + 0.5) * ch, f"q{q}", ha="right", va="center", fontsize=7)
    total = float(cost[rows, cols].sum()) if N else 0.0
    ax.text(xc + cw / 2, -4, f"matching cost [Q={Q}, N={N}]\n(low = yellow) "
            f"assignment (red): total {total:.2f}", ha="center", va="bottom", fontsize=8)
    return fig


def _rect(ax, box, color, ls, lw, dx: float = 0.0) -> None:
    viz.draw_box(ax, box, color, linewidth=lw, linestyle=ls, dx=dx)


def query_explorer(name: str = "detr", split: str = "val", n: int = 100, data: dict | None = None):
    """DETR query explorer: sliders for the query and the scene over `query_explorer_figure`
    (outputs are computed once, then every redraw reads the cache)."""
    import ipywidgets as W

    from . import interactive_figure
    from .static import evenly

    data = held_out_query_data(name, split, n) if data is None else data
    Q, n = data["prob"].shape[1], len(data["images"])
    return interactive_figure(query_explorer_figure, {
        "query": W.IntSlider(value=0, min=0, max=Q - 1, description="query"),
        "scene": W.IntSlider(value=0, min=0, max=n - 1, description="scene"),
        "data": W.fixed(data),
    }, grid={"query": evenly(range(Q), 8), "scene": evenly(range(n), 4)})
