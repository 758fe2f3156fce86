"""Checkers for the chapter "Seeing inside a Vision Transformer"."""

from __future__ import annotations

from typing import Callable

import torch

from ._core import call_solution, max_error, report

__all__ = ["check_patchify", "check_attention_rollout", "random_attentions"]


def random_attentions(layers: int, batch: int, heads: int, grid: int, generator=None,
                      dtype=torch.float64) -> torch.Tensor:
    """Random attention weights ``[layers, batch, heads, T, T]`` with ``T = 1 + grid²``,
    each row a softmax (positive, sums to 1) — test input for rollout."""
    t = 1 + grid * grid
    scores = 3 * torch.randn(layers, batch, heads, t, t, generator=generator, dtype=dtype)
    return scores.softmax(-1)


def check_patchify(fn: Callable, n_cases: int = 4) -> bool:
    """Exercise: ``fn(images [B, C, H, W], p) -> [B, (H/p)(W/p), C·p·p]``, the patches in
    row-major order, each flattened channel-first (the order ``Conv2d(kernel=stride=p)``
    weights use). Checked against `cvcourse.models.vit.patchify`, exactly."""
    from ..models.vit import patchify

    name = "patchify"
    g = torch.Generator().manual_seed(0)
    for case in range(n_cases):
        p = (2, 4, 8, 4)[case % 4]
        b, c, gh, gw = 1 + case % 2, (3, 1, 3, 2)[case % 4], 2 + case, 3 + case % 2
        x = torch.randn(b, c, gh * p, gw * p, generator=g)
        out, err = call_solution(name, fn, x.clone(), p)
        if err:
            return report(name, False, err)
        ref = patchify(x, p)
        out = torch.as_tensor(out)
        if out.shape != ref.shape:
            return report(name, False, f"images {tuple(x.shape)}, p={p}: expected shape "
                                       f"{tuple(ref.shape)}, got {tuple(out.shape)}")
        if not torch.equal(out.to(ref.dtype), ref):
            return report(name, False, f"images {tuple(x.shape)}, p={p}: right shape, wrong order "
                                       "(patches row-major; inside a patch: channel, row, column)")
    return report(name, True, f"{n_cases} cases equal the reference exactly")


def check_attention_rollout(fn: Callable, n_cases: int = 5) -> bool:
    """Exercise: ``fn(attentions [L, B, heads, T, T]) -> [B, h, w]``, attention rollout with
    heads averaged and the residual mixed in (``0.5·A + 0.5·I``, rows renormalised), the
    product over layers read at the CLS row without its CLS entry, on the ``h × w`` grid.
    Checked against `cvcourse.interpret.attention.attention_rollout` on random attentions
    (float64, relative error < 1e-6)."""
    from ..interpret.attention import attention_rollout

    name = "attention_rollout"
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for case in range(n_cases):
        a = random_attentions(1 + case % 4, 2, 1 + case % 3, 2 + case % 3, generator=g)
        problem, error = max_error(name, fn, (a.clone(),), attention_rollout(a), f"attentions {tuple(a.shape)}: ",
                                    dtype=torch.float64, relative=True)
        if problem:
            return report(name, False, problem)
        worst = max(worst, error)
    return report(name, worst < 1e-6, f"{n_cases} cases, max relative error {worst:.2g} (tolerance 1e-6)")
