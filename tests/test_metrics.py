"""cvcourse.metrics: segmentation metrics by hand and vs scipy; COCO mAP vs pycocotools."""
import contextlib
import io
import math

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import ndimage

from cvcourse.metrics import (
    boundary_f1,
    confusion_matrix,
    mean_average_precision,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
    segmentation_scores,
)

STAT_KEYS = ["map", "map_50", "map_75", "map_small", "map_medium", "map_large",
             "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large"]
TOL = 1e-6
WORST = {"diff": 0.0}  # worst |ours - pycocotools| seen in this session (printed with -s)


# ------------------------------------------------------------------------ pycocotools reference
def coco_eval(preds, targets, iou_type="bbox", iou_thresholds=None):
    """Run pycocotools' COCOeval on our per-image dicts; returns the evaluated COCOeval."""
    labels = [int(v) for x in list(preds) + list(targets) for v in x["labels"]]
    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets), start=1):
        height, width = t["masks"].shape[-2:] if iou_type == "segm" else (512, 512)
        images.append({"id": i, "height": int(height), "width": int(width)})
        crowd = t.get("iscrowd", torch.zeros(len(t["labels"])))
        for j, label in enumerate(t["labels"].tolist()):
            ann = {"id": len(anns) + 1, "image_id": i, "category_id": label, "iscrowd": int(crowd[j])}
            if iou_type == "bbox":
                x1, y1, x2, y2 = (float(v) for v in t["boxes"][j])
                ann.update(bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1))
            else:
                m = np.asfortranarray(t["masks"][j].numpy().astype(np.uint8))
                ann.update(segmentation=mask_utils.encode(m), area=float(m.sum()))
            anns.append(ann)
        for j, label in enumerate(p["labels"].tolist()):
            det = {"image_id": i, "category_id": label, "score": float(p["scores"][j])}
            if iou_type == "bbox":
                x1, y1, x2, y2 = (float(v) for v in p["boxes"][j])
                det["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:
                m = p["masks"][j].reshape(p["masks"].shape[-2:])
                m = m > 0.5 if m.is_floating_point() else m != 0
                det["segmentation"] = mask_utils.encode(np.asfortranarray(m.numpy().astype(np.uint8)))
            dets.append(det)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns,
                      "categories": [{"id": c} for c in sorted(set(labels))]}
        gt.createIndex()
        if dets:
            dt = gt.loadRes(dets)
        else:
            dt = COCO()
            dt.dataset = {"images": images, "annotations": [], "categories": gt.dataset["categories"]}
            dt.createIndex()
        ev = COCOeval(gt, dt, iou_type)
        if iou_thresholds is not None:
            ev.params.iouThrs = np.array(iou_thresholds, dtype=np.float64)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def assert_matches_coco(preds, targets, iou_type="bbox", **kwargs):
    ours = mean_average_precision(preds, targets, iou_type=iou_type, **kwargs)
    ev = coco_eval(preds, targets, iou_type, kwargs.get("iou_thresholds"))
    diffs = [abs(ours[key] - float(ref)) for key, ref in zip(STAT_KEYS, ev.stats)]
    WORST["diff"] = max(WORST["diff"], max(diffs))
    assert max(diffs) <= TOL, {k: (ours[k], float(r)) for k, r in zip(STAT_KEYS, ev.stats)}
    return ours, ev


# ---------------------------------------------------------------------------- random cases
def random_boxes(gen, n, size=512.0):
    """n xyxy float32 boxes whose sides span 2..300 px (all three COCO area ranges)."""
    wh = torch.exp(torch.empty(n, 2).uniform_(math.log(2), math.log(300), generator=gen))
    xy = torch.rand(n, 2, generator=gen) * (size - wh)
    return torch.cat([xy, xy + wh], 1).float()


def random_detection_case(seed, n_images=24, n_classes=4, crowd=False, tied=False):
    """Ground truths and noisy predictions, with every awkward case COCOeval handles."""
    gen = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for i in range(n_images):
        n_gt = 0 if i % 7 == 3 else int(torch.randint(1, 9, (1,), generator=gen))  # some: no GT
        boxes = random_boxes(gen, n_gt)
        labels = torch.randint(0, n_classes, (n_gt,), generator=gen)
        target = {"boxes": boxes, "labels": labels}
        if crowd:
            target["iscrowd"] = (torch.rand(n_gt, generator=gen) < 0.15).long()
        targets.append(target)
        # detections: jittered copies (some twice = duplicates, some relabelled) + clutter
        copies = torch.cat([torch.arange(n_gt), torch.arange(n_gt)[torch.rand(n_gt, generator=gen) < 0.3]])
        copies = copies[torch.rand(len(copies), generator=gen) < 0.85]
        size = (boxes[copies, 2:] - boxes[copies, :2]).repeat(1, 2)
        jittered = boxes[copies] + 0.15 * size * torch.randn(len(copies), 4, generator=gen)
        jittered = torch.cat([jittered[:, :2].minimum(jittered[:, 2:]), jittered[:, 2:].maximum(jittered[:, :2])], 1)
        det_labels = labels[copies].clone()
        flip = torch.rand(len(copies), generator=gen) < 0.1
        det_labels[flip] = torch.randint(0, n_classes, (int(flip.sum()),), generator=gen)
        n_clutter = 150 if i == 5 else int(torch.randint(0, 5, (1,), generator=gen))  # > maxDets
        clutter_labels = torch.randint(0, n_classes + 1, (n_clutter,), generator=gen)  # n_classes: preds only
        pred = {"boxes": torch.cat([jittered, random_boxes(gen, n_clutter)]).float(),
                "labels": torch.cat([det_labels, clutter_labels]),
                "scores": torch.rand(len(copies) + n_clutter, generator=gen)}
        if tied:
            pred["scores"] = (pred["scores"] * 4).round() / 4     # many exact ties
        if i % 6 == 1:                                            # some: no predictions
            pred = {k: v[:0] for k, v in pred.items()}
        preds.append(pred)
    return preds, targets


def random_mask(gen, size):
    """A bool [size, size] ellipse or rectangle of random extent (2..~size px across)."""
    radius = torch.exp(torch.empty(2).uniform_(math.log(1.5), math.log(size * 0.8), generator=gen))
    centre = (0.2 + 0.6 * torch.rand(2, generator=gen)) * size
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    dy, dx = (yy - centre[0]) / radius[0], (xx - centre[1]) / radius[1]
    if torch.rand(1, generator=gen) < 0.5:
        return dy ** 2 + dx ** 2 <= 1
    return (dy.abs() <= 1) & (dx.abs() <= 1)


def random_segm_case(seed, n_images=10, n_classes=3, size=128, float_masks=False, crowd=False):
    gen = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for i in range(n_images):
        n_gt = 0 if i == 2 else int(torch.randint(1, 6, (1,), generator=gen))
        masks = (torch.stack([random_mask(gen, size) for _ in range(n_gt)]) if n_gt
                 else torch.zeros(0, size, size, dtype=torch.bool))
        labels = torch.randint(0, n_classes, (n_gt,), generator=gen)
        target = {"masks": masks, "labels": labels}
        if crowd:
            target["iscrowd"] = (torch.rand(n_gt, generator=gen) < 0.2).long()
        targets.append(target)
        shifts = torch.randint(-3, 4, (n_gt, 2), generator=gen)
        moved = [torch.roll(m, tuple(s.tolist()), dims=(0, 1)) for m, s in zip(masks, shifts)]
        clutter = [random_mask(gen, size) for _ in range(int(torch.randint(0, 3, (1,), generator=gen)))]
        det = torch.stack(moved + clutter) if moved + clutter else torch.zeros(0, size, size, dtype=torch.bool)
        det_labels = torch.cat([labels, torch.randint(0, n_classes + 1, (len(clutter),), generator=gen)])
        scores = torch.rand(len(det), generator=gen)
        if float_masks:                                            # probabilities, [N, 1, H, W]
            det = (det.float() * 0.4 + 0.3 + 0.25 * torch.rand(det.shape, generator=gen))[:, None]
        if i == 4:
            det, det_labels, scores = det[:0], det_labels[:0], scores[:0]
        preds.append({"masks": det, "labels": det_labels, "scores": scores})
    return preds, targets


# ------------------------------------------------------------------------- mAP vs pycocotools
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bbox_map_matches_pycocotools(seed):
    assert_matches_coco(*random_detection_case(seed))


def test_bbox_map_matches_pycocotools_with_tied_scores_and_crowds():
    assert_matches_coco(*random_detection_case(10, tied=True))
    assert_matches_coco(*random_detection_case(11, crowd=True))
    assert_matches_coco(*random_detection_case(12, crowd=True, tied=True))


def test_random_case_covers_the_awkward_situations():
    preds, targets = random_detection_case(0)
    assert any(len(p["labels"]) == 0 for p in preds) and any(len(t["labels"]) == 0 for t in targets)
    assert max(len(p["labels"]) for p in preds) > 100
    areas = torch.cat([(t["boxes"][:, 2:] - t["boxes"][:, :2]).prod(1) for t in targets])
    assert (areas < 32 ** 2).any() and ((areas > 32 ** 2) & (areas < 96 ** 2)).any() and (areas > 96 ** 2).any()
    gt_labels = set(torch.cat([t["labels"] for t in targets]).tolist())
    assert 4 in set(torch.cat([p["labels"] for p in preds]).tolist()) - gt_labels  # pred-only class


def test_class_metrics_match_pycocotools_per_class():
    preds, targets = random_detection_case(3)
    ours, ev = assert_matches_coco(preds, targets, class_metrics=True)
    for k, c in enumerate(ev.params.catIds):
        for key, ref in (("map_per_class", ev.eval["precision"][:, :, k, 0, -1]),
                         ("mar_100_per_class", ev.eval["recall"][:, k, 0, -1])):
            expected = ref[ref > -1].mean() if (ref > -1).any() else -1.0
            assert abs(ours[key][c] - expected) <= TOL
    assert ours["map_per_class"][4] == -1.0                       # class with no ground truth


def test_custom_iou_thresholds_match_pycocotools():
    preds, targets = random_detection_case(4, n_images=10)
    assert_matches_coco(preds, targets, iou_thresholds=[0.5, 0.75, 0.9])
    ours = mean_average_precision(preds, targets, iou_thresholds=[0.3, 0.6])
    assert ours["map_50"] == -1.0 and ours["map_75"] == -1.0 and ours["map"] > 0


@pytest.mark.parametrize("float_masks,crowd", [(False, False), (True, True)])
def test_segm_map_matches_pycocotools(float_masks, crowd):
    preds, targets = random_segm_case(20 + crowd, float_masks=float_masks, crowd=crowd)
    ours, _ = assert_matches_coco(preds, targets, "segm")
    assert all(ours[k] > -1 for k in ("map_small", "map_medium", "map_large"))


def random_grid_case(gen):
    """A few images of boxes on a 16-px grid: exact IoU ties, IoUs exactly on a threshold,
    areas exactly on the 32**2 / 96**2 range limits, zero-area boxes, crowds, tied scores."""
    def boxes(n):
        corners = torch.randint(0, 9, (n, 2, 2), generator=gen).float() * 16
        return torch.cat([corners.min(1).values, corners.max(1).values], 1)   # (n, 4) xyxy

    preds, targets = [], []
    for _ in range(int(torch.randint(1, 4, (1,), generator=gen))):
        n_gt, n_clutter = (int(v) for v in torch.randint(0, 5, (2,), generator=gen))
        gt = boxes(n_gt)
        near = gt[torch.rand(n_gt, generator=gen) < 0.7]                   # near copies:
        near = near + 16 * torch.randint(-1, 2, near.shape, generator=gen)  # one grid step off
        near = torch.cat([near[:, :2].minimum(near[:, 2:]), near[:, :2].maximum(near[:, 2:])], 1)
        dt = torch.cat([near, boxes(n_clutter)])
        targets.append({"boxes": gt, "labels": torch.randint(0, 2, (n_gt,), generator=gen),
                        "iscrowd": (torch.rand(n_gt, generator=gen) < 0.2).long()})
        preds.append({"boxes": dt, "labels": torch.randint(0, 2, (len(dt),), generator=gen),
                      "scores": torch.tensor([0.2, 0.5, 0.9])[torch.randint(0, 3, (len(dt),), generator=gen)]})
    return preds, targets


def test_bbox_map_matches_pycocotools_on_grid_boxes():
    gen = torch.Generator().manual_seed(123)
    for _ in range(80):
        preds, targets = random_grid_case(gen)
        if any(len(x["labels"]) for x in preds + targets):            # COCO needs a category
            assert_matches_coco(preds, targets)


# ---------------------------------------------------------------------------- mAP by hand
def one_class(boxes, scores=None, iscrowd=None):
    entry = {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.zeros(len(boxes), dtype=torch.long)}
    if scores is not None:
        entry["scores"] = torch.tensor(scores)
    if iscrowd is not None:
        entry["iscrowd"] = torch.tensor(iscrowd)
    return entry


def test_equal_iou_tie_goes_to_the_later_ground_truth():
    # The first detection overlaps both ground truths with IoU 0.6 exactly; COCOeval gives
    # it the later one (B), so the second detection (B itself) finds B taken: a false positive.
    gts = one_class([[0, 0, 20, 10], [10, 0, 30, 10]])
    dets = one_class([[5, 0, 25, 10], [10, 0, 30, 10]], scores=[0.9, 0.8])
    ours, _ = assert_matches_coco([dets], [gts])
    assert ours["mar_100"] == pytest.approx(0.5)


def test_regular_ground_truth_beats_a_better_crowd_match():
    # IoU 0.8 with the regular box, 1.0 with the crowd (union = detection area): the regular
    # one wins, so the detection is a true positive at thresholds up to 0.8.
    gts = one_class([[0, 0, 40, 40], [0, 0, 100, 100]], iscrowd=[0, 1])
    dets = one_class([[0, 0, 40, 50]], scores=[0.9])
    ours, _ = assert_matches_coco([dets], [gts])
    assert ours["mar_100"] == pytest.approx(0.7) and ours["map"] == pytest.approx(0.7)


def test_one_perfect_detection_scores_one():
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])                # 40 x 40: medium
    ours = mean_average_precision([{"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}],
                                  [{"boxes": box, "labels": torch.tensor([1])}])
    for key in ("map", "map_50", "map_75", "map_medium", "mar_1", "mar_10", "mar_100", "mar_medium"):
        assert ours[key] == pytest.approx(1.0)
    for key in ("map_small", "map_large", "mar_small", "mar_large"):
        assert ours[key] == -1.0                                  # no GT in that area range


def test_duplicate_detection_lowers_precision():
    gts = torch.tensor([[0.0, 0.0, 40.0, 40.0], [100.0, 100.0, 140.0, 140.0]])
    dets = torch.stack([gts[0], gts[0], gts[1]])                  # second one duplicates the first
    ours = mean_average_precision(
        [{"boxes": dets, "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.zeros(3, dtype=torch.long)}],
        [{"boxes": gts, "labels": torch.zeros(2, dtype=torch.long)}])
    # PR points (r, p): (.5, 1), (.5, .5), (1, 2/3); interpolated: 1 up to r = .5, 2/3 after.
    expected = (51 * 1.0 + 50 * 2 / 3) / 101
    assert ours["map"] == pytest.approx(expected) and ours["map_50"] == pytest.approx(expected)
    assert ours["mar_100"] == pytest.approx(1.0) and ours["mar_1"] == pytest.approx(0.5)


def test_max_detections_caps_each_image():
    gts = torch.tensor([[0.0, 0.0, 40.0, 40.0], [100.0, 100.0, 140.0, 140.0]])
    pred = {"boxes": gts, "scores": torch.tensor([0.9, 0.8]), "labels": torch.zeros(2, dtype=torch.long)}
    ours = mean_average_precision([pred], [{"boxes": gts, "labels": torch.zeros(2, dtype=torch.long)}],
                                  max_detections=1)
    assert ours["mar_1"] == pytest.approx(0.5) and "mar_100" not in ours


@pytest.mark.parametrize("kwargs,message", [
    ({"preds": [{}], "targets": []}, "one entry per image"),
    ({"preds": [{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1, dtype=torch.long)}]}, "scores"),
    ({"preds": [{"boxes": torch.zeros(1, 5), "scores": torch.ones(1), "labels": torch.zeros(1, dtype=torch.long)}]},
     r"boxes.*\[N, 4\]"),
    ({"preds": [{"boxes": torch.tensor([[5.0, 0, 1, 1]]), "scores": torch.ones(1),
                 "labels": torch.zeros(1, dtype=torch.long)}]}, "x2 >= x1"),
    ({"iou_type": "keypoints"}, "iou_type"),
    ({"preds": "nope"}, "preds must be a list"),
    ({"max_detections": 0}, "max_detections"),
    ({"iou_type": "segm"}, r"targets\[0\] is missing key 'masks'"),
])
def test_map_input_errors_name_the_argument(kwargs, message):
    args = {"preds": [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long),
                       "masks": torch.zeros(0, 4, 4, dtype=torch.bool)}],
            "targets": [{"boxes": torch.zeros(1, 4), "labels": torch.zeros(1, dtype=torch.long)}]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        mean_average_precision(**args)


# ---------------------------------------------------------------------------- segmentation
PRED = torch.tensor([[0, 1, 1], [2, 2, 0], [1, 0, 2]])
TARGET = torch.tensor([[0, 1, 2], [2, 2, 0], [1, 1, 2]])


def test_confusion_matrix_and_scores_by_hand():
    cm = confusion_matrix(PRED, TARGET, 3)
    assert cm.tolist() == [[2, 0, 0], [1, 2, 0], [0, 1, 3]]       # rows: true, cols: predicted
    assert pixel_accuracy(cm).item() == pytest.approx(7 / 9)
    assert per_class_iou(cm).tolist() == pytest.approx([2 / 3, 2 / 4, 3 / 4])
    assert mean_iou(cm).item() == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)


def test_confusion_matrix_batches_and_ignore_index():
    target = TARGET.clone()
    target[0, 0] = 255
    cm = confusion_matrix(torch.stack([PRED, PRED]), torch.stack([target, TARGET]), 3, ignore_index=255)
    assert cm.sum() == 17 and cm[0, 0] == 3
    assert torch.equal(cm, confusion_matrix(PRED, target, 3, 255) + confusion_matrix(PRED, TARGET, 3))


def test_absent_class_is_nan_and_excluded_from_mean():
    iou = per_class_iou(confusion_matrix(PRED, TARGET, 4))
    assert math.isnan(iou[3]) and mean_iou(confusion_matrix(PRED, TARGET, 4)).item() == pytest.approx(
        (2 / 3 + 1 / 2 + 3 / 4) / 3)


def test_segmentation_input_errors():
    with pytest.raises(ValueError, match="pred must hold integer"):
        confusion_matrix(PRED.float(), TARGET, 3)
    with pytest.raises(ValueError, match="same shape"):
        confusion_matrix(PRED, TARGET[:2], 3)
    with pytest.raises(ValueError, match=r"target .* \[0, 2\)"):
        confusion_matrix(PRED.clamp(max=1), TARGET, 2)
    with pytest.raises(ValueError, match="tolerance"):
        boundary_f1(PRED, TARGET, tolerance=-1)


def stripes(edge, size=24):
    """Label map: class 0 left of column `edge`, class 1 from it on."""
    return (torch.arange(size)[None, :] >= edge).long().expand(size, size).clone()


def test_boundary_f1_by_hand():
    assert boundary_f1(stripes(10), stripes(10)).item() == 1.0
    assert boundary_f1(stripes(10), stripes(11), tolerance=2).item() == 1.0  # within tolerance
    assert boundary_f1(stripes(10), stripes(15), tolerance=2).item() == 0.0  # edges 4..6 px apart
    assert boundary_f1(stripes(10), stripes(13), tolerance=2).item() == pytest.approx(0.5)  # 1 of 2 columns
    flat = torch.zeros(24, 24, dtype=torch.long)
    assert boundary_f1(flat, flat).item() == 1.0                  # no boundaries anywhere
    assert boundary_f1(flat, stripes(10)).item() == 0.0
    batch = boundary_f1(torch.stack([stripes(10), stripes(10)]), torch.stack([stripes(10), stripes(15)]))
    assert batch.item() == pytest.approx(0.5)                     # mean over images


def reference_boundary_f1(pred, target, tolerance):
    """Straightforward numpy/scipy version: Euclidean distance transform per image."""
    def edges(x):
        e = np.zeros_like(x, dtype=bool)
        dx, dy = x[:, 1:] != x[:, :-1], x[1:] != x[:-1]
        e[:, 1:] |= dx
        e[:, :-1] |= dx
        e[1:] |= dy
        e[:-1] |= dy
        return e
    scores = []
    for p, t in zip(pred.numpy(), target.numpy()):
        pe, te = edges(p), edges(t)
        if not pe.any() and not te.any():
            scores.append(1.0)
            continue
        if not pe.any() or not te.any():
            scores.append(0.0)
            continue
        precision = (ndimage.distance_transform_edt(~te)[pe] <= tolerance).mean()
        recall = (ndimage.distance_transform_edt(~pe)[te] <= tolerance).mean()
        scores.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return float(np.mean(scores))


@pytest.mark.parametrize("tolerance", [0, 1, 2, 3.5])
def test_boundary_f1_matches_scipy_distance_transform(tolerance):
    gen = torch.Generator().manual_seed(7)
    noise = torch.rand(6, 1, 8, 8, generator=gen)
    target = (torch.nn.functional.interpolate(noise, size=(40, 40), mode="bilinear")[:, 0] * 3).long()
    pred = torch.roll(target, 2, dims=2)
    pred[:, :5] = torch.randint(0, 3, (6, 5, 40), generator=gen)
    assert boundary_f1(pred, target, tolerance=tolerance).item() == pytest.approx(
        reference_boundary_f1(pred, target, tolerance), abs=1e-12)


def test_segmentation_scores_dict():
    scores = segmentation_scores(PRED, TARGET, 4)
    assert scores["pixel_accuracy"] == pytest.approx(7 / 9)
    assert scores["mean_iou"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 4) / 3)
    assert len(scores["per_class_iou"]) == 4 and math.isnan(scores["per_class_iou"][3])
    assert 0.0 <= scores["boundary_f1"] <= 1.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_metrics_on_cuda_equal_cpu():
    def cuda(items):
        return [{k: v.cuda() for k, v in x.items()} for x in items]

    for iou_type, (preds, targets) in (("bbox", random_detection_case(0, n_images=8)),
                                       ("segm", random_segm_case(20, n_images=4))):
        on_gpu = mean_average_precision(cuda(preds), cuda(targets), iou_type)
        assert on_gpu == pytest.approx(mean_average_precision(preds, targets, iou_type), abs=1e-12)
    pred, target = torch.roll(stripes(10), 1, 0), stripes(13)
    assert torch.equal(confusion_matrix(pred.cuda(), target.cuda(), 2).cpu(), confusion_matrix(pred, target, 2))
    assert boundary_f1(pred.cuda(), target.cuda()).item() == boundary_f1(pred, target).item()


def test_report_worst_difference():
    """Runs last in this file: prints the worst |ours - pycocotools| over all cases above."""
    print(f"\nworst |ours - pycocotools| = {WORST['diff']:.3g}")
    assert WORST["diff"] <= TOL
