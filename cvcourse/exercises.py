"""Checkers for the chapters' coding exercises.

Each checker runs the student's function on generated cases, compares it with the
package's reference, prints one sentence saying pass or fail with the measured error, and
returns True/False — in the style of the CS231n / EECS 498 checks.
"""

from __future__ import annotations

from typing import Callable

import torch


def report(name: str, passed: bool, detail: str) -> bool:
    """Print the verdict for exercise `name` and return `passed`."""
    print(f"{'PASS' if passed else 'FAIL'}: {name} — {detail}")
    return passed


def _call(name: str, fn: Callable, *args):
    if not callable(fn):
        raise TypeError(f"{name}: pass your function itself, got {type(fn).__name__}")
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, "not implemented yet (the function raised NotImplementedError)"
    except Exception as e:  # a student's bug is reported, not raised
        return None, f"raised {type(e).__name__}: {e}"


def check_semantic_from_instances(fn: Callable, n_scenes: int = 20, split: str = "val") -> bool:
    """Exercise (tasks chapter): ``fn(masks [N,H,W] bool, labels [N]) -> semantic [H,W] int64``
    with 0 for background. Checked against the generator's semantic map on `n_scenes` scenes."""
    from .data import make_scene

    name = "semantic_from_instances"
    worst = 0
    for i in range(n_scenes):
        s = make_scene(i, split=split)
        out, err = _call(name, fn, s["masks"].clone(), s["labels"].clone())
        if err:
            return report(name, False, err)
        out = torch.as_tensor(out)
        if out.shape != s["semantic"].shape:
            return report(name, False, f"expected shape {tuple(s['semantic'].shape)}, got {tuple(out.shape)}")
        worst = max(worst, int((out.long() != s["semantic"]).sum()))
    return report(name, worst == 0, f"{n_scenes} scenes, worst scene has {worst} wrong pixels (tolerance 0)")


def check_boxes_from_masks(fn: Callable, n_scenes: int = 20, split: str = "val") -> bool:
    """Exercise (tasks chapter): ``fn(masks [N,H,W] bool) -> boxes [N,4]`` tight xyxy boxes in
    the pixel-edge convention (x2 = last column + 1). Checked against the generator's boxes."""
    from .data import make_scene

    name = "boxes_from_masks"
    worst = 0.0
    for i in range(n_scenes):
        s = make_scene(i, split=split)
        out, err = _call(name, fn, s["masks"].clone())
        if err:
            return report(name, False, err)
        out = torch.as_tensor(out, dtype=torch.float32)
        if out.shape != s["boxes"].shape:
            return report(name, False, f"expected shape {tuple(s['boxes'].shape)}, got {tuple(out.shape)}")
        worst = max(worst, float((out - s["boxes"]).abs().max()))
    return report(name, worst <= 1e-6, f"{n_scenes} scenes, max |error| = {worst:.3g} px (tolerance 1e-6)")
