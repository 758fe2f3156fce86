"""What every checker shares: the verdict sentence and calling a student's function safely."""

from __future__ import annotations

from typing import Callable


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
