"""Evaluate a shipped checkpoint on the held-out split.

    python -m cvcourse.evaluate NAME [--json] [--split test]

prints the checkpoint's metrics next to the bar recorded in the manifest; the exit status
is 1 when a metric falls below its bar.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def evaluate(name: str, split: str = "test", device=None) -> dict:
    """Load checkpoint `name` and return ``{"metrics": ..., "bar": ..., "passed": bool}``."""
    from . import pretrained, recipes

    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test' (held-out), got {split!r}")
    rec = pretrained.record(name)
    model = pretrained.load(name, device=device)
    metrics = {k: float(v) for k, v in recipes.get(name).evaluate(model, split=split).items()}
    bar = rec.get("bar", {})
    passed = all(metrics.get(k, float("-inf")) >= v for k, v in bar.items())
    return {"name": name, "split": split, "metrics": metrics, "bar": bar, "passed": passed}


def main(argv: Sequence[str] | None = None) -> int:
    from . import pretrained

    try:  # a broken manifest must not break --help; it is reported after parsing
        names, broken = pretrained.available(), None
    except pretrained.ManifestError as e:
        names, broken = [], e
    p = argparse.ArgumentParser(prog="python -m cvcourse.evaluate", description=__doc__.split("\n")[1])
    p.add_argument("name", help=f"checkpoint, one of: {', '.join(names)}" if broken is None
                   else "checkpoint name (the manifest cannot be read now)")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--device", default=None)
    a = p.parse_args(argv)
    if broken is not None:
        p.error(str(broken))
    if a.name not in names:
        p.error(f"unknown checkpoint {a.name!r}; available: {', '.join(names)}")
    try:
        res = evaluate(a.name, a.split, a.device)
    except pretrained.ManifestError as e:  # a broken record: say which and the fix, no traceback
        print(f"error: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{a.name} on the {a.split} split:")
        for k, v in res["metrics"].items():
            b = res["bar"].get(k)
            mark = "" if b is None else (f"  (bar >= {b}: {'ok' if v >= b else 'BELOW'})")
            print(f"  {k:>16} = {v:.4f}{mark}")
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
