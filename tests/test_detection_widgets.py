"""The Faster R-CNN chapter's figures and detection explorer: the post-processing steps they
show equal the model's own, the figures draw what they say, and a redraw is fast."""

import io
import statistics

import pytest
import torch
from matplotlib.figure import Figure

from cvcourse import pretrained, recipes
from cvcourse.data.scenes import held_out_scenes
from cvcourse.widgets import detection as wd
from cvcourse.widgets import time_figure

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scenes():
    return held_out_scenes("val", 3)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return recipes.get("faster_rcnn").build().eval()


@pytest.fixture(scope="module")
def shipped():
    if "faster_rcnn" not in pretrained.available():
        pytest.skip("checkpoint 'faster_rcnn' is not shipped yet (python -m cvcourse.train faster_rcnn)")
    return wd.held_out_raw_outputs("faster_rcnn", "test", 24)


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=50)
    return buf.getvalue()


def test_raw_outputs_have_the_documented_shapes(model, scenes):
    images, _ = scenes
    raw = wd.raw_outputs(model, images)
    assert len(raw) == len(images)
    for r in raw:
        k = len(r["proposals"])
        assert r["probs"].shape == (k, 4) and r["boxes"].shape == (k, 4, 4)
        assert torch.allclose(r["probs"].sum(1), torch.ones(k), atol=1e-5)
        assert r["boxes"].min() >= 0 and r["boxes"].max() <= 128  # clipped to the image


@pytest.mark.parametrize("settings", [(None, None), (0.3, 0.3)])
def test_the_last_step_equals_the_models_own_detections(model, scenes, settings):
    images, _ = scenes
    score, iou = settings
    if score is not None:  # the model's heads with other thresholds must agree as well
        model.roi_heads.score_thresh, model.roi_heads.nms_thresh = score, iou
    try:
        raw, dets = wd.raw_outputs(model, images), model(images)
        heads = model.roi_heads
        for r, d in zip(raw, dets):
            kept = wd.postprocess_steps(r, heads.score_thresh, heads.nms_thresh)["after NMS"]
            for key in ("boxes", "scores", "labels"):
                assert torch.equal(kept[key], d[key]), key
    finally:
        model.roi_heads.score_thresh, model.roi_heads.nms_thresh = 0.05, 0.5


def test_each_step_keeps_a_subset_and_thresholds_do_what_they_say(model, scenes):
    raw = wd.raw_outputs(model, scenes[0][:1])[0]
    counts = []
    for score in (0.0, 0.2, 0.26, 0.5):
        steps = wd.postprocess_steps(raw, score, 0.5)
        n = [len(steps[s]["boxes"]) for s in wd.STEPS]
        assert n[0] == 3 * len(raw["probs"]) and n[0] >= n[1] >= n[2]
        assert (steps["above score threshold"]["scores"] > score).all()
        assert set(steps["after NMS"]["labels"].tolist()) <= {1, 2, 3}
        counts.append(n[1])
    assert counts == sorted(counts, reverse=True)
    assert len(wd.postprocess_steps(raw, 0.0, 1.0)["after NMS"]["boxes"]) == \
        min(100, len(wd.postprocess_steps(raw, 0.0, 1.0)["above score threshold"]["boxes"]))  # IoU 1 drops none


def test_match_detections_counts_true_positives():
    target = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 2])}
    det = {"boxes": torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]]),
           "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]), "labels": torch.tensor([1, 1, 3, 2])}
    # the duplicate (second) and the wrong class (third) are false positives
    assert wd.match_detections(det, target).tolist() == [True, False, False, False]


def test_bad_inputs_are_clear_errors(model, scenes):
    with pytest.raises(ValueError, match="FasterRCNN"):
        wd.raw_outputs(torch.nn.Linear(2, 2), scenes[0])
    with pytest.raises(ValueError, match="images"):
        wd.raw_outputs(model, scenes[0][0])
    raw = wd.raw_outputs(model, scenes[0][:1])[0]
    with pytest.raises(ValueError, match="score_thresh"):
        wd.postprocess_steps(raw, 1.5)
    with pytest.raises(ValueError, match="nms_thresh"):
        wd.postprocess_steps(raw, 0.5, -0.1)
    with pytest.raises(ValueError, match="index"):
        wd.detection_steps_figure(index=99, n=24)
    with pytest.raises(ValueError, match="indices"):
        wd.detections_figure(scenes[0], scenes[1], [{}] * 3, indices=[5])


def test_detections_figure_draws_one_panel_per_scene(model, scenes):
    images, targets = scenes
    with torch.no_grad():
        dets = model(images)
    fig = wd.detections_figure(images, targets, dets, indices=[0, 1, 2], score_thresh=0.2)
    assert isinstance(fig, Figure) and len(fig.axes) == 3 and _png(fig)[:4] == b"\x89PNG"


def test_steps_figure_draws_what_each_step_keeps(shipped):
    fig = wd.detection_steps_figure(index=2, score_thresh=0.5, nms_thresh=0.5)
    assert isinstance(fig, Figure) and _png(fig)[:4] == b"\x89PNG"
    steps = wd.postprocess_steps(shipped["raw"][2], 0.5, 0.5)
    kept = steps[wd.STEPS[2]]
    assert len(kept["boxes"]) >= 1
    # one Axes, one LineCollection per group: candidates, above threshold, ground truth, kept
    drawn = [len(c.get_segments()) for c in fig.axes[0].collections]
    expected = [len(steps[wd.STEPS[0]]["boxes"]), len(steps[wd.STEPS[1]]["boxes"]),
                len(shipped["targets"][2]["boxes"]), len(kept["boxes"])]
    assert drawn == expected
    # the kept boxes sit in the third panel: shifted by two image widths plus two gaps
    first = fig.axes[0].collections[-1].get_segments()[0]
    x1 = float(kept["boxes"][0, 0])
    assert first[0][0] - (x1 - 0.5) == pytest.approx(2 * (128 + 128 // 12))
    tags = [t for t in fig.axes[0].texts if t.get_text().split()[0] in ("circle", "square", "triangle")]
    assert len(tags) == min(wd.MAX_LABELS, int((kept["scores"] >= wd.LABEL_SCORE).sum()))


def test_shipped_detector_finds_the_objects_at_its_default_thresholds(shipped):
    tp = total = false = 0
    for raw, target in zip(shipped["raw"], shipped["targets"]):
        kept = wd.postprocess_steps(raw, 0.5, 0.5)["after NMS"]
        hits = wd.match_detections(kept, target)
        tp, false, total = tp + int(hits.sum()), false + int((~hits).sum()), total + len(target["boxes"])
    assert tp / total >= 0.85 and false / max(tp + false, 1) <= 0.2, (tp, false, total)


def test_explorer_widget_redraws_quickly(shipped):
    widget = wd.detection_explorer()
    assert set(widget.controls) >= {"index", "score_thresh", "nms_thresh"}
    settings = [{"index": i, "score_thresh": s, "nms_thresh": t}
                for i in range(4) for s, t in ((0.05, 0.5), (0.5, 0.3), (0.8, 1.0))]
    time_figure(wd.detection_steps_figure, settings[:1])  # warm-up: fonts
    # <= 0.15 s on an idle 2-core CPU (the benchmark reports it); room here for a busy machine
    assert statistics.median(time_figure(wd.detection_steps_figure, settings)) <= 0.4
