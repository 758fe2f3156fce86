"""Checkers for the instance segmentation chapter (Mask R-CNN)."""

from __future__ import annotations

from typing import Callable

import torch

from ._core import call_solution, report

__all__ = ["check_paste_mask", "check_mask_target"]

# (box x1, y1, x2, y2 with integer corners, image (H, W)): inside, across every border, larger
PASTE_CASES = [((10, 12, 30, 25), (40, 50)), ((0, 0, 7, 7), (16, 16)), ((-6, 3, 9, 20), (24, 24)),
               ((20, -4, 35, 10), (30, 30)), ((25, 18, 40, 33), (30, 32)),
               ((-5, -5, 40, 40), (32, 32)), ((3, 5, 3, 5), (10, 10)), ((4, 6, 60, 9), (20, 64))]


def check_paste_mask(fn: Callable) -> bool:
    """Exercise: ``fn(mask [M, M], box [4], (H, W)) -> [H, W]``: resize the mask (bilinear,
    ``align_corners=False``) to the box's ``x2 - x1 + 1`` by ``y2 - y1 + 1`` pixels (both
    ends included, torchvision's convention), write it at rows y1..y2 and columns x1..x2,
    and keep only what falls inside the H x W image (zeros elsewhere). Boxes have integer
    corners. Checked against `cvcourse.models.mask_rcnn.paste_masks_in_image` (padding 0)."""
    from ..models.mask_rcnn import paste_masks_in_image

    name = "paste_mask"
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for box, size in PASTE_CASES:
        mask = torch.rand(28, 28, generator=g)
        box_t = torch.tensor(box, dtype=torch.float32)
        got, err = call_solution(name, fn, mask.clone(), box_t.clone(), size)
        if err:
            return report(name, False, err)
        ref = paste_masks_in_image(mask[None, None], box_t[None], size, padding=0)[0, 0]
        got = torch.as_tensor(got, dtype=torch.float32)
        if got.shape != ref.shape:
            return report(name, False, f"box {list(box)} in a {size} image: expected shape "
                                       f"{tuple(ref.shape)}, got {tuple(got.shape)}")
        err_case = float((got - ref).abs().max())
        if err_case > 1e-5:
            return report(name, False, f"box {list(box)} in a {size} image: values differ by up to "
                                       f"{err_case:.3g} (check the +1 in the box size and the "
                                       f"cropping at the image border)")
        worst = max(worst, err_case)
    return report(name, True, f"{len(PASTE_CASES)} boxes (inside, across borders, larger than the "
                              f"image), max |error| = {worst:.2g} (tolerance 1e-5)")


def check_mask_target(fn: Callable) -> bool:
    """Exercise: ``fn(gt_masks [G, H, W] bool, boxes [K, 4], matched_idxs [K], M) -> [K, M, M]``,
    the mask targets of K positive RoIs: ground-truth mask ``matched_idxs[k]`` resampled
    along box k (RoI Align, ``sampling_ratio=-1``, ``aligned=False``, as torchvision's
    ``project_masks_on_boxes``). Checked against `cvcourse.models.mask_rcnn.mask_targets`,
    itself equal to torchvision's."""
    from ..data import make_scene
    from ..models.mask_rcnn import mask_targets

    name = "mask_target"
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for i in range(5):
        s = make_scene(i, split="val")
        gt = s["masks"]
        matched = torch.randint(0, len(gt), (6,), generator=g)
        jitter = (torch.rand(6, 4, generator=g) - 0.5) * 8          # proposals near the objects
        boxes = s["boxes"][matched] + jitter
        boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        got, err = call_solution(name, fn, gt.clone(), boxes.clone(), matched.clone(), 28)
        if err:
            return report(name, False, err)
        ref = mask_targets(gt, boxes, matched, 28)
        got = torch.as_tensor(got, dtype=torch.float32)
        if got.shape != ref.shape:
            return report(name, False, f"expected shape {tuple(ref.shape)}, got {tuple(got.shape)}")
        worst = max(worst, float((got - ref).abs().max()))
    return report(name, worst <= 1e-5, f"5 scenes x 6 RoIs, max |error| = {worst:.2g} (tolerance 1e-5)")
