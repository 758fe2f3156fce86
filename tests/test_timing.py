"""cvcourse.timing: the one timer of the chapters, the trade-offs table and the benchmark.

Deterministic: a fake clock replaces time.perf_counter, so medians and spreads are exact."""

import importlib.util
from pathlib import Path

import pytest
import torch

from cvcourse import timing
from cvcourse.models import FasterRCNN
from cvcourse.timing import Timing, median_time, threads


class FakeClock:
    """perf_counter that advances by the next duration each time a timed call runs."""

    def __init__(self, durations):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def perf_counter(self):
        return self.now

    def fn(self):
        self.calls += 1
        self.now += self.durations.pop(0)


@pytest.fixture
def clock(monkeypatch):
    def make(durations):
        c = FakeClock(durations)
        monkeypatch.setattr(timing.time, "perf_counter", c.perf_counter)
        return c
    return make


def test_median_and_spread_of_the_timed_calls_only(clock):
    c = clock([100.0, 3.0, 1.0, 2.0, 9.0, 4.0])  # the first is the warm-up: never counted
    t = median_time(c.fn, repeats=5, warmup=1)
    assert c.calls == 6
    assert (t.median, t.min, t.max, t.repeats) == (3.0, 1.0, 9.0, 5)
    assert t.spread == pytest.approx((9.0 - 1.0) / 3.0)
    assert t.per_second(6) == pytest.approx(2.0)
    assert t.threads == torch.get_num_threads()


@pytest.mark.parametrize("warmup, repeats", [(0, 1), (0, 4), (3, 2), (2, 7)])
def test_call_counts(clock, warmup, repeats):
    c = clock([1.0] * (warmup + repeats))
    t = median_time(c.fn, repeats=repeats, warmup=warmup)
    assert c.calls == warmup + repeats and t.repeats == repeats
    assert t.median == t.min == t.max == 1.0 and t.spread == 0.0


def test_even_repeats_average_the_middle_two(clock):
    c = clock([4.0, 1.0, 2.0, 8.0])
    assert median_time(c.fn, repeats=4, warmup=0).median == 3.0


def test_sync_runs_around_every_timed_call_and_is_timed(clock):
    """sync before and after each timed call (not around warm-ups); the closing sync is
    inside the timed span, so GPU work queued by fn is counted."""
    c = clock([1.0, 1.0, 1.0, 1.0])
    events = []

    def sync():
        events.append(("sync", c.calls))
        c.now += 0.5                      # waiting for queued work takes time

    t = median_time(c.fn, repeats=3, warmup=1, sync=sync)
    assert events == [("sync", 1), ("sync", 2), ("sync", 2), ("sync", 3), ("sync", 3), ("sync", 4)]
    assert t.median == 1.5                # 1 s of fn + the closing sync's 0.5 s


def test_str_names_median_spread_repeats_and_threads():
    t = Timing(median=0.0123, min=0.0119, max=0.0130, repeats=5, threads=1)
    assert str(t) == "12.3 ms (11.9–13.0 ms, median of 5, 1 thread)"
    t = Timing(median=20.864, min=16.24, max=122.1, repeats=3, threads=2)
    assert str(t) == "20.9 s (16.2–122 s, median of 3, 2 threads)"
    assert str(Timing(median=0.2504, min=0.0999, max=0.9, repeats=1, threads=1)) == \
        "250 ms (99.9–900 ms, median of 1, 1 thread)"


def test_threads_restores_the_count():
    before = torch.get_num_threads()
    with threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
        assert median_time(lambda: None, repeats=1).threads == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("kwargs, match", [
    (dict(repeats=0), "repeats must be an int >= 1, got 0"),
    (dict(repeats=2.5), "repeats must be an int >= 1, got 2.5"),
    (dict(repeats=True), "repeats must be an int >= 1, got True"),
    (dict(warmup=-1), "warmup must be an int >= 0, got -1"),
])
def test_bad_counts_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        median_time(lambda: None, **kwargs)


def test_bad_callables_are_named():
    with pytest.raises(TypeError, match="fn must be a callable"):
        median_time(3)
    with pytest.raises(TypeError, match="sync must be None or a callable"):
        median_time(lambda: None, sync="cuda")
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        with threads(0):
            pass


def test_benchmark_and_tradeoffs_use_this_timer(clock, monkeypatch):
    """One timing loop: benchmarks/run.py's median_seconds and compare_detectors call median_time."""
    spec = importlib.util.spec_from_file_location(
        "bench_run", Path(__file__).resolve().parents[1] / "benchmarks" / "run.py")
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    c = clock([100.0, 5.0, 1.0, 3.0])
    assert run.median_seconds(c.fn, 3, warmup=1) == 3.0 and c.calls == 4

    from cvcourse import inference, tradeoffs
    from cvcourse.data.scenes import held_out_scenes
    seen = []

    def spy(fn, repeats, warmup, sync=None):
        seen.append((repeats, warmup, torch.get_num_threads()))
        fn()
        return Timing(median=2.0, min=1.0, max=3.0, repeats=repeats, threads=1)

    monkeypatch.setattr(inference, "median_time", spy)
    images, targets = held_out_scenes("test", 2)
    torch.manual_seed(0)
    rows = tradeoffs.compare_detectors({"f": FasterRCNN()}, images, targets, batch_size=2, repeats=3)
    assert seen == [(3, 0, 1)]                      # 3 timed passes, on one thread
    assert rows[0]["images_per_s"] == 1.0 and rows[0]["spread"] == 1.0


class CountingDetector(torch.nn.Module):
    """Records the batch sizes it is called with and the thread count in force."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls = []

    def forward(self, images):
        self.calls.append((len(images), torch.get_num_threads()))
        return [{"boxes": torch.zeros(1, 4), "scores": torch.ones(1) * float(i),
                 "labels": torch.ones(1, dtype=torch.long)} for i in range(len(images))]


def test_timed_detect_is_the_chapters_measurement():
    """Warm-up on 2 images, then `repeats` passes in batches of `batch_size` on one thread;
    the first pass's detections are returned and the thread count is restored."""
    from cvcourse.inference import detect, timed_detect
    images = torch.rand(7, 3, 8, 8)
    model = CountingDetector()
    with threads(2):
        dets, t = timed_detect(model, images, batch_size=3, repeats=2)
        assert torch.get_num_threads() == 2
    assert [n for n, _ in model.calls] == [2, 3, 3, 1, 3, 3, 1]
    assert {k for _, k in model.calls} == {1}
    assert t.repeats == 2 and t.threads == 1 and t.median > 0
    ref = detect(CountingDetector(), images, batch_size=3)
    assert len(dets) == 7 and all(torch.equal(a["scores"], b["scores"]) for a, b in zip(dets, ref))
    model.calls.clear()
    with threads(2):
        timed_detect(model, images, batch_size=25, repeats=1, num_threads=None)
    assert model.calls == [(2, 2), (7, 2)]
