"""Evaluation chapter: cvcourse.metrics.ap by hand, vs VOC's code and pycocotools; its
figures and widget; the AP exercise checker."""
import statistics

import numpy as np
import pytest
import torch
from test_metrics import random_detection_case

from cvcourse import exercises, pretrained
from cvcourse.metrics import (
    average_precision,
    average_precision_per_class,
    match_detections,
    mean_average_precision,
    precision_recall,
)
from cvcourse.metrics.ap import interpolated_precision, precision_at, recall_points
from cvcourse.metrics.coco_reference import STAT_KEYS, coco_eval
from cvcourse.ops import box_iou
from cvcourse.widgets import evaluation as we
from cvcourse.widgets import time_figure


# ------------------------------------------------------------------ VOC's reference code
def voc_ap(rec, prec, use_07_metric=False):
    """py-faster-rcnn's ``voc_eval.voc_ap`` (the VOC devkit's AP, ported to Python), verbatim
    in substance: 11-point for VOC2007, else the area under the interpolated curve."""
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


# ------------------------------------------------------------------------ by hand
def test_precision_recall_and_ap_of_a_hand_computed_ranking():
    # 5 detections (scores given out of order), 4 objects: ranks TP, FP, TP, TP, FP
    scores = torch.tensor([0.6, 0.9, 0.3, 0.8, 0.7])
    tp = torch.tensor([True, True, False, False, True])
    precision, recall = precision_recall(scores, tp, n_gt=4)
    assert torch.allclose(precision, torch.tensor([1, 1 / 2, 2 / 3, 3 / 4, 3 / 5], dtype=torch.float64))
    assert torch.allclose(recall, torch.tensor([1 / 4, 1 / 4, 2 / 4, 3 / 4, 3 / 4], dtype=torch.float64))
    # interpolated precision: 1 up to recall 0.25, then 3/4 up to recall 0.75, nothing after
    assert average_precision(recall, precision, "voc_all") == pytest.approx(0.25 * 1 + 0.5 * 0.75)
    # 11 points: recall 0, 0.1, 0.2 -> 1; 0.3 .. 0.7 -> 3/4; 0.8 .. 1 -> 0
    assert average_precision(recall, precision, "voc07") == pytest.approx((3 * 1 + 5 * 0.75) / 11)
    # 101 points: 0 .. 0.25 -> 1 (26 points); 0.26 .. 0.75 -> 3/4 (50 points)
    assert average_precision(recall, precision, "coco101") == pytest.approx((26 + 50 * 0.75) / 101)


def test_perfect_and_empty_curves():
    precision, recall = precision_recall(torch.tensor([0.9, 0.5]), torch.tensor([True, True]), 2)
    for method in ("voc07", "voc_all", "coco101"):
        assert average_precision(recall, precision, method) == pytest.approx(1.0)
        assert average_precision(torch.zeros(0), torch.zeros(0), method) == 0.0


def test_ap_equals_the_voc_devkit_code_on_random_curves():
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for case in range(200):
        d = int(torch.randint(1, 40, (1,), generator=g))
        tp = torch.rand(d, generator=g) < 0.6
        n_gt = int(tp.sum()) + case % 4 + (1 if not tp.any() else 0)
        scores = torch.rand(d, generator=g)
        precision, recall = precision_recall(scores, tp, n_gt)
        for use_07, method in ((True, "voc07"), (False, "voc_all")):
            ref = voc_ap(recall.numpy(), precision.numpy(), use_07)
            worst = max(worst, abs(average_precision(recall, precision, method) - ref))
    assert worst < 1e-12, worst


def test_exact_voc07_recall_points():
    # 3 of 10 objects found: recall 0.3 in floats is below VOC's point 0.1 * 3 (0.30000000000000004)
    precision, recall = precision_recall(torch.tensor([0.9, 0.8, 0.7]), torch.ones(3, dtype=torch.bool), 10)
    ours = average_precision(recall, precision, "voc07")
    assert ours == pytest.approx(voc_ap(recall.numpy(), precision.numpy(), True))
    assert ours == pytest.approx(3 / 11)                     # points 0, 0.1, 0.2 only


def test_the_steps_of_average_precision():
    # the hand-computed ranking above: precision 1, 1/2, 2/3, 3/4, 3/5 at recall 1/4 .. 3/4
    precision = torch.tensor([1, 1 / 2, 2 / 3, 3 / 4, 3 / 5], dtype=torch.float64)
    recall = torch.tensor([1 / 4, 1 / 4, 2 / 4, 3 / 4, 3 / 4], dtype=torch.float64)
    envelope = interpolated_precision(precision)
    assert envelope.tolist() == pytest.approx([1, 3 / 4, 3 / 4, 3 / 4, 3 / 5])
    assert recall_points("voc07").tolist() == np.arange(0.0, 1.1, 0.1).tolist()   # 0.1 * 3, not 0.3
    assert len(recall_points("coco101")) == 101
    at = precision_at(recall, envelope, torch.tensor([0.0, 0.25, 0.26, 0.75, 0.76], dtype=torch.float64))
    assert at.tolist() == pytest.approx([1, 1, 3 / 4, 3 / 4, 0])          # 0: recall never reached
    assert float(precision_at(recall, envelope, recall_points("voc07")).mean()) == \
        pytest.approx(average_precision(recall, precision, "voc07"))
    with pytest.raises(ValueError, match="method"):
        recall_points("voc_all")


def test_matching_highest_score_first_and_duplicates_are_false_positives():
    gt = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10]]), "labels": torch.tensor([1, 1])}
    pred = {"boxes": torch.tensor([[0.0, 0, 10, 10],       # exact on object 0
                                   [1.0, 0, 11, 10],       # duplicate of object 0 (IoU 0.82)
                                   [20, 0, 30, 10],        # exact on object 1, but labelled 2
                                   [50, 50, 60, 60]]),     # nowhere
            "scores": torch.tensor([0.5, 0.9, 0.8, 0.7]), "labels": torch.tensor([1, 1, 2, 1])}
    m = match_detections([pred], [gt], label=1, iou_threshold=0.5)
    # order by score: 0.9 (duplicate box, takes object 0 first), 0.7 (nowhere), 0.5 (exact, too late)
    assert m["scores"].tolist() == pytest.approx([0.9, 0.7, 0.5])
    assert m["tp"].tolist() == [True, False, False] and m["n_gt"] == 2
    strict = match_detections([pred], [gt], label=1, iou_threshold=[0.5, 0.9])
    assert strict["tp"].tolist() == [[True, False, False], [False, False, True]]


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="method"):
        average_precision(torch.ones(2), torch.ones(2), "voc2012")
    with pytest.raises(ValueError, match="non-decreasing"):
        average_precision(torch.tensor([0.5, 0.2]), torch.ones(2))
    with pytest.raises(ValueError, match="n_gt"):
        precision_recall(torch.ones(2), torch.ones(2, dtype=torch.bool), 0)
    with pytest.raises(ValueError, match="iou_threshold"):
        match_detections([], [], 1, 1.5)
    with pytest.raises(ValueError, match="one entry per image"):
        match_detections([{}], [], 1)


# -------------------------------------------------------------------- vs pycocotools
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_step_by_step_ap_equals_pycocotools_on_random_cases(seed):
    preds, targets = random_detection_case(seed)
    ev = coco_eval(preds, targets, image_size=512)
    labels = sorted({int(v) for t in targets for v in t["labels"]})
    categories = ev.params.catIds
    ours = average_precision_per_class(preds, targets, 0.5, "coco101")
    for c in labels:
        ref = ev.eval["precision"][0, :, categories.index(c), 0, 2]       # [101] at IoU 0.5
        assert ours[c] == pytest.approx(float(ref.mean()), abs=1e-9), c
    # COCO mAP = mean over ten thresholds and the classes
    per_threshold = [statistics.mean(average_precision_per_class(preds, targets, float(t)).values())
                     for t in we.IOU_GRID]
    assert statistics.mean(per_threshold) == pytest.approx(float(ev.stats[0]), abs=1e-9)


@pytest.fixture(scope="module")
def held_out():
    if "faster_rcnn" not in pretrained.available():
        pytest.skip("the faster_rcnn checkpoint is not installed")
    return we.held_out_matches("faster_rcnn", "test", 200)


def test_held_out_predictions_equal_pycocotools(held_out, one_thread):
    dets, targets = held_out["detections"], held_out["targets"]
    ev = coco_eval(dets, targets)
    ours = mean_average_precision(dets, targets)
    assert max(abs(ours[k] - float(v)) for k, v in zip(STAT_KEYS, ev.stats)) < 1e-9
    ap = held_out["ap"]["coco101"]                                       # [10, classes]
    assert float(ap.mean()) == pytest.approx(float(ev.stats[0]), abs=1e-9)
    assert float(ap[0].mean()) == pytest.approx(float(ev.stats[1]), abs=1e-9)
    assert float(ap[5].mean()) == pytest.approx(float(ev.stats[2]), abs=1e-9)
    assert ev.stats[0] >= 0.6 and ev.stats[1] >= 0.9                     # the shipped detector's bars


# ----------------------------------------------------------------- figures and widget
@pytest.mark.parametrize("iou", [0.3, 0.5, 0.75, 0.9])
def test_iou_pairs_have_the_iou_they_promise(iou):
    for name, pair in we.iou_pairs(iou).items():
        assert float(box_iou(pair[:1], pair[1:])) == pytest.approx(iou, abs=1e-12), name
    with pytest.raises(ValueError, match="iou"):
        we.iou_pairs(0.0)


def test_iou_pairs_figure_has_three_panels_per_threshold():
    fig = we.iou_pairs_figure((0.5, 0.75))
    titles = [ax.get_title() for ax in fig.axes]
    assert len(titles) == 6 and sum("IoU = 0.50" in t for t in titles) == 3


def test_pr_curve_figure_and_widget(held_out):
    fig = we.pr_curve_figure(0.75)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(fig.axes) == 2 and any(t.startswith("IoU ≥ 0.75") for t in texts), texts
    # one AP line per class, with the three interpolations of held_out_matches' table
    ap = held_out["ap"]
    for k in range(len(held_out["matches"])):
        line = " / ".join(f"{ap[m][5, k]:.3f}" for m in ("voc07", "voc_all", "coco101"))
        assert any(t.endswith(line) for t in texts), (line, texts)
    with pytest.raises(ValueError, match="iou_threshold"):
        we.pr_curve_figure(0.52)
    widget = we.pr_curve_widget()
    assert set(widget.controls) >= {"iou_threshold"}
    settings = [{"iou_threshold": float(t)} for t in we.IOU_GRID]
    time_figure(we.pr_curve_figure, settings[:1])                        # warm-up: fonts
    # <= 0.15 s on an idle 2-core CPU (the benchmark reports it); room here for a busy machine
    assert statistics.median(time_figure(we.pr_curve_figure, settings)) <= 0.4


# ------------------------------------------------------------------------- exercise
def test_exercise_checker_accepts_the_solution_and_rejects_wrong_answers():
    def solution(scores, is_tp, n_gt):
        precision, recall = precision_recall(scores, is_tp, n_gt)
        return average_precision(recall, precision, "voc_all")

    def not_interpolated(scores, is_tp, n_gt):               # area under the raw curve
        precision, recall = precision_recall(scores, is_tp, n_gt)
        steps = torch.diff(recall, prepend=torch.zeros(1, dtype=recall.dtype))
        return float((steps * precision).sum())

    def unsorted(scores, is_tp, n_gt):                       # forgets to sort by score
        return solution(torch.arange(len(scores), 0, -1).double(), is_tp, n_gt)

    def coco_points(scores, is_tp, n_gt):                    # the wrong interpolation
        precision, recall = precision_recall(scores, is_tp, n_gt)
        return average_precision(recall, precision, "coco101")

    def stub(scores, is_tp, n_gt):
        raise NotImplementedError

    assert exercises.check_average_precision(solution)
    for wrong in (not_interpolated, unsorted, coco_points, stub, lambda s, t, n: "0.5"):
        assert not exercises.check_average_precision(wrong), wrong
