"""Checkers for the foundation and semantic segmentation chapters."""

from __future__ import annotations

from typing import Callable

import torch

from ._core import call_solution, report

__all__ = ['check_semantic_from_instances', 'check_boxes_from_masks', 'check_fc_to_conv', 'check_receptive_field',
           'check_bed_of_nails', 'check_conv_transpose_scatter', 'check_skip_concat']


def check_semantic_from_instances(fn: Callable, n_scenes: int = 20, split: str = "val") -> bool:
    """Exercise (tasks chapter): ``fn(masks [N,H,W] bool, labels [N]) -> semantic [H,W] int64``
    with 0 for background. Checked against the generator's semantic map on `n_scenes` scenes."""
    from ..data import make_scene

    name = "semantic_from_instances"
    worst = 0
    for i in range(n_scenes):
        s = make_scene(i, split=split)
        out, err = call_solution(name, fn, s["masks"].clone(), s["labels"].clone())
        if err:
            return report(name, False, err)
        out = torch.as_tensor(out)
        if out.shape != s["semantic"].shape:
            return report(name, False, f"expected shape {tuple(s['semantic'].shape)}, got {tuple(out.shape)}")
        worst = max(worst, int((out.long() != s["semantic"]).sum()))
    return report(name, worst == 0, f"{n_scenes} scenes, worst scene has {worst} wrong pixels (tolerance 0)")


def check_boxes_from_masks(fn: Callable, n_scenes: int = 20, split: str = "val") -> bool:
    """Exercise (tasks chapter): ``fn(masks [N,H,W] bool) -> boxes [N,4]`` tight xyxy boxes in
    the pixel-edge convention (x2 = last column + 1). Checked against the generator's boxes."""
    from ..data import make_scene

    name = "boxes_from_masks"
    worst = 0.0
    for i in range(n_scenes):
        s = make_scene(i, split=split)
        out, err = call_solution(name, fn, s["masks"].clone())
        if err:
            return report(name, False, err)
        out = torch.as_tensor(out, dtype=torch.float32)
        if out.shape != s["boxes"].shape:
            return report(name, False, f"expected shape {tuple(s['boxes'].shape)}, got {tuple(out.shape)}")
        worst = max(worst, float((out - s["boxes"]).abs().max()))
    return report(name, worst <= 1e-6, f"{n_scenes} scenes, max |error| = {worst:.3g} px (tolerance 1e-6)")


# ------------------------------------------------------------------ semantic segmentation
def check_fc_to_conv(fn: Callable, n_cases: int = 5) -> bool:
    """Exercise (sliding window chapter): ``fn(fc: nn.Linear, in_channels, kernel_size) ->
    nn.Conv2d`` whose output at every position equals `fc` applied to the flattened
    ``[in_channels, k, k]`` patch there. Checked by sliding `fc` over every patch of a
    larger input (``F.unfold``) and comparing with the convolution's output map."""
    import torch.nn.functional as F
    from torch import nn

    name = "fc_to_conv"
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for case in range(n_cases):
        c, k, out = 2 + case % 3, 1 + 2 * (case % 3), 3 + case
        fc = nn.Linear(c * k * k, out)
        with torch.no_grad():
            fc.weight.copy_(torch.randn(fc.weight.shape, generator=g))
            fc.bias.copy_(torch.randn(fc.bias.shape, generator=g))
        x = torch.randn(2, c, k + 3, k + 5, generator=g)
        conv, err = call_solution(name, fn, fc, c, k)
        if err:
            return report(name, False, err)
        if not isinstance(conv, nn.Module):
            return report(name, False, f"expected an nn.Conv2d, got {type(conv).__name__}")
        with torch.no_grad():
            patches = F.unfold(x, k)  # (2, c*k*k, L): every k x k patch, flattened like .flatten(1)
            ref = fc(patches.transpose(1, 2)).transpose(1, 2).reshape(2, out, 4, 6)  # (2, out, H-k+1, W-k+1)
            try:
                got = conv(x)
            except Exception as e:  # noqa: BLE001
                return report(name, False, f"calling your conv on [2, {c}, {k + 3}, {k + 5}] raised "
                                           f"{type(e).__name__}: {e}")
        if got.shape != ref.shape:
            return report(name, False,
                          f"expected an output of shape {tuple(ref.shape)}, got {tuple(got.shape)}")
        worst = max(worst, float((got - ref).abs().max()))
    return report(name, worst <= 1e-5,
                  f"{n_cases} layers slid over every patch, max |error| = {worst:.2g} (tolerance 1e-5)")


def check_receptive_field(fn: Callable) -> bool:
    """Exercise (FCN chapter): ``fn(layers) -> int``, the receptive field of a stack of
    ``(kernel, stride)`` layers. Checked against `cvcourse.models.receptive_field` on
    stacks with and without downsampling."""
    from ..models.receptive_field import receptive_field

    name = "receptive_field"
    cases = [[(3, 1)], [(3, 1), (3, 1)], [(2, 2), (3, 1)], [(3, 1), (2, 2), (3, 1), (2, 2), (3, 1)],
             [(7, 2), (3, 2), (3, 1), (3, 1)], [(5, 1), (5, 1), (3, 1), (7, 1)], [(1, 1)],
             [(3, 1), (3, 1), (2, 2)] * 4]
    wrong = []
    for layers in cases:
        got, err = call_solution(name, fn, list(layers))
        if err:
            return report(name, False, err)
        if got != receptive_field(layers):
            wrong.append(f"{layers}: expected {receptive_field(layers)}, got {got}")
    if wrong:
        return report(name, False, f"{len(wrong)} of {len(cases)} stacks wrong, e.g. {wrong[0]}")
    return report(name, True, f"{len(cases)} stacks, all receptive fields exact (tolerance 0)")


def check_bed_of_nails(fn: Callable) -> bool:
    """Exercise (upsampling chapter): ``fn(x [N, C, H, W], s) -> [N, C, H*s, W*s]`` with each
    value at the top-left of its s x s block and zeros elsewhere. Checked against
    `cvcourse.ops.upsample.bed_of_nails`."""
    from ..ops.upsample import bed_of_nails

    name = "bed_of_nails"
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for s in (1, 2, 3, 4):
        x = torch.randn(2, 3, 4, 5, generator=g)
        got, err = call_solution(name, fn, x.clone(), s)
        if err:
            return report(name, False, err)
        ref = bed_of_nails(x, s)
        got = torch.as_tensor(got)
        if got.shape != ref.shape:
            return report(name, False, f"scale {s}: expected shape {tuple(ref.shape)}, got {tuple(got.shape)}")
        worst = max(worst, float((got - ref).abs().max()))
    return report(name, worst == 0, f"scales 1-4, max |error| = {worst:.2g} (tolerance 0)")


def check_conv_transpose_scatter(fn: Callable) -> bool:
    """Exercise (upsampling chapter): ``fn(x [H, W], weight [k, k], stride) -> [(H-1)*stride+k,
    (W-1)*stride+k]``, a transposed convolution written as scatter-add: every input value
    adds ``x[i, j] * weight`` into the output at ``(i*stride, j*stride)``. Checked against
    ``F.conv_transpose2d``, including kernels smaller than the stride."""
    import torch.nn.functional as F

    name = "conv_transpose_scatter"
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    cases = [(3, 3, 3, 2), (4, 5, 4, 2), (3, 4, 2, 3), (2, 2, 3, 1), (5, 3, 1, 2)]  # H, W, k, stride
    for h, w, k, s in cases:
        x = torch.randn(h, w, generator=g, dtype=torch.float64)
        weight = torch.randn(k, k, generator=g, dtype=torch.float64)
        got, err = call_solution(name, fn, x.clone(), weight.clone(), s)
        if err:
            return report(name, False, err)
        ref = F.conv_transpose2d(x[None, None], weight[None, None], stride=s)[0, 0]
        got = torch.as_tensor(got, dtype=torch.float64)
        if got.shape != ref.shape:
            return report(name, False, f"H={h}, W={w}, k={k}, stride={s}: expected shape {tuple(ref.shape)}, "
                                       f"got {tuple(got.shape)}")
        worst = max(worst, float((got - ref).abs().max()))
    return report(name, worst <= 1e-10, f"{len(cases)} cases vs F.conv_transpose2d, max |error| = {worst:.2g} "
                                       f"(tolerance 1e-10)")


def check_skip_concat(fn: Callable) -> bool:
    """Exercise (U-Net chapter): ``fn(skip [B, C1, H1, W1], x [B, C2, H2, W2]) ->
    [B, C1 + C2, H2, W2]``: the encoder's `skip` centre-cropped to x's size (the original
    U-Net's unpadded convolutions shrink the decoder's maps; top/left offset
    ``(H1 - H2) // 2``), then concatenated with `x` along channels, skip first."""
    name = "skip_concat"
    g = torch.Generator().manual_seed(0)
    cases = [((2, 4, 16, 16), (2, 8, 16, 16)), ((1, 3, 64, 64), (1, 5, 56, 56)),
             ((2, 2, 17, 20), (2, 3, 12, 13))]
    for skip_shape, x_shape in cases:
        skip, x = torch.randn(skip_shape, generator=g), torch.randn(x_shape, generator=g)
        got, err = call_solution(name, fn, skip.clone(), x.clone())
        if err:
            return report(name, False, err)
        (h1, w1), (h2, w2) = skip_shape[2:], x_shape[2:]
        top, left = (h1 - h2) // 2, (w1 - w2) // 2
        ref = torch.cat([skip[:, :, top:top + h2, left:left + w2], x], dim=1)
        got = torch.as_tensor(got)
        if got.shape != ref.shape:
            return report(name, False, f"skip {list(skip_shape)} + x {list(x_shape)}: expected shape "
                                       f"{list(ref.shape)}, got {list(got.shape)}")
        if not torch.equal(got, ref):
            diff = float((got - ref).abs().max())
            return report(name, False, f"skip {list(skip_shape)} + x {list(x_shape)}: values differ by up to "
                                       f"{diff:.3g} (check the crop offsets and the channel order)")
    return report(name, True, f"{len(cases)} cases, crops and channel order exact (tolerance 0)")
