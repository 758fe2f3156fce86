"""Measurements too long for a chapter's notebook, made reproducible: code, command, JSON.

A chapter that compares several trainings cannot run them in its 90 seconds. The sweep
is a function here with a fixed budget (steps, batch, seed, evaluation set); a command
runs it and stores the results as JSON in the package, with date, hardware and budget;
the chapter loads and plots the JSON, and a test re-runs one point with a tiny budget.

Regenerate the file the single-object detection chapter plots::

    OMP_NUM_THREADS=1 python -m cvcourse.experiments localizer_sweep   # about 10 min on 2 cores

- `localizer_point`: train one `SingleObjectLocalizer` with a given box-loss weight and box
  loss (smooth L1 or L2), then its class accuracy and mean box IoU on held-out scenes.
- `localizer_sweep`: every (weight, loss) pair, same budget, same seed and data.
- `load_sweep`: the stored results.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import json
import time
from pathlib import Path
from typing import Sequence

import torch

from . import device as _device

__all__ = ["SWEEP_FILE", "BOX_WEIGHTS", "BOX_LOSSES", "localizer_point", "localizer_sweep",
           "load_sweep", "save_sweep"]

SWEEP_FILE = Path(__file__).resolve().parent / "weights" / "localizer_sweep.json"
BOX_WEIGHTS = (0.1, 1.0, 10.0)
BOX_LOSSES = ("smooth_l1", "l2")


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
    return {"experiment": "localizer_sweep", "date": _dt.date.today().isoformat(),
            "hardware": _device.describe(device), "torch": torch.__version__,
            "total_seconds": round(time.perf_counter() - start, 1), "budget": budget,
            "points": points}


def save_sweep(results: dict, path=SWEEP_FILE) -> Path:
    """Write `results` as indented JSON to `path` (default: the package's file)."""
    path = Path(path)
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def load_sweep(path=SWEEP_FILE) -> dict:
    """The stored sweep results (`localizer_sweep`'s dict)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; regenerate it with "
                                f"`python -m cvcourse.experiments localizer_sweep`")
    return json.loads(path.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cvcourse.experiments",
                                description=__doc__.split("\n")[0])
    p.add_argument("name", choices=["localizer_sweep"], help="the experiment to run")
    p.add_argument("--steps", type=int, default=300, help="training steps per point")
    p.add_argument("--n-eval", type=int, default=500, help="held-out (val) scenes per point")
    p.add_argument("--out", default=str(SWEEP_FILE), help="where to write the JSON")
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    results = localizer_sweep(steps=a.steps, n_eval=a.n_eval, device=a.device)
    print(f"wrote {save_sweep(results, a.out)} ({results['total_seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
