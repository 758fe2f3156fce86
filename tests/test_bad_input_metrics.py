"""Bad input to the metrics: a ValueError/TypeError naming the argument, never a silent number."""

import pytest
import torch

from cvcourse.metrics import (
    boundary_f1,
    confusion_matrix,
    mean_average_precision,
    mean_iou,
    pixel_accuracy,
    segmentation_scores,
)

NAN, INF = float("nan"), float("inf")


def _pred(**kw):
    d = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}
    d.update(kw)
    return d


def _gt(**kw):
    d = {"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}
    d.update(kw)
    return d


def test_good_input_still_scores_one():
    assert mean_average_precision([_pred()], [_gt()])["map"] == pytest.approx(1.0)


MAP_CASES = [  # (preds, targets, kwargs, message)
    ([_pred(scores=torch.tensor([NAN]))], [_gt()], {}, r"preds\[0\]\['scores'\] must be finite"),
    ([_pred(scores=torch.tensor([INF]))], [_gt()], {}, r"preds\[0\]\['scores'\] must be finite"),
    ([_pred(scores=torch.tensor([True]))], [_gt()], {}, r"preds\[0\]\['scores'\] must be real"),
    ([_pred(boxes=torch.tensor([[0.0, 0, INF, 10]]))], [_gt()], {}, r"preds\[0\]\['boxes'\] must be finite"),
    ([_pred(boxes=torch.tensor([[NAN, 0, 5, 10]]))], [_gt()], {}, r"preds\[0\]\['boxes'\] must be finite"),
    ([_pred()], [_gt(boxes=torch.tensor([[0.0, 0, 10, NAN]]))], {}, r"targets\[0\]\['boxes'\] must be finite"),
    ([_pred()], [_gt(boxes=torch.tensor([[0.0, 0, 10, -INF]]))], {}, r"targets\[0\]\['boxes'\] must be finite"),
    ([_pred(boxes=torch.tensor([[0.0, 0, 10, 10, 1]]))], [_gt()], {}, r"\['boxes'\] must be \[N, 4\]"),
    ([_pred(boxes=torch.tensor([[10.0, 0, 0, 10]]))], [_gt()], {}, "x2 >= x1"),
    ([_pred(boxes=torch.tensor([0.0, 0, 10, 10]))], [_gt()], {}, r"\['boxes'\] must be \[N, 4\]"),
    ([_pred(scores=torch.tensor([0.9, 0.8]))], [_gt()], {}, r"\['scores'\] must be \[N\]"),
    ([_pred(labels=torch.tensor([1.0]))], [_gt()], {}, r"\['labels'\] must be an int"),
    ([_pred(labels=torch.tensor([True]))], [_gt()], {}, r"\['labels'\] must be an int"),
    ([_pred(labels=torch.tensor([-1]))], [_gt()], {}, r"\['labels'\] must be class indices >= 0"),
    ([_pred()], [_gt(iscrowd=torch.tensor([2]))], {}, r"targets\[0\]\['iscrowd'\] must hold 0/1"),
    ([_pred()], [_gt(iscrowd=torch.tensor([0, 1]))], {}, r"\['iscrowd'\] must be \[N\]"),
    ([_pred()], [{"labels": torch.tensor([1])}], {}, "missing key 'boxes'"),
    ([_pred(boxes="abc")], [_gt()], {}, r"\['boxes'\] must be a Tensor"),
    ([_pred()], [_gt()], {"iou_thresholds": [NAN]}, "iou_thresholds must be"),
    ([_pred()], [_gt()], {"iou_thresholds": [1.5]}, "iou_thresholds must be"),
    ([_pred()], [_gt()], {"iou_thresholds": [-0.1]}, "iou_thresholds must be"),
    ([_pred()], [_gt()], {"iou_thresholds": []}, "iou_thresholds must be"),
    ([_pred()], [_gt()], {"max_detections": 0}, "max_detections must be"),
    ([_pred()], [_gt()], {"max_detections": True}, "max_detections must be"),
    ([_pred()], [_gt()], {"max_detections": 2.5}, "max_detections must be"),
    ([_pred()], [_gt()], {"iou_type": "mask"}, "iou_type must be"),
    ([_pred()], [_gt()], {"class_metrics": "yes"}, "class_metrics must be"),
    ([_pred()], [], {}, "one entry per image"),
    (_pred(), [_gt()], {}, "preds must be a list"),
    ([_pred()], [[1, 2]], {}, r"targets\[0\] must be a dict"),
    ([{"masks": torch.full((1, 4, 4), NAN), "scores": torch.tensor([0.5]), "labels": torch.tensor([1])}],
     [{"masks": torch.ones(1, 4, 4, dtype=torch.bool), "labels": torch.tensor([1])}], {"iou_type": "segm"},
     r"preds\[0\]\['masks'\] must be finite"),
    ([{"masks": torch.ones(1, 4, 4), "scores": torch.tensor([0.5]), "labels": torch.tensor([1])}],
     [{"masks": torch.ones(1, 5, 4, dtype=torch.bool), "labels": torch.tensor([1])}], {"iou_type": "segm"},
     "are \\(4, 4\\) but"),
]


@pytest.mark.parametrize("preds, targets, kwargs, match", MAP_CASES)
def test_mean_average_precision_rejects_bad_input(preds, targets, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mean_average_precision(preds, targets, **kwargs)


def test_empty_images_are_a_defined_answer_not_an_error():
    empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    res = mean_average_precision([empty], [_gt()])
    assert res["map"] == 0.0 and res["mar_100"] == 0.0
    res = mean_average_precision([], [])
    assert res["map"] == -1.0


LABELS = torch.tensor([[0, 1], [2, 1]])
SEG_CASES = [  # (call, error type, message)
    (lambda: confusion_matrix(LABELS.float(), LABELS, 3), ValueError, "pred must hold integer"),
    (lambda: confusion_matrix(LABELS, LABELS.bool(), 3), ValueError, "target must hold integer"),
    (lambda: confusion_matrix(LABELS.tolist(), LABELS, 3), TypeError, "pred must be a torch.Tensor"),
    (lambda: confusion_matrix(LABELS, LABELS[0], 3), ValueError, "target must be"),
    (lambda: confusion_matrix(LABELS, LABELS.T.reshape(1, 2, 2), 3), ValueError, "same shape"),
    (lambda: confusion_matrix(LABELS, LABELS, 2), ValueError, r"pred values must lie in \[0, 2\)"),
    (lambda: confusion_matrix(LABELS - 1, LABELS, 3), ValueError, r"pred values must lie in \[0, 3\)"),
    (lambda: confusion_matrix(LABELS, LABELS, 0), ValueError, "num_classes must be a positive int"),
    (lambda: confusion_matrix(LABELS, LABELS, True), ValueError, "num_classes must be a positive int"),
    (lambda: confusion_matrix(LABELS, LABELS, 3.0), ValueError, "num_classes must be a positive int"),
    (lambda: confusion_matrix(LABELS, LABELS, 3, ignore_index=1.5), ValueError, "ignore_index must be"),
    (lambda: pixel_accuracy(torch.ones(2, 3)), ValueError, r"cm must be a square"),
    (lambda: pixel_accuracy([[1, 0], [0, 1]]), ValueError, r"cm must be a square"),
    (lambda: mean_iou(torch.tensor([[1.0, NAN], [0, 1]])), ValueError, "cm must hold pixel counts"),
    (lambda: mean_iou(torch.tensor([[1, -1], [0, 1]])), ValueError, "cm must hold pixel counts"),
    (lambda: boundary_f1(LABELS, LABELS, tolerance=-1), ValueError, "tolerance must be"),
    (lambda: boundary_f1(LABELS, LABELS, tolerance=NAN), ValueError, "tolerance must be"),
    (lambda: boundary_f1(LABELS, LABELS, tolerance=INF), ValueError, "tolerance must be"),
    (lambda: boundary_f1(LABELS, LABELS, tolerance="2"), ValueError, "tolerance must be"),
    (lambda: boundary_f1(LABELS, LABELS, num_classes=0), ValueError, "num_classes must be"),
    (lambda: boundary_f1(LABELS, LABELS, num_classes=2), ValueError, r"values must lie in \[0, 2\)"),
    (lambda: segmentation_scores(LABELS, LABELS, -3), ValueError, "num_classes must be"),
]


@pytest.mark.parametrize("call, error, match", SEG_CASES)
def test_segmentation_metrics_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_a_huge_tolerance_is_the_same_as_the_image_size():
    pred, target = torch.zeros(1, 8, 8, dtype=torch.long), torch.zeros(1, 8, 8, dtype=torch.long)
    pred[0, :, :3], target[0, :, 5:] = 1, 1
    assert float(boundary_f1(pred, target, tolerance=1e9)) == float(boundary_f1(pred, target, tolerance=16)) == 1.0
    assert float(boundary_f1(pred, target, tolerance=0)) == 0.0

