"""Checkers for the single-stage detection chapters (YOLO, SSD, RetinaNet) and the trade-offs chapter."""

from __future__ import annotations

from typing import Callable

import torch

from ._core import call_solution, report

__all__ = ["check_responsible_cells", "check_default_boxes", "check_focal_loss", "check_pareto_front"]


def check_responsible_cells(fn: Callable, n_scenes: int = 30, split: str = "val") -> bool:
    """Exercise (YOLO chapter): ``fn(boxes [N, 4], grid_size, image_size) -> [N, 2]`` int
    ``(row, col)`` of the grid cell holding each box's centre (a centre on a cell border
    belongs to the cell below / to the right; one on the image's far edge to the last cell).
    Checked against `cvcourse.models.yolo.responsible_cells` on scenes and edge cases."""
    from ..data import make_scene
    from ..models.yolo import responsible_cells

    name = "responsible_cells"
    edge = torch.tensor([[0.0, 0.0, 16.0, 16.0], [120.0, 120.0, 128.0, 128.0],
                         [0.0, 0.0, 128.0, 128.0], [10.0, 20.0, 14.0, 28.0]])
    cases = [(make_scene(i, split=split)["boxes"], s, 128) for i in range(n_scenes) for s in (8, 16)]
    cases += [(edge, s, 128) for s in (1, 4, 8, 16, 32)]
    wrong = 0
    for boxes, s, size in cases:
        got, err = call_solution(name, fn, boxes.clone(), s, size)
        if err:
            return report(name, False, err)
        got = torch.as_tensor(got)
        ref = responsible_cells(boxes, s, size)
        if got.shape != ref.shape:
            return report(name, False, f"{len(boxes)} boxes, grid {s}: expected shape "
                                       f"{tuple(ref.shape)}, got {tuple(got.shape)}")
        if not torch.equal(got.long(), ref):
            wrong += 1
            if wrong == 1:
                first = f"grid {s}, boxes {boxes.tolist()}: expected {ref.tolist()}, got {got.tolist()}"
    if wrong:
        return report(name, False, f"{wrong} of {len(cases)} cases wrong, e.g. {first}")
    return report(name, True, f"{len(cases)} cases (grids 1 to 32), every cell exact (tolerance 0)")


def check_default_boxes(fn: Callable) -> bool:
    """Exercise (SSD chapter): ``fn(feature_shape, stride, scale, next_scale, aspect_ratios)
    -> [h * w * A, 4]`` xyxy default boxes centred on the cells, per cell: square `scale`,
    square ``sqrt(scale * next_scale)``, then one box per ratio r (height / width) of area
    ``scale**2``. Checked against `cvcourse.models.ssd.default_boxes`."""
    from ..models.ssd import default_boxes

    name = "default_boxes"
    cases = [((16, 16), 8, 12.0, 24.0, (2.0, 0.5)), ((8, 8), 16, 24.0, 48.0, (2.0, 0.5)),
             ((4, 4), 32, 48.0, 96.0, (2.0, 0.5, 3.0, 1 / 3)), ((3, 5), 10, 20.0, 30.0, ()),
             ((1, 1), 64, 40.0, 100.0, (2.0,))]
    worst = 0.0
    for shape, stride, s, s_next, ratios in cases:
        got, err = call_solution(name, fn, shape, stride, s, s_next, ratios)
        if err:
            return report(name, False, err)
        got = torch.as_tensor(got, dtype=torch.float32)
        ref = default_boxes(shape, stride, s, s_next, ratios)
        if got.shape != ref.shape:
            return report(name, False, f"map {shape}, ratios {ratios}: expected shape "
                                       f"{tuple(ref.shape)}, got {tuple(got.shape)}")
        worst = max(worst, float((got - ref).abs().max()))
    return report(name, worst <= 1e-4, f"{len(cases)} maps, max |error| = {worst:.2g} px "
                                       f"(tolerance 1e-4; check the order: cells row-major, then boxes)")


def check_focal_loss(fn: Callable) -> bool:
    """Exercise (RetinaNet chapter): ``fn(inputs, targets, alpha, gamma) -> Tensor`` the
    elementwise sigmoid focal loss of logits against 0/1 targets (``alpha < 0``: no alpha
    weighting). Checked, values and gradients, against `cvcourse.ops.sigmoid_focal_loss`."""
    from ..ops.focal import sigmoid_focal_loss

    name = "focal_loss"
    g = torch.Generator().manual_seed(0)
    worst, worst_grad = 0.0, 0.0
    for alpha, gamma in ((0.25, 2.0), (0.5, 0.0), (-1.0, 0.0), (0.75, 1.0), (0.25, 5.0)):
        x = (torch.randn(64, 3, generator=g, dtype=torch.float64) * 4)
        y = (torch.rand(64, 3, generator=g) < 0.3).double()
        mine = x.clone().requires_grad_(True)
        got, err = call_solution(name, fn, mine, y.clone(), alpha, gamma)
        if err:
            return report(name, False, err)
        if not torch.is_tensor(got) or got.shape != x.shape:
            shape = tuple(got.shape) if torch.is_tensor(got) else type(got).__name__
            return report(name, False, f"expected an elementwise Tensor of shape {tuple(x.shape)}, got {shape}")
        ref_x = x.clone().requires_grad_(True)
        ref = sigmoid_focal_loss(ref_x, y, alpha, gamma)
        worst = max(worst, float((got.detach() - ref.detach()).abs().max()))
        if not got.requires_grad:
            return report(name, False, "the loss has no gradient: compute it with torch operations")
        got.sum().backward()
        ref.sum().backward()
        worst_grad = max(worst_grad, float((mine.grad - ref_x.grad).abs().max()))
    ok = worst <= 1e-6 and worst_grad <= 1e-6
    return report(name, ok, f"5 (alpha, gamma) settings, max |error| = {worst:.2g}, gradients "
                            f"{worst_grad:.2g} (tolerance 1e-6)")


def check_pareto_front(fn: Callable, n_random: int = 200) -> bool:
    """Exercise (trade-offs chapter): ``fn(points) -> set of names`` of the points that no
    other point beats in both ``"images_per_s"`` and ``"map"`` (at least as good in both,
    better in one). Checked against `cvcourse.tradeoffs.pareto_front` on hand-made cases
    (ties, duplicates, one point) and random ones."""
    import random

    from ..tradeoffs import pareto_front

    name = "pareto_front"

    def pts(*triples):
        return [{"name": n, "images_per_s": s, "map": m} for n, s, m in triples]

    cases = [pts(("a", 10.0, 0.5)),
             pts(("a", 10.0, 0.5), ("b", 20.0, 0.4), ("c", 5.0, 0.6)),          # all on the front
             pts(("a", 10.0, 0.5), ("b", 20.0, 0.6)),                            # b dominates a
             pts(("a", 10.0, 0.5), ("b", 10.0, 0.5)),                            # equal: both stay
             pts(("a", 10.0, 0.5), ("b", 10.0, 0.6), ("c", 12.0, 0.5)),          # ties in one axis
             pts(("fast", 100.0, 0.1), ("slow", 1.0, 0.9), ("mid", 10.0, 0.3), ("bad", 5.0, 0.2))]
    rng = random.Random(0)
    for _ in range(n_random):
        cases.append(pts(*((f"d{i}", float(rng.randint(1, 8)), rng.randint(0, 8) / 8)
                           for i in range(rng.randint(1, 7)))))
    for points in cases:
        got, err = call_solution(name, fn, [dict(p) for p in points])
        if err:
            return report(name, False, err)
        want = set(pareto_front(points))
        if set(got) != want:
            return report(name, False, f"points {[(p['name'], p['images_per_s'], p['map']) for p in points]}: "
                                       f"expected {sorted(want)}, got {sorted(set(got))}")
    return report(name, True, f"{len(cases)} cases (ties, duplicates, random), every front exact")
