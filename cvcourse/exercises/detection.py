"""Checkers for the detection chapters (localization, proposals, RoI ops, anchors, Faster R-CNN)."""

from __future__ import annotations

from typing import Callable

import torch

from ._core import call_solution, max_error, report

__all__: list[str] = ["check_detection_postprocess", "check_box_iou", "check_window_count",
                     "check_proposal_labels", "check_roi_align_one_box", "check_anchor_generation",
                     "check_box_encoding"]


# ----------------------------------------------------- localization, windows, R-CNN
def check_box_iou(fn: Callable, n_cases: int = 5) -> bool:
    """Exercise (single-object detection chapter): ``fn(boxes1 [N, 4], boxes2 [M, 4]) ->
    [N, M]``, the IoU of every pair of xyxy boxes. Checked against `cvcourse.ops.box_iou` on
    random boxes plus the edge cases: identical, nested, disjoint and edge-touching boxes."""
    from ..ops.boxes import box_iou

    name = "box_iou"
    g = torch.Generator().manual_seed(0)
    special = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 10], [2, 2, 5, 5], [10, 0, 20, 10],
                            [30, 30, 40, 35], [5, 5, 15, 15]])
    worst = 0.0
    for case in range(n_cases):
        n, m = 3 + case, 2 + 2 * case
        xy1 = torch.rand(n + m, 2, generator=g) * 50
        boxes = torch.cat([xy1, xy1 + torch.rand(n + m, 2, generator=g) * 30 + 1], 1)
        b1 = torch.cat([boxes[:n], special]) if case == 0 else boxes[:n]
        b2 = torch.cat([boxes[n:], special]) if case == 0 else boxes[n:]
        out, err = call_solution(name, fn, b1.clone(), b2.clone())
        if err:
            return report(name, False, err)
        out, ref = torch.as_tensor(out, dtype=torch.float32), box_iou(b1, b2)
        if out.shape != ref.shape:
            return report(name, False, f"expected shape {tuple(ref.shape)} for {len(b1)} x {len(b2)} "
                                       f"boxes, got {tuple(out.shape)}")
        worst = max(worst, float((out - ref).abs().max()))
    return report(name, worst <= 1e-5, f"{n_cases} cases (identical, nested, disjoint and touching "
                                        f"boxes included), max |error| = {worst:.2g} (tolerance 1e-5)")


def check_window_count(fn: Callable) -> bool:
    """Exercise (many-objects chapter): ``fn(height, width, shapes, stride) -> int``, the number
    of positions of windows of the given ``(w, h)`` shapes that lie fully inside the image
    when slid by `stride` pixels from the top-left corner. Checked against an enumeration of
    every window (`cvcourse.widgets.localization.sliding_windows`)."""
    from ..widgets.localization import sliding_windows

    name = "window_count"
    cases = [(128, 128, [(32, 32)], 1), (128, 128, [(32, 32)], 8), (128, 128, [(23, 45), (45, 23)], 4),
             (100, 60, [(16, 16), (32, 16), (16, 32), (64, 64)], 3), (64, 64, [(65, 10), (64, 64)], 5),
             (128, 128, [(s * a, s) for s in (8, 16, 32, 64) for a in (1, 2)], 2)]
    wrong = []
    for h, w, shapes, stride in cases:
        got, err = call_solution(name, fn, h, w, list(shapes), stride)
        if err:
            return report(name, False, err)
        # sliding_windows takes sizes and ratios; one (size, ratio) per shape gives it exactly
        expected = sum(len(sliding_windows(h, w, [(a * b) ** 0.5], [a / b], stride)) for a, b in shapes)
        if got != expected:
            wrong.append(f"{h}x{w} image, shapes {shapes}, stride {stride}: expected {expected}, got {got}")
    if wrong:
        return report(name, False, f"{len(wrong)} of {len(cases)} cases wrong, e.g. {wrong[0]}")
    return report(name, True, f"{len(cases)} cases, every count exact (tolerance 0)")


def check_proposal_labels(fn: Callable, n_scenes: int = 5, split: str = "val") -> bool:
    """Exercise (R-CNN chapter): ``fn(proposals [K, 4], gt_boxes [G, 4], gt_labels [G]) ->
    labels [K]``, R-CNN's training label of each proposal: the class of the ground-truth box
    it overlaps most if that IoU is >= 0.5, else 0 (background). Checked against
    `cvcourse.models.rcnn.rcnn_targets` on jittered boxes around real scenes' objects."""
    from ..data import make_scene
    from ..models.rcnn import rcnn_targets

    name = "proposal_labels"
    g = torch.Generator().manual_seed(0)
    wrong = total = 0
    for i in range(n_scenes):
        s = make_scene(i, split=split)
        gt = s["boxes"].repeat(20, 1)                                     # (20G, 4) around objects
        wh = (gt[:, 2:] - gt[:, :2]).repeat(1, 2)
        proposals = (gt + torch.randn(gt.shape, generator=g) * 0.3 * wh).clamp(0, 128)
        proposals[:, 2:] = torch.maximum(proposals[:, 2:], proposals[:, :2] + 1)
        ref = rcnn_targets([proposals], [s])[0][0]
        out, err = call_solution(name, fn, proposals.clone(), s["boxes"].clone(), s["labels"].clone())
        if err:
            return report(name, False, err)
        out = torch.as_tensor(out)
        if out.shape != ref.shape:
            return report(name, False, f"expected shape {tuple(ref.shape)}, got {tuple(out.shape)}")
        wrong += int((out.long() != ref).sum())
        total += len(ref)
    return report(name, wrong == 0, f"{total} proposals on {n_scenes} scenes, {wrong} labelled "
                                     f"differently (tolerance 0)")


# ------------------------------------------------------------------------- Faster R-CNN
def check_detection_postprocess(fn: Callable, n_cases: int = 6) -> bool:
    """Exercise (Faster R-CNN chapter): the second stage's post-processing,
    ``fn(probs [K, C+1], boxes [K, C+1, 4], score_thresh, nms_thresh) -> (boxes [D, 4],
    scores [D], labels [D])``: drop the background column 0, keep the (box, class) pairs
    scoring above `score_thresh`, run NMS within each class at IoU `nms_thresh`, return what
    is kept (labels in 1..C). Checked against ``cvcourse.models.roi_heads.postprocess_detections``
    (torchvision's logic) on random second-stage outputs, as sets ordered by score."""
    from ..models.roi_heads import postprocess_detections
    from ..ops.boxes import BoxCoder, clip_boxes_to_image

    name = "detection_postprocess"
    g = torch.Generator().manual_seed(0)
    coder, size = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)), (128, 128)
    settings = [(0.05, 0.5), (0.5, 0.5), (0.3, 0.3), (0.0, 0.7), (0.7, 0.1), (0.2, 1.0)]
    worst, total = 0.0, 0
    for case in range(n_cases):
        score_thresh, nms_thresh = settings[case % len(settings)]
        k, classes = 20 + 17 * case, 4                                   # classes incl. background
        # proposals cluster on a few objects, as a real RPN's do, so NMS has work to do
        objects = torch.rand(4, 2, generator=g) * 80 + 5
        xy = objects[torch.randint(4, (k,), generator=g)] + torch.randn(k, 2, generator=g) * 3
        proposals = torch.cat([xy, xy + torch.rand(k, 2, generator=g) * 10 + 20], 1)  # (K, 4)
        logits = torch.randn(k, classes, generator=g) * 3
        deltas = torch.randn(k, 4 * classes, generator=g) * 0.5
        ref = postprocess_detections(logits, deltas, [proposals], size, coder, score_thresh,
                                     nms_thresh, detections_per_img=10**6)[0]
        boxes = clip_boxes_to_image(coder.decode(deltas, proposals).view(k, classes, 4), size)
        out, err = call_solution(name, fn, logits.softmax(-1), boxes, score_thresh, nms_thresh)
        if err:
            return report(name, False, err)
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            return report(name, False, "expected a tuple (boxes [D, 4], scores [D], labels [D])")
        b, s, lab = (torch.as_tensor(x) for x in out)
        setting = f"score > {score_thresh}, NMS IoU {nms_thresh}"
        if (b.shape, s.shape, lab.shape) != (ref["boxes"].shape, ref["scores"].shape, ref["labels"].shape):
            return report(name, False, f"case {case} ({setting}): expected {len(ref['boxes'])} "
                                       f"detections, got boxes {tuple(b.shape)}, scores {tuple(s.shape)}, "
                                       f"labels {tuple(lab.shape)}")
        order = torch.argsort(s.float(), descending=True, stable=True)
        b, s, lab = b[order].float(), s[order].float(), lab[order].long()
        if not torch.equal(lab, ref["labels"]):
            return report(name, False, f"case {case} ({setting}): the labels (or their order by "
                                       f"score) differ from the reference")
        if len(b):
            worst = max(worst, float((b - ref["boxes"]).abs().max()), float((s - ref["scores"]).abs().max()))
        total += len(b)
    return report(name, worst <= 1e-5, f"{n_cases} cases, {total} detections kept in all, max |error| "
                                        f"of boxes and scores = {worst:.2g} (tolerance 1e-5)")


# ------------------------------------------------------------ Fast R-CNN: RoI Align
def check_roi_align_one_box(fn: Callable, n_cases: int = 6) -> bool:
    """Exercise (Fast R-CNN chapter): RoI Align of one box, written with bilinear sampling,
    ``fn(features [C, H, W], box [4], output_size, spatial_scale, sampling_ratio) ->
    [C, output_size, output_size]`` with ``aligned=True`` (the box is shifted by half a cell)
    and a fixed number of samples per bin along each axis. Checked against
    ``cvcourse.ops.roi_align`` (== torchvision's) on boxes whose samples all fall inside the map,
    so no boundary rule matters."""
    from ..ops.roi import roi_align

    name = "roi_align_one_box"
    g = torch.Generator().manual_seed(0)
    settings = [(2, 1.0, 1), (3, 0.5, 2), (2, 0.25, 3), (4, 0.5, 1), (1, 0.125, 2), (3, 1.0, 2)]
    worst = 0.0
    for case in range(n_cases):
        size, scale, ratio = settings[case % len(settings)]
        c, h, w = 3, 9 + case % 3, 11
        features = torch.randn(c, h, w, generator=g)
        # corners inside [0.5, side - 0.5] map cells, so every sample lies in [0, side - 1]
        lo = torch.rand(2, generator=g) * torch.tensor([w - 1.0, h - 1.0]) * 0.6 + 0.5
        hi = lo + torch.rand(2, generator=g) * (torch.tensor([w - 0.5, h - 0.5]) - lo)
        box = torch.cat([lo, hi]) / scale  # (4,) in input pixels
        ref = roi_align(features[None], [box[None]], size, scale, ratio, aligned=True)[0]
        problem, error = max_error(name, fn, (features.clone(), box.clone(), size, scale, ratio), ref)
        if problem:
            return report(name, False, problem)
        worst = max(worst, error)
    return report(name, worst <= 1e-4, f"{n_cases} boxes (output sizes 1-4, scales 1 to 1/8, 1-3 "
                                        f"samples per bin), max |error| = {worst:.2g} (tolerance 1e-4)")


# ------------------------------------------------------------------- RPN: anchors, deltas
def check_anchor_generation(fn: Callable) -> bool:
    """Exercise (RPN chapter): ``fn(feature_shape (h, w), stride, sizes, ratios) ->
    [h * w * A, 4]``, every anchor of a feature map in image pixels: at cell (i, j), centred
    on ``(j * stride, i * stride)``, one anchor per (ratio, size), ratio-major, of width
    ``size / sqrt(ratio)`` and height ``size * sqrt(ratio)``; cells in row-major order.
    Checked against ``cvcourse.ops.anchors_for`` (== torchvision's AnchorGenerator), which
    rounds the corners to whole pixels: answers within 0.5 px pass."""
    from ..ops.anchors import anchors_for

    name = "anchor_generation"
    cases = [((4, 5), 16, (32,), (0.5, 1.0, 2.0)), ((3, 3), 8, (16, 32, 64), (0.5, 1.0, 2.0)),
             ((2, 6), 32, (45, 90), (1 / 3, 1.0, 3.0)), ((5, 4), 4, (10, 20), (1.0,))]
    worst = 0.0
    for shape, stride, sizes, ratios in cases:
        ref = anchors_for(shape, stride, sizes, ratios)
        problem, error = max_error(name, fn, (shape, stride, tuple(sizes), tuple(ratios)), ref,
                                    f"{shape} map, {len(sizes)} sizes x {len(ratios)} ratios: ")
        if problem:
            return report(name, False, problem)
        worst = max(worst, error)
    return report(name, worst <= 0.5 + 1e-4, f"{len(cases)} maps, max |error| = {worst:.3g} px "
                                              f"(tolerance 0.5 px: rounding the corners is optional)")


def check_box_encoding(fn: Callable, n_cases: int = 4) -> bool:
    """Exercise (RPN chapter): ``fn(gt_boxes [N, 4], anchors [N, 4]) -> deltas [N, 4]``, the
    R-CNN box deltas ``(dx, dy, dw, dh)`` that move each anchor onto its ground-truth box
    (``dx = (gx - ax) / aw``, ``dw = log(gw / aw)``, centres and sizes). Checked against
    ``cvcourse.ops.BoxCoder().encode`` (== torchvision's, weights 1)."""
    from ..ops.boxes import BoxCoder

    name = "box_encoding"
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for case in range(n_cases):
        n = 5 + 10 * case
        xy = torch.rand(2, n, 2, generator=g) * 100
        wh = torch.rand(2, n, 2, generator=g) * 60 + 2
        gt, anchors = torch.cat([xy, xy + wh], dim=2)  # (N, 4) each
        ref = BoxCoder().encode(gt, anchors)
        problem, error = max_error(name, fn, (gt.clone(), anchors.clone()), ref)
        if problem:
            return report(name, False, problem)
        worst = max(worst, error)
    return report(name, worst <= 1e-5, f"{n_cases} cases, max |error| = {worst:.2g} (tolerance 1e-5)")
