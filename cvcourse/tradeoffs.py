"""Detection trade-offs: every shipped detector scored and timed in one run, on the same scenes.

The chapter "Detection trade-offs" compares Faster R-CNN, YOLO, SSD, RetinaNet and DETR.
Each was trained by its own recipe; here they meet on equal terms: the same held-out
scenes, the same metric code (`cvcourse.metrics.mean_average_precision`), the same
decoding path (`cvcourse.inference.detect`) and the same device, in one run.

- `compare_detectors`: held-out mAP@0.5, COCO mAP, mAP@0.75 and end-to-end images/s
  (network, decoding, NMS) of each model on the given scenes.
- `pareto_front`: the detectors no other one beats in both speed and accuracy.
- `tradeoff_figure`: accuracy against speed, one point per detector, the front drawn.
- `markdown_table`: rows of dicts as a Markdown table (the chapter displays it).
- `gpu_measurements`: the GPU timings stored in the package (`weights/detector_speed_gpu.json`,
  measured on a lent GPU machine; see that file's ``hardware``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn

__all__ = ["DETECTORS", "GPU_FILE", "compare_detectors", "pareto_front", "tradeoff_figure",
           "markdown_table", "gpu_measurements"]

# The detectors the chapter compares, in the order the book introduced them.
DETECTORS = ("faster_rcnn", "yolo", "ssd", "retinanet", "detr")
GPU_FILE = Path(__file__).resolve().parent / "weights" / "detector_speed_gpu.json"


@torch.no_grad()
def compare_detectors(models: Mapping[str, nn.Module], images: torch.Tensor, targets: Sequence[dict],
                      batch_size: int = 25, repeats: int = 3, num_threads: int | None = 1) -> list[dict]:
    """Score and time every model on the same scenes, one after the other.

    Args:
        models: name -> detector with the course's interface (eval-mode ``model(images)`` gives
            per image ``{"boxes", "scores", "labels"}``); each stays on its own device.
        images: ``[N, 3, H, W]`` held-out scenes; targets: their ground truth.
        batch_size: images per forward pass.
        repeats: timed passes over all images (the median is kept; the first pass's
            detections are scored).
        num_threads: torch CPU threads while timing; None leaves torch's setting.

    Each model is timed by `cvcourse.inference.timed_detect`, the measurement every
    detection chapter prints, so a detector's images/s here and in its own chapter agree.

    Returns:
        One dict per model, in order: ``name, map_50, map, map_75, images_per_s, spread, device``
            (``spread``: (max - min) / median of the timed passes, `cvcourse.timing.Timing.spread`).
    """
    from .inference import timed_detect
    from .metrics import mean_average_precision

    if not isinstance(models, Mapping) or not models:
        raise ValueError("models must be a non-empty mapping name -> detector")
    if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images must be a Tensor[N, 3, H, W], got {got}")
    if len(targets) != len(images):
        raise ValueError(f"targets must have one dict per image, got {len(targets)} for {len(images)} images")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    rows = []
    for name, model in models.items():
        detections, timing = timed_detect(model, images, batch_size, repeats, num_threads)
        scores = mean_average_precision(detections, list(targets))
        rows.append({"name": name, "map_50": float(scores["map_50"]), "map": float(scores["map"]),
                     "map_75": float(scores["map_75"]), "images_per_s": timing.per_second(len(images)),
                     "spread": timing.spread, "device": str(next(model.parameters()).device)})
    return rows


def pareto_front(points: Sequence[Mapping], speed: str = "images_per_s", accuracy: str = "map") -> list[str]:
    """Names of the points that no other point beats in both `speed` and `accuracy`.

    A point is dominated when another is at least as fast *and* at least as accurate, and
    strictly better in one of the two. Returns the undominated names, fastest first.
    """
    for p in points:
        if not all(k in p for k in ("name", speed, accuracy)):
            raise ValueError(f"each point needs keys 'name', {speed!r} and {accuracy!r}, got {sorted(p)}")
    front = []
    for p in points:
        dominated = any(q[speed] >= p[speed] and q[accuracy] >= p[accuracy]
                        and (q[speed] > p[speed] or q[accuracy] > p[accuracy]) for q in points)
        if not dominated:
            front.append(p)
    return [p["name"] for p in sorted(front, key=lambda p: -p[speed])]


def tradeoff_figure(rows: Sequence[Mapping], accuracy: str = "map", speed: str = "images_per_s",
                    title: str = "", extra: Sequence[Mapping] = (), extra_label: str = "") -> Figure:
    """Accuracy (y) against images per second (x, log scale), one labelled point per row.

    The Pareto front (`pareto_front`) is joined by a line. `extra` rows (e.g. the same
    detectors timed on a GPU) are drawn as hollow markers with the label `extra_label`.
    """
    if not rows:
        raise ValueError("rows must hold at least one detector")
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    for r in rows:
        ax.scatter(r[speed], r[accuracy], s=60, zorder=3)
        ax.annotate(r["name"], (r[speed], r[accuracy]), textcoords="offset points", xytext=(6, 4), fontsize=9)
    front = {r["name"]: r for r in rows}
    names = pareto_front(rows, speed, accuracy)
    ax.plot([front[n][speed] for n in names], [front[n][accuracy] for n in names], "k--", lw=1,
            label="Pareto front", zorder=2)
    for r in extra:
        ax.scatter(r[speed], r[accuracy], s=60, facecolors="none", edgecolors="gray", zorder=3)
        ax.annotate(r["name"], (r[speed], r[accuracy]), textcoords="offset points", xytext=(6, -10),
                    fontsize=8, color="gray")
    if extra:
        ax.scatter([], [], s=60, facecolors="none", edgecolors="gray", label=extra_label or "other device")
    ax.set_xscale("log")
    ax.set_xlabel("images per second (log scale)")
    ax.set_ylabel({"map": "COCO mAP (0.50:0.95)", "map_50": "mAP@0.5"}.get(accuracy, accuracy))
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def markdown_table(rows: Sequence[Mapping], columns: Mapping[str, str], digits: int = 3) -> str:
    """`rows` as a Markdown table; `columns` maps each key to its header (in order). Floats
    of 100 or more get thousands separators and no decimals, NaN shows as "—"."""
    if not rows:
        raise ValueError("rows must not be empty")
    missing = [k for k in columns if k not in rows[0]]
    if missing:
        raise ValueError(f"columns {missing} are not keys of the rows (keys: {sorted(rows[0])})")

    def cell(v):
        if isinstance(v, float) and v != v:                  # NaN: not measured
            return "—"
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.{digits}f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(columns.values()) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"]
    lines += ["| " + " | ".join(cell(r[k]) for k in columns) + " |" for r in rows]
    return "\n".join(lines)


def gpu_measurements(path=GPU_FILE) -> dict:
    """The detector timings measured on a GPU machine and stored in the package.

    Returns ``{"hardware", "torch", "date", "rows": {name: {"inference_images_per_s",
    "inference_ms_batch32", "train_step_ms", "train_batch"}}}``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: it is measured on a GPU machine by "
                                f"`python benchmarks/gpu.py` (see the README)")
    return json.loads(path.read_text())
