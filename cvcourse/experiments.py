"""Measurements too long for a chapter's notebook, made reproducible: code, command, JSON.

A chapter that compares several trainings cannot run them in its 90 seconds. The sweep
is a function here with a fixed budget (steps, batch, seed, evaluation set); a command
runs it and stores the results as JSON in the package, with date, hardware and budget;
the chapter loads and plots the JSON, and a test re-runs one point with a tiny budget.

Regenerate the file the single-object detection chapter plots::

    OMP_NUM_THREADS=1 python -m cvcourse.experiments localizer_sweep   # about 10 min on 2 cores

and the one the detection trade-offs chapter plots::

    OMP_NUM_THREADS=1 python -m cvcourse.experiments backbone_sweep --seeds 0 1 2   # about 40 min of one core

- `localizer_point`: train one `SingleObjectLocalizer` with a given box-loss weight and box
  loss (smooth L1 or L2), then its class accuracy and mean box IoU on held-out scenes.
- `localizer_sweep`: every (weight, loss) pair, same budget, same seed and data.
- `backbone_point`: train the `yolo` recipe's detector with another backbone width or neck
  depth for a fixed budget; its mAP on held-out scenes, parameters and multiply-adds.
- `backbone_sweep`: the widths and depths of `BACKBONE_POINTS`, same budget and data, per seed.
- `confidence_sweep`: YOLO's confidence target, 1 or v1's IoU, at the backbone sweep's budget
  (the YOLO chapter)::

    OMP_NUM_THREADS=1 python -m cvcourse.experiments confidence_sweep

- `retinanet_point`: train the `retinanet` recipe's detector with or without the FPN's
  top-down pathway, with the focal loss or BCE; AP and, per pyramid level, the share of
  the objects it serves that were found (`recall_by_level`).
- `fpn_sweep`: with and without the top-down pathway (the RetinaNet chapter)::

    OMP_NUM_THREADS=1 python -m cvcourse.experiments fpn_sweep

- `focal_sweep`: focal loss vs BCE at the shipped checkpoints' budget over seeds 0, 1, 2
  (mean and spread for the RetinaNet chapter's comparison)::

    OMP_NUM_THREADS=1 python -m cvcourse.experiments focal_sweep    # about 42 min of one core

  Seeds can run as separate jobs (``--seeds 2 --out part.json``) and be joined with
  `merge_sweeps`; on a GPU add ``--device cuda``.
- `load_sweep`: the stored results (any of the files).

Every sweep stores each point with its seed and, given ``out``, writes what it has after
every point; `merge_sweeps` joins runs of one sweep made with different seeds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from . import device as devices

__all__ = ["SWEEP_FILE", "BOX_WEIGHTS", "BOX_LOSSES", "localizer_point", "localizer_sweep",
           "BACKBONE_SWEEP_FILE", "BACKBONE_POINTS", "backbone_point", "backbone_sweep",
           "CONFIDENCE_SWEEP_FILE", "CONFIDENCE_TARGETS", "confidence_sweep",
           "FPN_SWEEP_FILE", "FOCAL_SWEEP_FILE", "retinanet_point", "fpn_sweep", "focal_sweep",
           "recall_by_level", "merge_sweeps",
           "multiply_adds", "load_sweep", "save_sweep"]

SWEEP_FILE = Path(__file__).resolve().parent / "weights" / "localizer_sweep.json"
BOX_WEIGHTS = (0.1, 1.0, 10.0)
BOX_LOSSES = ("smooth_l1", "l2")
BACKBONE_SWEEP_FILE = SWEEP_FILE.with_name("backbone_sweep.json")
# (backbone width, neck depth): the shipped YOLO is (16, 2); widths double, depth halves/doubles
BACKBONE_POINTS = ((8, 2), (16, 2), (32, 2), (16, 1), (16, 4))
CONFIDENCE_SWEEP_FILE = SWEEP_FILE.with_name("confidence_sweep.json")
CONFIDENCE_TARGETS = ("one", "iou")    # YOLO's confidence_target values
FPN_SWEEP_FILE = SWEEP_FILE.with_name("fpn_sweep.json")
FOCAL_SWEEP_FILE = SWEEP_FILE.with_name("focal_sweep.json")


def _run_sweep(name: str, budget: dict, runs: Sequence, device, log, out, describe) -> dict:
    """Call every zero-argument `runs` item in turn (one training and scoring each) and
    return the sweep's record. With `out`, the record so far is written there after every
    point (a long run that stops keeps what it measured); `log` gets `describe(point)`."""
    start = time.perf_counter()
    results = []
    for run in runs:
        results.append(run())
        if out is not None:
            save_sweep(_sweep_record(name, device, start, budget, results), out)
        if log:
            log(describe(results[-1]))
    return _sweep_record(name, device, start, budget, results)


def _sweep_record(experiment: str, device, start: float, budget: dict, points: list) -> dict:
    """What every sweep stores: its name, date, hardware, torch, wall time, budget and points."""
    return {"experiment": experiment, "date": _dt.date.today().isoformat(),
            "hardware": devices.describe(device), "torch": torch.__version__,
            "total_seconds": round(time.perf_counter() - start, 1), "budget": budget,
            "points": points}


def localizer_point(box_weight: float, box_loss: str = "smooth_l1", steps: int = 300,
                    batch_size: int = 32, split: str = "val", n_eval: int = 500, seed: int = 0,
                    device=None) -> dict:
    """Train the `localizer` recipe's model with one loss weighting and evaluate it.

    The model, data (fresh one-object 64 x 64 train scenes), learning rate and warm-up are
    the recipe's; only the multitask loss ``CE + box_weight * box_loss`` and the budget
    change. Evaluated on the first `n_eval` scenes of `split` ("val": choosing a weighting
    is tuning, so the test split stays untouched).

    Returns:
        ``{"box_weight", "box_loss", "accuracy", "mean_iou", "final_classification",
        "final_box", "seconds"}``; the last two losses are 20-step running means, the box
        term *unweighted* so that runs with different weights compare.
    """
    from . import recipes
    from .models.localizer import localization_loss
    from .train import fit

    if box_weight <= 0:
        raise ValueError(f"box_weight must be > 0, got {box_weight}")
    if box_loss not in BOX_LOSSES:
        raise ValueError(f"box_loss must be one of {BOX_LOSSES}, got {box_loss!r}")
    recipe = recipes.get("localizer")
    torch.manual_seed(seed)
    model = recipe.build()
    loss = functools.partial(localization_loss, box_weight=box_weight, box_loss=box_loss)
    hist = fit(model, recipe.train_data(), loss, steps=steps, batch_size=batch_size,
               lr=recipe.lr, weight_decay=recipe.weight_decay, warmup=min(recipe.warmup, steps // 4),
               grad_clip=recipe.grad_clip, collate_fn=recipe.collate_fn, device=device,
               seed=seed, progress=False)
    metrics = recipe.evaluate(model.eval(), split=split, n=n_eval)

    def tail(values, scale=1.0):
        values = values[-20:]
        return round(sum(values) / len(values) / scale, 5)

    return {"box_weight": float(box_weight), "box_loss": box_loss,
            "accuracy": round(float(metrics["accuracy"]), 5),
            "mean_iou": round(float(metrics["mean_iou"]), 5),
            "final_classification": tail(hist.parts["classification"]),
            "final_box": tail(hist.parts["box"], box_weight),
            "seconds": round(hist.seconds, 1)}


def localizer_sweep(box_weights: Sequence[float] = BOX_WEIGHTS,
                    box_losses: Sequence[str] = BOX_LOSSES, steps: int = 300,
                    batch_size: int = 32, split: str = "val", n_eval: int = 500, seed: int = 0,
                    device=None, log=print) -> dict:
    """`localizer_point` for every (box_loss, box_weight) pair, one after the other.

    Returns:
        ``{"experiment", "date", "hardware", "torch", "budget": {...}, "points": [...]}``,
        one point per pair, ready for `save_sweep`.
    """
    from . import recipes

    start = time.perf_counter()
    data = recipes.get("localizer").train_data()
    budget = {"steps": steps, "batch_size": batch_size, "seed": seed, "eval_split": split,
              "eval_scenes": n_eval, "recipe": "localizer", "image_size": data.size,
              "object_size": list(data.object_size)}
    points = []
    for box_loss in box_losses:
        for w in box_weights:
            points.append(localizer_point(w, box_loss, steps, batch_size, split, n_eval, seed, device))
            if log:
                log(f"{box_loss:>9} x {w:<5}: accuracy {points[-1]['accuracy']:.3f}, "
                    f"mean IoU {points[-1]['mean_iou']:.3f} ({points[-1]['seconds']} s)")
    return _sweep_record("localizer_sweep", device, start, budget, points)


def multiply_adds(model: torch.nn.Module, images: torch.Tensor) -> int:
    """Multiply-adds of one eval-mode forward pass of `model` on `images` (convolutions and
    matrix products, as counted by `torch.utils.flop_counter`, halved: 1 MAC = 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    from .inference import evaluating

    with evaluating(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(images)  # every module's mode is restored afterwards, not reset by model.train()
    return counter.get_total_flops() // 2


def backbone_point(width: int, neck_depth: int = 2, steps: int = 800, split: str = "val",
                   n_eval: int = 200, seed: int = 0, device=None,
                   confidence_target: str = "one") -> dict:
    """Train the `yolo` recipe's detector with backbone `width` and `neck_depth` and score it.

    Everything else is the recipe's (data, loss, batch, learning rate, warm-up, clipping),
    with `steps` steps instead of the recipe's so the sweep fits a CPU; evaluated on the
    first `n_eval` scenes of `split` ("val": the sweep informs a choice, so the test split
    stays untouched). `seed` seeds the initial weights and which training scenes are
    drawn, in what order; `confidence_target` is `YOLO`'s ("one", the recipe's, or v1's "iou").

    Returns:
        ``{"width", "neck_depth", "confidence_target", "seed", "params", "multiply_adds"
        (one 128 x 128 image), "map", "map_50", "map_75", "final_loss", "seconds"}``.
    """
    from . import recipes
    from .train import fit

    for name, v, low in (("width", width, 1), ("neck_depth", neck_depth, 0), ("steps", steps, 1)):
        if not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
    recipe = recipes.get("yolo")
    torch.manual_seed(seed)
    model = recipe.factory(**{**recipe.config, "width": width, "neck_depth": neck_depth,
                              "confidence_target": confidence_target})
    hist = fit(model, recipe.train_data(), recipe.loss, steps=steps, batch_size=recipe.batch_size,
               lr=recipe.lr, weight_decay=recipe.weight_decay, warmup=min(recipe.warmup, steps // 4),
               grad_clip=recipe.grad_clip, collate_fn=recipe.collate_fn, device=device,
               seed=seed, progress=False)
    model = model.cpu().eval()
    metrics = recipe.evaluate(model, split=split, n=n_eval)
    size = recipe.train_data().size
    return {"width": width, "neck_depth": neck_depth, "confidence_target": confidence_target,
            "seed": seed, "params": sum(p.numel() for p in model.parameters()),
            "multiply_adds": multiply_adds(model, torch.zeros(1, 3, size, size)),
            **{k: round(float(metrics[k]), 5) for k in ("map", "map_50", "map_75")},
            "final_loss": round(hist.smoothed()[-1], 5), "seconds": round(hist.seconds, 1)}


def backbone_sweep(points: Sequence[tuple] = BACKBONE_POINTS, steps: int = 800, split: str = "val",
                   n_eval: int = 200, seeds: Sequence[int] = (0,), device=None, log=print,
                   out=None) -> dict:
    """`backbone_point` for every seed and (width, neck_depth) in `points`, one after the other.

    Args:
        seeds: one training per seed and point; the stored points carry their seed, so a
            repeat over seeds gives mean and spread per point.
        out: when given, the record so far is written there after every point (a long run
            that stops keeps what it measured).

    Returns:
        ``{"experiment", "date", "hardware", "torch", "budget": {...}, "points": [...]}``.
    """
    from . import recipes

    budget = {"steps": steps, "batch_size": recipes.get("yolo").batch_size, "seeds": list(seeds),
              "eval_split": split, "eval_scenes": n_eval, "recipe": "yolo"}
    runs = [functools.partial(backbone_point, width, depth, steps, split, n_eval, seed, device)
            for seed in seeds for width, depth in points]
    return _run_sweep("backbone_sweep", budget, runs, device, log, out, lambda r: (
        f"seed {r['seed']}, width {r['width']:>2}, neck {r['neck_depth']}: mAP@0.5 {r['map_50']:.3f}, "
        f"COCO mAP {r['map']:.3f}, {r['params']:,} params ({r['seconds']} s)"))


def confidence_sweep(targets: Sequence[str] = CONFIDENCE_TARGETS, steps: int = 800,
                     split: str = "val", n_eval: int = 200, seeds: Sequence[int] = (0,),
                     device=None, log=print, out=None) -> dict:
    """YOLO's two confidence targets ("one": BCE to 1; "iou": v1's BCE to the detached IoU)
    at the backbone sweep's budget and the recipe's size (width 16, neck depth 2).

    Each point is `backbone_point(16, 2, ..., confidence_target=t)`: same data, seed and
    evaluation as the backbone sweep, so its "one" point at seed 0 repeats that sweep's
    (16, 2) point. `seeds` and `out` as in `backbone_sweep`.

    Returns:
        ``{"experiment", "date", "hardware", "torch", "budget": {...}, "points": [...]}``.
    """
    from . import recipes

    for t in targets:
        if t not in CONFIDENCE_TARGETS:
            raise ValueError(f"targets must be in {CONFIDENCE_TARGETS}, got {t!r}")
    recipe = recipes.get("yolo")
    budget = {"steps": steps, "batch_size": recipe.batch_size, "seeds": list(seeds),
              "eval_split": split, "eval_scenes": n_eval, "recipe": "yolo",
              "width": recipe.config["width"], "neck_depth": 2}
    runs = [functools.partial(backbone_point, recipe.config["width"], 2, steps, split, n_eval, seed,
                              device, confidence_target=t) for seed in seeds for t in targets]
    return _run_sweep("confidence_sweep", budget, runs, device, log, out, lambda r: (
        f"seed {r['seed']}, target {r['confidence_target']}: AP@0.75 {r['map_75']:.3f}, "
        f"AP@0.5 {r['map_50']:.3f}, COCO mAP {r['map']:.3f} ({r['seconds']} s)"))


def recall_by_level(model: torch.nn.Module, images: torch.Tensor, targets: list[dict],
                    iou_thresholds: Sequence[float] = (0.5, 0.75), detections: list[dict] | None = None
                    ) -> list[dict]:
    """Per pyramid level (the level of each object's best anchor, `pyramid_levels`): how
    many held-out objects it serves, their sizes, and the share of them found, i.e. with a
    detection of their class (among the model's at most 100 per image) at IoU >= t.

    Returns:
        one dict per level: ``{"level", "stride", "objects", "min_side", "max_side",
        "recall_50", "recall_75"}`` (sides: sqrt of the box area, px; recall keys follow
        `iou_thresholds`). `detections`: `detect(model, images)` when already computed.
    """
    from .inference import detect
    from .models.retinanet import pyramid_levels
    from .ops.boxes import box_iou

    dets = detect(model, images) if detections is None else detections
    best, levels, sides = [], [], []
    for d, t in zip(dets, targets):                      # a loop over the images
        iou = box_iou(t["boxes"], d["boxes"])            # (G, D)
        same = t["labels"][:, None] == d["labels"][None, :]
        best.append(torch.where(same, iou, torch.zeros_like(iou)).amax(1)
                    if len(d["boxes"]) else torch.zeros(len(t["boxes"])))   # (G,)
        levels.append(pyramid_levels(model, t["boxes"], images.shape[-1]))
        sides.append(((t["boxes"][:, 2:] - t["boxes"][:, :2]).prod(1)).sqrt())
    best, levels, sides = torch.cat(best), torch.cat(levels), torch.cat(sides)
    rows = []
    for level, stride in enumerate(model.backbone.strides):
        at = levels == level
        row = {"level": level, "stride": stride, "objects": int(at.sum()),
               "min_side": round(float(sides[at].min()), 1) if at.any() else None,
               "max_side": round(float(sides[at].max()), 1) if at.any() else None}
        for t in iou_thresholds:
            row[f"recall_{round(100 * t)}"] = round(float((best[at] >= t).float().mean()), 5) \
                if at.any() else None
        rows.append(row)
    return rows


def retinanet_point(top_down: bool = True, loss: str = "focal", steps: int = 400,
                    split: str = "val", n_eval: int = 500, seed: int = 0, device=None) -> dict:
    """Train the `retinanet` recipe's detector with or without the FPN's top-down pathway,
    with the focal loss or plain BCE, and score it.

    Everything else is the recipe's (anchors, prior, data, batch, learning rate, clipping)
    with `steps` steps instead of the recipe's 2,000 (so that a pair fits a CPU); evaluated
    on the first `n_eval` scenes of `split`: COCO AP, AP@0.5, AP@0.75 and `recall_by_level`.
    `seed` seeds the initial weights and which training scenes are drawn.

    Returns:
        ``{"top_down", "loss", "seed", "map", "map_50", "map_75", "levels": [...],
        "final_loss", "seconds"}``.
    """
    from . import recipes
    from .data.scenes import held_out_scenes
    from .inference import detect
    from .metrics import mean_average_precision
    from .models.retinanet import LOSSES
    from .train import fit

    if not isinstance(top_down, bool):
        raise ValueError(f"top_down must be True or False, got {top_down!r}")
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    recipe = recipes.get("retinanet")
    torch.manual_seed(seed)
    model = recipe.factory(**{**recipe.config, "top_down": top_down, "loss": loss})
    hist = fit(model, recipe.train_data(), recipe.loss, steps=steps, batch_size=recipe.batch_size,
               lr=recipe.lr, weight_decay=recipe.weight_decay, warmup=min(recipe.warmup, steps // 4),
               grad_clip=recipe.grad_clip, collate_fn=recipe.collate_fn, device=device,
               seed=seed, progress=False)
    model = model.cpu().eval()
    images, targets = held_out_scenes(split, n_eval)
    dets = detect(model, images)                          # scored twice: AP, and found per level
    metrics = mean_average_precision(dets, list(targets))
    return {"top_down": top_down, "loss": loss, "seed": seed,
            **{k: round(float(metrics[k]), 5) for k in ("map", "map_50", "map_75")},
            "levels": recall_by_level(model, images, list(targets), detections=dets),
            "final_loss": round(hist.smoothed()[-1], 5), "seconds": round(hist.seconds, 1)}


def _retinanet_sweep(name: str, settings: Sequence[dict], steps: int, split: str, n_eval: int,
                     seeds: Sequence[int], device, log, out) -> dict:
    """`retinanet_point` for every seed and setting (keyword arguments), one after the other."""
    from . import recipes

    budget = {"steps": steps, "batch_size": recipes.get("retinanet").batch_size, "seeds": list(seeds),
              "eval_split": split, "eval_scenes": n_eval, "recipe": "retinanet"}
    runs = [functools.partial(retinanet_point, **setting, steps=steps, split=split, n_eval=n_eval,
                              seed=seed, device=device) for seed in seeds for setting in settings]
    return _run_sweep(name, budget, runs, device, log, out, lambda r: (
        f"seed {r['seed']}, top-down {r['top_down']}, {r['loss']}: AP {r['map']:.3f}, "
        f"AP@0.5 {r['map_50']:.3f}, AP@0.75 {r['map_75']:.3f}, recall@0.5 by level "
        f"{[lv['recall_50'] for lv in r['levels']]} ({r['seconds']} s)"))


def fpn_sweep(top_downs: Sequence[bool] = (True, False), steps: int = 400, split: str = "val",
              n_eval: int = 500, seeds: Sequence[int] = (0,), device=None, log=print,
              out=None) -> dict:
    """`retinanet_point` (focal loss) with and without the top-down pathway, per seed; `out`
    as in `backbone_sweep`.

    Returns:
        ``{"experiment", "date", "hardware", "torch", "budget": {...}, "points": [...]}``.
    """
    return _retinanet_sweep("fpn_sweep", [{"top_down": t} for t in top_downs], steps, split,
                            n_eval, seeds, device, log, out)


def focal_sweep(losses: Sequence[str] = ("focal", "bce"), steps: int = 2000, split: str = "test",
                n_eval: int = 200, seeds: Sequence[int] = (0, 1, 2), device=None, log=print,
                out=None) -> dict:
    """The focal-vs-BCE comparison repeated over seeds: `retinanet_point` with each loss.

    The default budget is the shipped checkpoints' (2,000 steps, scored on 200 test scenes as
    in their records), so seed 0 repeats the `retinanet` / `retinanet_bce` pair and seeds 1
    and 2 give the spread; about 2 x 3 x 7 minutes of one CPU core, minutes on a GPU.

    Returns:
        ``{"experiment", "date", "hardware", "torch", "budget": {...}, "points": [...]}``.
    """
    return _retinanet_sweep("focal_sweep", [{"loss": loss} for loss in losses], steps, split,
                            n_eval, seeds, device, log, out)


def merge_sweeps(records: Sequence[dict]) -> dict:
    """One record from runs of the same sweep that differ only in their seeds (seeds run as
    separate jobs, or added later): points concatenated, seeds joined, wall times added.

    Returns:
        the first record with every run's points and seeds; its "runs" list keeps each
        run's seeds, date, hardware and seconds.
    """
    if not records:
        raise ValueError("records must hold at least one sweep record")
    first = records[0]
    budget = {k: v for k, v in first["budget"].items() if k != "seeds"}
    for r in records[1:]:
        if r["experiment"] != first["experiment"] or \
                {k: v for k, v in r["budget"].items() if k != "seeds"} != budget:
            raise ValueError(f"records must be runs of one sweep with one budget, got "
                             f"{first['experiment']} {first['budget']} and {r['experiment']} {r['budget']}")
    seeds = [s for r in records for s in r["budget"]["seeds"]]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"records must not repeat a seed, got seeds {seeds}")
    runs = [run for r in records for run in r.get("runs", [
        {k: r[k] for k in ("date", "hardware", "total_seconds")} | {"seeds": r["budget"]["seeds"]}])]
    return {**first, "budget": {**first["budget"], "seeds": seeds},
            "total_seconds": round(sum(r["total_seconds"] for r in records), 1),
            "points": [p for r in records for p in r["points"]], "runs": runs}


def save_sweep(results: dict, path=SWEEP_FILE) -> Path:
    """Write `results` as indented JSON to `path` (default: the package's file)."""
    path = Path(path)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def load_sweep(path=SWEEP_FILE) -> dict:
    """The stored sweep results (`localizer_sweep`'s or, with `BACKBONE_SWEEP_FILE` or
    `CONFIDENCE_SWEEP_FILE`, `backbone_sweep`'s or `confidence_sweep`'s dict)."""
    path = Path(path)
    if not path.exists():
        names = {BACKBONE_SWEEP_FILE.name: "backbone_sweep",
                 CONFIDENCE_SWEEP_FILE.name: "confidence_sweep", FPN_SWEEP_FILE.name: "fpn_sweep",
                 FOCAL_SWEEP_FILE.name: "focal_sweep"}
        name = names.get(path.name, "localizer_sweep")
        raise FileNotFoundError(f"{path} is missing; regenerate it with "
                                f"`python -m cvcourse.experiments {name}`")
    return json.loads(path.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cvcourse.experiments",
                                description=__doc__.split("\n")[0])
    p.add_argument("name", choices=["localizer_sweep", "backbone_sweep", "confidence_sweep",
                                    "fpn_sweep", "focal_sweep"],
                   help="the experiment to run")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per point (default: 300 localizer, 400 fpn, 2000 focal, "
                        "800 the others)")
    p.add_argument("--n-eval", type=int, default=None,
                   help="held-out scenes per point (default: 500 localizer and fpn, 200 the others; "
                        "focal_sweep scores test scenes, the others val)")
    p.add_argument("--points", type=int, nargs="*", default=None,
                   help="backbone_sweep: run only these indices of BACKBONE_POINTS")
    p.add_argument("--targets", nargs="*", default=None, choices=CONFIDENCE_TARGETS,
                   help="confidence_sweep: the confidence targets to train (default: both)")
    p.add_argument("--top-down", type=int, nargs="*", default=[1, 0], choices=[0, 1],
                   help="fpn_sweep: 1 with the top-down pathway, 0 without (default: both)")
    p.add_argument("--seeds", type=int, nargs="*", default=None,
                   help="one training per seed and point (default: 0; focal_sweep 0 1 2)")
    p.add_argument("--out", default=None, help="where to write the JSON (default: the package's file)")
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    if a.name == "localizer_sweep":
        results = localizer_sweep(steps=a.steps or 300, n_eval=a.n_eval or 500, device=a.device)
        out = a.out or SWEEP_FILE
    elif a.name == "backbone_sweep":
        points = BACKBONE_POINTS if a.points is None else [BACKBONE_POINTS[i] for i in a.points]
        out = a.out or BACKBONE_SWEEP_FILE
        results = backbone_sweep(points, steps=a.steps or 800, n_eval=a.n_eval or 200,
                                 seeds=a.seeds or [0], device=a.device, out=out)
    elif a.name == "fpn_sweep":
        out = a.out or FPN_SWEEP_FILE
        results = fpn_sweep([bool(t) for t in a.top_down], steps=a.steps or 400,
                            n_eval=a.n_eval or 500, seeds=a.seeds or [0], device=a.device, out=out)
    elif a.name == "focal_sweep":
        out = a.out or FOCAL_SWEEP_FILE
        results = focal_sweep(steps=a.steps or 2000, n_eval=a.n_eval or 200,
                              seeds=a.seeds or [0, 1, 2], device=a.device, out=out)
    else:
        out = a.out or CONFIDENCE_SWEEP_FILE
        results = confidence_sweep(a.targets or CONFIDENCE_TARGETS, steps=a.steps or 800,
                                   n_eval=a.n_eval or 200, seeds=a.seeds or [0], device=a.device,
                                   out=out)
    print(f"wrote {save_sweep(results, out)} ({results['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
