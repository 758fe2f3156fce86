"""Single-object localization, sliding windows and R-CNN (the detection chapters before RoI pooling).

Exercise checkers, the window-count formula against brute force, multiply-adds, the stored
loss-weighting sweep, the R-CNN recipe and data, figures, and the shipped checkpoints' bars.
"""

import statistics
from itertools import product

import pytest
import torch
from matplotlib.figure import Figure
from torch import nn

from cvcourse import exercises, experiments, pretrained, recipes
from cvcourse.ops import box_iou
from cvcourse.recipes import rcnn as R
from cvcourse.widgets import localization as L
from cvcourse.widgets import time_figure

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- exercises
def _iou(a, b):
    lt, rb = torch.maximum(a[:, None, :2], b[None, :, :2]), torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def _union_only(a, b):  # a typical mistake: forgets to subtract the intersection
    lt, rb = torch.maximum(a[:, None, :2], b[None, :, :2]), torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None])


def _window_count(h, w, shapes, stride):
    return sum(((w - a) // stride + 1) * ((h - b) // stride + 1) for a, b in shapes if a <= w and b <= h)


def _proposal_labels(p, g, lab):
    best, idx = box_iou(p, g).max(1)
    return torch.where(best >= 0.5, lab[idx], 0)


def _not_implemented(*args):
    raise NotImplementedError


@pytest.mark.parametrize("check, good, bad", [
    (exercises.check_box_iou, _iou, _union_only),
    (exercises.check_window_count, _window_count,
     lambda h, w, shapes, s: sum(((w - a) // s) * ((h - b) // s) for a, b in shapes)),  # off by one
    (exercises.check_window_count, _window_count,
     lambda h, w, shapes, s: sum(((w - a) // s + 1) * ((h - b) // s + 1) for a, b in shapes)),  # too large
    (exercises.check_proposal_labels, _proposal_labels,
     lambda p, g, lab: torch.where(box_iou(p, g).max(1).values > 0.5, 1, 0)),  # class ignored
])
def test_checkers_pass_the_reference_and_fail_wrong_answers(check, good, bad, capsys):
    assert check(good) is True
    assert check(bad) is False
    assert check(_not_implemented) is False
    out = capsys.readouterr().out
    assert out.count("PASS") == 1 and out.count("FAIL") == 2 and "not implemented" in out


# ------------------------------------------------------------------------------ windows
def _brute_force_windows(height, width, shapes, stride):
    found = []
    for w, h in shapes:
        for y in range(0, height, stride):
            for x in range(0, width, stride):
                if x + w <= width and y + h <= height:
                    found.append((x, y, x + w, y + h))
    return found


@pytest.mark.parametrize("height, width, sizes, ratios, stride", [
    (128, 128, [12, 18, 26, 36, 50], [0.5, 1.0, 2.0], 4),
    (37, 50, [8, 20], [1.0, 3.0], 3),
    (20, 20, [5, 30], [1.0], 1),          # the 30-pixel window fits nowhere
    (64, 48, [16], [0.25, 4.0], 7),
])
def test_window_count_formula_equals_brute_force_enumeration(height, width, sizes, ratios, stride):
    shapes = L.window_shapes(sizes, ratios)
    brute = _brute_force_windows(height, width, shapes, stride)
    windows = L.sliding_windows(height, width, sizes, ratios, stride)
    assert L.count_windows(height, width, sizes, ratios, stride) == len(brute) == len(windows)
    assert sorted(map(tuple, windows.long().tolist())) == sorted(brute)


def test_window_shapes_keep_area_and_ratio():
    for (w, h), (s, r) in zip(L.window_shapes([20, 40], [0.5, 2.0]), product([20, 40], [0.5, 2.0])):
        assert abs(w * h - s * s) <= s and abs(w / h - r) < 0.1
    with pytest.raises(ValueError, match="positive"):
        L.window_shapes([0], [1.0])
    with pytest.raises(ValueError, match="stride"):
        L.count_windows(64, 64, [8], [1.0], stride=0)


@pytest.mark.parametrize("height, width", [(1, 1), (3, 5), (7, 4)])
def test_count_all_boxes_equals_brute_force(height, width):
    n = sum(1 for x1, x2, y1, y2 in product(range(width + 1), range(width + 1), range(height + 1), range(height + 1))
            if x1 < x2 and y1 < y2)
    assert L.count_all_boxes(height, width) == n
    assert L.count_all_boxes(128, 128) == 68_161_536


def test_best_window_iou_finds_an_exact_window():
    boxes = torch.tensor([[8.0, 16, 40, 48], [1, 1, 11, 11]])
    best = L.best_window_iou(boxes, L.sliding_windows(64, 64, [32], [1.0], stride=8))
    assert best[0] == 1.0 and 0 < best[1] < 0.2
    assert L.best_window_iou(boxes, torch.zeros(0, 4)).tolist() == [0.0, 0.0]


def test_multiply_adds_counts_convolutions_and_linear_layers():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2, groups=2),
                        nn.Flatten(), nn.Linear(4 * 7 * 7, 5))
    expected = 16 * 16 * 8 * 3 * 9 + 7 * 7 * 4 * (8 // 2) * 9 + 4 * 7 * 7 * 5
    assert L.multiply_adds(net, (3, 16, 16)) == expected
    net.train()
    L.multiply_adds(net, (3, 16, 16))
    assert net.training and not any(m._forward_hooks for m in net.modules())


# ------------------------------------------------------------------------------- figures
def test_figures_are_pure_and_the_window_widget_is_fast():
    fig = L.windows_figure(index=2, size=24, ratio=2.0, stride=4)
    assert isinstance(fig, Figure) and "positions" in fig.axes[0].get_title()
    settings = [dict(index=i, size=s, ratio=r, stride=st) for i, s, r, st in
                [(0, 32, 1.0, 8), (1, 16, 0.5, 4), (2, 48, 2.0, 2), (3, 96, 1.0, 16)]]
    time_figure(L.windows_figure, settings[:1])  # warm-up: fonts
    # <= 0.15 s on an idle 2-core CPU; the bound leaves room for a busy machine
    assert statistics.median(time_figure(L.windows_figure, settings)) <= 0.4
    widget = L.windows_widget()
    assert widget.figure_fn is L.windows_figure
    assert set(widget.controls) == {"index", "size", "ratio", "stride", "split"}

    sweep = {"budget": {"steps": 3, "eval_scenes": 4, "eval_split": "val"},
             "points": [{"box_loss": loss, "box_weight": w, "accuracy": 0.5, "mean_iou": 0.4}
                        for loss in ("l2", "smooth_l1") for w in (0.1, 1.0)]}
    assert len(L.sweep_figure(sweep).axes) == 2
    assert isinstance(L.recall_figure({0.5: {10: 0.5, 100: 0.9}}), Figure)
    image = torch.rand(3, 64, 64)
    target = {"boxes": torch.tensor([[10.0, 10, 30, 30]]), "labels": torch.tensor([2])}
    props = torch.tensor([[9.0, 9, 31, 30], [40, 40, 60, 60], [0, 0, 20, 50], [30, 5, 50, 20]])
    assert len(L.proposals_figure(image, props, target, counts=(2, 4)).axes) == 2
    model = recipes.get("rcnn").build()
    assert len(L.warp_figure(model, image, props, target, n=3).axes) == 4


# --------------------------------------------------------------------------------- sweep
def test_stored_sweep_has_every_point_and_its_budget():
    sweep = experiments.load_sweep()
    assert sweep["experiment"] == "localizer_sweep"
    assert {"date", "hardware", "torch", "budget", "points", "total_seconds"} <= set(sweep)
    assert {"steps", "batch_size", "seed", "eval_split", "eval_scenes"} <= set(sweep["budget"])
    assert sweep["budget"]["eval_split"] == "val"  # tuning never looks at the test split
    pairs = {(p["box_loss"], p["box_weight"]) for p in sweep["points"]}
    assert pairs == set(product(experiments.BOX_LOSSES, experiments.BOX_WEIGHTS))
    for p in sweep["points"]:
        assert 0 <= p["accuracy"] <= 1 and 0 <= p["mean_iou"] <= 1 and p["seconds"] > 0


def test_one_sweep_point_reruns_with_a_tiny_budget(tmp_path):
    point = experiments.localizer_point(10.0, "l2", steps=3, batch_size=4, n_eval=8)
    assert set(point) == set(experiments.load_sweep()["points"][0])
    assert point["box_weight"] == 10.0 and point["box_loss"] == "l2" and 0 <= point["mean_iou"] <= 1
    small = experiments.localizer_sweep([1.0], ["smooth_l1"], steps=2, batch_size=4, n_eval=4, log=None)
    path = experiments.save_sweep(small, tmp_path / "sweep.json")
    assert experiments.load_sweep(path)["points"][0]["box_weight"] == 1.0
    with pytest.raises(ValueError, match="box_loss"):
        experiments.localizer_point(1.0, "l1", steps=1)
    with pytest.raises(FileNotFoundError, match="localizer_sweep"):
        experiments.load_sweep(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- R-CNN data
def test_proposal_scenes_cache_proposals_and_flip_consistently():
    ds = R.ProposalScenes("train", 3, max_proposals=50, flip=False)
    image, target, props = ds[1]
    assert image.shape == (3, 128, 128) and set(target) == {"boxes", "labels"}
    assert props.shape[1] == 4 and 1 <= len(props) <= 50
    assert ds[1][2] is props  # computed once
    flipped = R.ProposalScenes("train", 3, max_proposals=50, flip=True)
    flipped._cache = ds._cache
    torch.manual_seed(0)
    seen = {bool(torch.equal(flipped[1][0], image)) for _ in range(12)}
    assert seen == {True, False}  # flips about half the time
    for _ in range(12):
        im, t, p = flipped[1]
        if not torch.equal(im, image):
            torch.testing.assert_close(im, image.flip(-1))
            mirrored = t["boxes"][:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + torch.tensor([128, 0, 128, 0])
            torch.testing.assert_close(mirrored,
                                       target["boxes"])
            assert torch.equal(torch.sort(128 - p[:, 2]).values, torch.sort(props[:, 0]).values)
    images, targets, proposals = R.rcnn_collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 128, 128) and len(targets) == len(proposals) == 2
    with pytest.raises(ValueError, match="at least one"):
        R.rcnn_collate([])


def test_rcnn_recipe_smoke_two_steps(tmp_path, monkeypatch):
    from cvcourse.train import main

    monkeypatch.setattr(R, "TRAIN_PROPOSALS", 30)  # a quicker selective search for the smoke run
    assert main(["rcnn", "--steps", "2", "--out", str(tmp_path), "--no-eval", "--no-progress"]) == 0
    rec = pretrained.record("rcnn", weights_dir=tmp_path)
    assert rec["steps"] == 2 and rec["bytes"] <= 5_000_000
    model = pretrained.load("rcnn", device="cpu", weights_dir=tmp_path)
    metrics = R.rcnn_metrics(model, split="val", n=2, max_proposals=20)
    assert set(metrics) == {"map", "map_50", "map_75"} and all(0 <= v <= 1 for v in metrics.values())
    assert set(recipes.get("rcnn").bar) <= set(metrics)


# ---------------------------------------------------------------------- shipped checkpoints
def _shipped(name):
    if name not in pretrained.available():
        pytest.skip(f"checkpoint {name!r} is not in cvcourse/weights/manifest.json yet "
                    f"(train it with `python -m cvcourse.train {name}`)")
    return pretrained.load(name, device="cpu")


@pytest.mark.slow
def test_shipped_localizer_meets_its_bar():
    metrics = recipes.get("localizer").evaluate(_shipped("localizer"), split="test")
    bar = recipes.get("localizer").bar
    assert all(metrics[k] >= v for k, v in bar.items()), (metrics, bar)


@pytest.mark.slow
def test_shipped_rcnn_meets_its_bar():
    model = _shipped("rcnn")
    recipe = recipes.get("rcnn")
    metrics = recipe.evaluate(model, split="test")
    assert all(metrics[k] >= v for k, v in recipe.bar.items()), (metrics, recipe.bar)
    assert pretrained.record("rcnn")["bytes"] <= 5_000_000
