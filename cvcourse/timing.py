"""Wall-clock timing the same way everywhere: the chapters, the trade-offs table, the benchmark.

A single timing of a call on a shared machine can be off by a factor of ten; the median of
several repeats after a warm-up is a figure worth printing, and the spread says how much to
trust it. Timings are *printed*, never asserted: the book's tests assert only what holds on
any machine (see the chapters' closing cells).

- `median_time`: median and spread (min, max) of `repeats` timed calls after `warmup`
  untimed ones, with an optional `sync` (e.g. ``torch.cuda.synchronize``) around each call.
- `Timing`: its result; ``str(t)`` reads "12.3 ms (11.9–13.0 ms, median of 5, 1 thread)".
- `threads`: a context that fixes torch's CPU thread count while timing.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable

import torch

__all__ = ["Timing", "median_time", "threads"]


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median of the timed repeats, their minimum and maximum."""

    median: float
    min: float
    max: float
    repeats: int
    threads: int

    @property
    def spread(self) -> float:
        """(max - min) / median: 0.1 means the repeats agree within 10 %."""
        return (self.max - self.min) / self.median if self.median > 0 else math.inf

    def per_second(self, items: int = 1) -> float:
        """`items` processed per call, as items per second at the median time."""
        return items / self.median

    def __str__(self) -> str:
        scale, unit = (1.0, "s") if self.median >= 1 else (1e3, "ms")

        def fmt(seconds: float) -> str:
            return f"{seconds * scale:.1f}" if seconds * scale < 100 else f"{seconds * scale:,.0f}"
        return (f"{fmt(self.median)} {unit} ({fmt(self.min)}–{fmt(self.max)} {unit}, median of "
                f"{self.repeats}, {self.threads} thread{'s' if self.threads != 1 else ''})")


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1,
                sync: Callable[[], object] | None = None) -> Timing:
    """Time `fn()` `repeats` times after `warmup` untimed calls; return the median and spread.

    Args:
        fn: the call to time, without arguments (wrap it in a ``lambda``).
        repeats: timed calls, at least 1; the median of an odd number is one real call.
        warmup: untimed calls first (first-call allocations, lazy initialisation), 0 or more.
        sync: called before and after each timed call, e.g. ``torch.cuda.synchronize`` so that
            queued GPU work is counted; None on the CPU.

    Returns:
        A `Timing` with ``median``, ``min`` and ``max`` seconds per call, ``repeats`` and the
        torch CPU thread count in force.

    Example::

        t = median_time(lambda: model(batch), repeats=5)
        print(f"{t.per_second(len(batch)):.0f} images/s, {t}")
    """
    if not callable(fn):
        raise TypeError(f"fn must be a callable without arguments, got {type(fn).__name__}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an int >= 0, got {warmup!r}")
    if sync is not None and not callable(sync):
        raise TypeError(f"sync must be None or a callable, got {type(sync).__name__}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if sync is not None:
            sync()
        start = time.perf_counter()
        fn()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return Timing(median=statistics.median(times), min=min(times), max=max(times),
                  repeats=repeats, threads=torch.get_num_threads())


@contextlib.contextmanager
def threads(n: int) -> Iterator[int]:
    """Run the block with torch using `n` CPU threads, then restore the previous count.

    Args:
        n: intra-op threads, at least 1 (the chapters time with 1: comparable across machines).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
