"""The trade-offs chapter's parts: the one-run comparison, the Pareto front, the table and figure,
the backbone sweep and the stored GPU timings."""

import json

import pytest
import torch

from cvcourse import exercises, experiments, recipes, tradeoffs
from cvcourse.data.scenes import held_out_scenes
from cvcourse.models.yolo import YOLO
from cvcourse.tradeoffs import compare_detectors, markdown_table, pareto_front, tradeoff_figure


class Oracle(torch.nn.Module):
    """Returns each known image's ground truth as its detections (score 1): mAP exactly 1."""

    def __init__(self, images, targets):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.images, self.targets = images, targets

    def forward(self, images):
        out = []
        for image in images:
            t = next(t for x, t in zip(self.images, self.targets) if torch.equal(x, image))
            out.append({"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["boxes"]))})
        return out


def test_compare_detectors_scores_and_times_each_model_on_the_same_scenes(one_thread):
    images, targets = held_out_scenes("val", 6)
    torch.manual_seed(0)
    rows = compare_detectors({"yolo": YOLO(width=4), "oracle": Oracle(images, targets)}, images, targets,
                             batch_size=6, repeats=2)
    assert [r["name"] for r in rows] == ["yolo", "oracle"]
    oracle = rows[1]
    assert oracle["map_50"] == pytest.approx(1.0) and oracle["map"] == pytest.approx(1.0)
    assert rows[0]["map_50"] < 0.2                       # untrained
    assert all(r["images_per_s"] > 0 and r["device"] == "cpu" for r in rows)


def test_compare_detectors_bad_input():
    images, targets = held_out_scenes("val", 2)
    with pytest.raises(ValueError, match="non-empty mapping"):
        compare_detectors({}, images, targets)
    with pytest.raises(ValueError, match=r"Tensor\[N, 3, H, W\]"):
        compare_detectors({"m": YOLO(width=4)}, images[0], targets)
    with pytest.raises(ValueError, match="one dict per image"):
        compare_detectors({"m": YOLO(width=4)}, images, targets[:1])
    with pytest.raises(ValueError, match="repeats"):
        compare_detectors({"m": YOLO(width=4)}, images, targets, repeats=0)


def _pts(*triples):
    return [{"name": n, "images_per_s": s, "map": m} for n, s, m in triples]


def test_pareto_front_hand_made():
    assert pareto_front(_pts(("a", 10, 0.5), ("b", 20, 0.4), ("c", 5, 0.6))) == ["b", "a", "c"]
    assert pareto_front(_pts(("a", 10, 0.5), ("b", 20, 0.6))) == ["b"]
    assert sorted(pareto_front(_pts(("a", 10, 0.5), ("b", 10, 0.5)))) == ["a", "b"]   # equal: neither beats
    assert pareto_front(_pts(("a", 10, 0.5), ("b", 10, 0.6), ("c", 12, 0.5))) == ["c", "b"]
    assert pareto_front(_pts(("a", 1, 0.1), ("b", 2, 0.2), ("c", 3, 0.3))) == ["c"]
    with pytest.raises(ValueError, match="needs keys"):
        pareto_front([{"name": "a", "map": 0.5}])


def test_pareto_front_checker_passes_the_reference_and_fails_a_wrong_answer(capsys):
    assert exercises.check_pareto_front(lambda pts: pareto_front(pts))
    best = lambda pts: [max(pts, key=lambda p: p["map"])["name"]]            # noqa: E731
    assert not exercises.check_pareto_front(best)
    assert "FAIL: pareto_front" in capsys.readouterr().out

    def unfinished(points):
        raise NotImplementedError
    assert not exercises.check_pareto_front(unfinished)


def test_markdown_table_and_figure():
    rows = [{"name": "a", "map": 0.51234, "images_per_s": 1234.5, "steps": 3000},
            {"name": "b", "map": 0.6, "images_per_s": 12.25, "steps": 800}]
    table = markdown_table(rows, {"name": "detector", "map": "COCO mAP", "images_per_s": "images/s",
                                  "steps": "steps"})
    lines = table.splitlines()
    assert lines[0] == "| detector | COCO mAP | images/s | steps |"
    assert lines[2] == "| a | 0.512 | 1,234 | 3,000 |" and lines[3] == "| b | 0.600 | 12.250 | 800 |"
    assert "| — |" in markdown_table([{"x": float("nan")}], {"x": "x"})
    with pytest.raises(ValueError, match="not keys"):
        markdown_table(rows, {"nope": "x"})
    with pytest.raises(ValueError, match="empty"):
        markdown_table([], {"name": "x"})
    fig = tradeoff_figure(rows, extra=[dict(rows[0], images_per_s=9999.0)], extra_label="GPU")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and len(ax.collections) == 4     # 2 points, 1 extra, 1 legend proxy
    assert [t.get_text() for t in ax.texts] == ["a", "b", "a"]
    with pytest.raises(ValueError, match="at least one"):
        tradeoff_figure([])


def test_stored_gpu_timings_cover_every_compared_detector():
    gpu = tradeoffs.gpu_measurements()
    assert "CUDA" in gpu["hardware"]
    for name in tradeoffs.DETECTORS:
        row = gpu["rows"][name]
        assert row["inference_images_per_s"] > 0 and row["train_step_ms"] > 0
    with pytest.raises(FileNotFoundError, match="benchmarks/gpu.py"):
        tradeoffs.gpu_measurements("/nonexistent/x.json")


def test_backbone_point_runs_and_reports_size(one_thread):
    r = experiments.backbone_point(4, neck_depth=1, steps=2, n_eval=3)
    assert set(r) >= {"width", "neck_depth", "params", "multiply_adds", "map", "map_50", "map_75"}
    small = YOLO(width=4, neck_depth=1)
    assert r["params"] == sum(p.numel() for p in small.parameters())
    # multiply-adds grow with width (about 4x for twice the width in the 3x3 layers)
    assert experiments.multiply_adds(YOLO(width=8), torch.zeros(1, 3, 128, 128)) > \
        3 * experiments.multiply_adds(YOLO(width=4), torch.zeros(1, 3, 128, 128))
    with pytest.raises(ValueError, match="neck_depth"):
        experiments.backbone_point(4, neck_depth=-1, steps=1)
    with pytest.raises(ValueError, match="width"):
        experiments.backbone_point(0, steps=1)
    with pytest.raises(ValueError, match="neck_depth"):
        YOLO(neck_depth=-1)


def test_stored_backbone_sweep_is_consistent():
    sweep = experiments.load_sweep(experiments.BACKBONE_SWEEP_FILE)
    seeds = sweep["budget"]["seeds"]
    assert len(seeds) >= 3 and len(set(seeds)) == len(seeds)     # the chapter's mean and spread
    runs = [(p["width"], p["neck_depth"], p["seed"]) for p in sweep["points"]]
    assert sorted(runs) == sorted((w, d, s) for w, d in experiments.BACKBONE_POINTS for s in seeds)
    for p in sweep["points"]:
        assert p["params"] == sum(q.numel() for q in YOLO(width=p["width"], neck_depth=p["neck_depth"]).parameters())
    assert json.loads(json.dumps(sweep)) == sweep


def test_sweeps_store_one_point_per_seed_and_write_as_they_go(one_thread, tmp_path):
    out = tmp_path / "confidence.json"
    r = experiments.confidence_sweep(steps=2, n_eval=2, seeds=(0, 1), log=None, out=out)
    assert [(p["seed"], p["confidence_target"]) for p in r["points"]] == \
        [(0, "one"), (0, "iou"), (1, "one"), (1, "iou")]
    assert experiments.load_sweep(out)["points"] == r["points"]          # written after each point
    assert r["budget"]["seeds"] == [0, 1] and r["experiment"] == "confidence_sweep"
    losses = [p["final_loss"] for p in r["points"]]
    assert len(set(losses)) == 4          # the target and the seed (weights, scenes) both matter
    sweep = experiments.backbone_sweep([(4, 1)], steps=2, n_eval=2, seeds=(1,), log=None)
    assert [(p["width"], p["seed"]) for p in sweep["points"]] == [(4, 1)]
    with pytest.raises(ValueError, match="targets"):
        experiments.confidence_sweep(["giou"], steps=1, log=None)


class _OracleRetinaNet(torch.nn.Module):
    """A RetinaNet's anchors and strides, detecting each known image's objects shifted by
    `shift` pixels (score 1)."""

    def __init__(self, images, targets, shift=0.0):
        super().__init__()
        from cvcourse.models.retinanet import RetinaNet

        net = RetinaNet(width=4, fpn_channels=16)
        self.backbone, self.anchor_generator = net.backbone, net.anchor_generator
        self.images, self.targets, self.shift = images, targets, shift

    def forward(self, images):
        out = []
        for im in images:
            (i,) = [k for k in range(len(self.images)) if torch.equal(self.images[k], im)]
            t = self.targets[i]
            out.append({"boxes": t["boxes"] + self.shift, "labels": t["labels"],
                        "scores": torch.ones(len(t["boxes"]))})
        return out


def test_recall_by_level_counts_found_objects_per_level():
    from cvcourse.models.retinanet import pyramid_levels

    images, targets = held_out_scenes("val", 12)
    targets = list(targets)
    exact = experiments.recall_by_level(_OracleRetinaNet(images, targets), images, targets)
    boxes = torch.cat([t["boxes"] for t in targets])
    levels = pyramid_levels(_OracleRetinaNet(images, targets), boxes)
    assert [r["objects"] for r in exact] == [int((levels == k).sum()) for k in range(3)]
    assert sum(r["objects"] for r in exact) == len(boxes)
    for r in exact:
        if r["objects"]:
            assert r["recall_50"] == r["recall_75"] == 1.0
    # shifted by 3 px the small objects drop below IoU 0.75 first; none is found at 0.5 by
    # a detection 200 px away
    shifted = experiments.recall_by_level(_OracleRetinaNet(images, targets, 3.0), images, targets)
    assert shifted[0]["recall_75"] < shifted[0]["recall_50"] and shifted[0]["recall_75"] < shifted[1]["recall_75"]
    far = experiments.recall_by_level(_OracleRetinaNet(images, targets, 200.0), images, targets)
    assert all(r["recall_50"] == 0 for r in far if r["objects"])


def test_retinanet_sweeps_store_one_point_per_seed_and_setting(one_thread, tmp_path):
    out = tmp_path / "fpn.json"
    r = experiments.fpn_sweep(steps=1, n_eval=3, seeds=(0,), log=None, out=out)
    assert [(p["top_down"], p["loss"], p["seed"]) for p in r["points"]] == [(True, "focal", 0), (False, "focal", 0)]
    assert experiments.load_sweep(out)["points"] == r["points"]
    assert r["points"][0]["final_loss"] != r["points"][1]["final_loss"]
    focal = experiments.focal_sweep(steps=1, n_eval=2, seeds=(1,), log=None)
    assert [(p["loss"], p["seed"]) for p in focal["points"]] == [("focal", 1), ("bce", 1)]
    assert focal["budget"]["eval_split"] == "test" and focal["experiment"] == "focal_sweep"
    with pytest.raises(ValueError, match="loss"):
        experiments.retinanet_point(loss="mse", steps=1)
    with pytest.raises(ValueError, match="top_down"):
        experiments.retinanet_point(top_down=1, steps=1)


def test_stored_confidence_and_fpn_sweeps_are_consistent():
    conf = experiments.load_sweep(experiments.CONFIDENCE_SWEEP_FILE)
    backbone = experiments.load_sweep(experiments.BACKBONE_SWEEP_FILE)
    seeds = conf["budget"]["seeds"]
    assert sorted((p["confidence_target"], p["seed"]) for p in conf["points"]) == \
        sorted((t, s) for t in ("one", "iou") for s in seeds)
    assert conf["budget"]["steps"] == backbone["budget"]["steps"]        # the same budget
    assert conf["budget"]["eval_scenes"] == backbone["budget"]["eval_scenes"]
    for p in conf["points"]:
        assert p["params"] == sum(q.numel() for q in YOLO(width=16).parameters())
        assert 0 <= p["map_75"] <= 1 and p["map"] <= p["map_50"]
    # the two sweeps trained (width 16, neck 2, target 1) separately, seed by seed: same code and
    # seed, same scores (the YOLO chapter says so)
    again = {p["seed"]: p for p in backbone["points"] if (p["width"], p["neck_depth"]) == (16, 2)}
    for p in conf["points"]:
        if p["confidence_target"] == "one":
            assert {k: p[k] for k in ("map", "map_50", "map_75", "final_loss")} == \
                {k: again[p["seed"]][k] for k in ("map", "map_50", "map_75", "final_loss")}
    fpn = experiments.load_sweep(experiments.FPN_SWEEP_FILE)
    assert sorted((p["top_down"], p["seed"]) for p in fpn["points"]) == \
        sorted((t, s) for t in (True, False) for s in fpn["budget"]["seeds"])
    _, targets = held_out_scenes(fpn["budget"]["eval_split"], fpn["budget"]["eval_scenes"])
    n_objects = sum(len(t["boxes"]) for t in targets)
    for p in fpn["points"]:
        assert sum(lv["objects"] for lv in p["levels"]) == n_objects
        assert all(lv["recall_75"] <= lv["recall_50"] for lv in p["levels"])
    assert json.loads(json.dumps(fpn)) == fpn


def test_merge_sweeps_joins_seeds_of_one_budget_only():
    def record(seeds, steps=5):
        return {"experiment": "fpn_sweep", "date": "d", "hardware": "h", "torch": "t", "total_seconds": 1.5,
                "budget": {"steps": steps, "seeds": seeds}, "points": [{"seed": s} for s in seeds]}

    merged = experiments.merge_sweeps([record([0]), record([1, 2])])
    assert merged["budget"] == {"steps": 5, "seeds": [0, 1, 2]} and merged["total_seconds"] == 3.0
    assert [p["seed"] for p in merged["points"]] == [0, 1, 2]
    assert [run["seeds"] for run in merged["runs"]] == [[0], [1, 2]]
    assert experiments.merge_sweeps([merged, record([3])])["budget"]["seeds"] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="one budget"):
        experiments.merge_sweeps([record([0]), record([1], steps=6)])
    with pytest.raises(ValueError, match="repeat a seed"):
        experiments.merge_sweeps([record([0]), record([0])])


def test_stored_focal_sweep_has_both_losses_for_every_seed():
    focal = experiments.load_sweep(experiments.FOCAL_SWEEP_FILE)
    assert sorted((p["loss"], p["seed"]) for p in focal["points"]) == \
        sorted((loss, s) for loss in ("focal", "bce") for s in focal["budget"]["seeds"])
    assert all(p["top_down"] and p["map"] <= p["map_50"] for p in focal["points"])
    assert focal["budget"]["steps"] == recipes.get("retinanet").steps       # the shipped budget
    assert len(focal["budget"]["seeds"]) >= 3
