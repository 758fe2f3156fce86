"""What every checker shares: the verdict sentence and calling a student's function safely."""

from __future__ import annotations

from typing import Callable


def report(name: str, passed: bool, detail: str) -> bool:
    """Print the verdict for exercise `name` and return `passed`."""
    print(f"{'PASS' if passed else 'FAIL'}: {name} — {detail}")
    return passed


def call_solution(name: str, fn: Callable, *args):
    """Call the student's ``fn(*args)``: ``(result, None)``, or ``(None, problem)`` when it failed."""
    if not callable(fn):
        raise TypeError(f"{name}: pass your function itself, got {type(fn).__name__}")
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, "not implemented yet (the function raised NotImplementedError)"
    except Exception as e:  # a student's bug is reported, not raised
        return None, f"raised {type(e).__name__}: {e}"


def max_error(name: str, fn: Callable, args: tuple, ref, where: str = "", dtype=None,
               relative: bool = False):
    """Call the student's ``fn(*args)`` and compare with `ref` (a tensor).

    Returns ``(problem, None)`` when the call failed or the shape is wrong (`problem` is the
    sentence to report; `where` prefixes it, e.g. "a 4x5 map: "), else ``(None, error)``:
    the largest absolute (or, with `relative`, relative) difference from `ref`, computed in
    `dtype` (default: `ref`'s)."""
    import torch

    out, err = call_solution(name, fn, *args)
    if err:
        return err, None
    out = torch.as_tensor(out, dtype=dtype or ref.dtype)
    if out.shape != ref.shape:
        return f"{where}expected shape {tuple(ref.shape)}, got {tuple(out.shape)}", None
    diff = (out - ref.to(out.dtype)).abs()
    if relative:
        diff = diff / ref.abs().clamp_min(1e-12)
    return None, float(diff.max())
