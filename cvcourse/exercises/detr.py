"""Checkers for the DETR chapter: the matching cost and the one-to-one assignment."""

from __future__ import annotations

from typing import Callable

import torch

from ._core import call_solution, report

__all__ = ["check_matching_cost", "check_set_matching"]


def _random_case(g: torch.Generator, Q: int, N: int, K: int = 4):
    logits = torch.randn(Q, K, generator=g) * 2
    def boxes(n):
        centre = torch.rand(n, 2, generator=g) * 0.6 + 0.2
        return torch.cat([centre, torch.rand(n, 2, generator=g) * 0.35 + 0.02], 1)  # cxcywh in [0, 1]
    return logits, boxes(Q), torch.randint(1, K, (N,), generator=g), boxes(N)


def check_matching_cost(fn: Callable) -> bool:
    """Exercise: ``fn(pred_logits [Q, K], pred_boxes [Q, 4], tgt_labels [N], tgt_boxes [N, 4],
    cost_class, cost_bbox, cost_giou) -> [Q, N]``, DETR's matching cost of every (query,
    object) pair for one image, boxes normalized cxcywh:
    ``-cost_class * softmax(logits)[q, label_j] + cost_bbox * L1(b_q, b_j)
    - cost_giou * GIoU(b_q, b_j)``. Checked against `HungarianMatcher.cost_matrix`."""
    from ..ops.hungarian import HungarianMatcher

    name = "matching_cost"
    g = torch.Generator().manual_seed(0)
    cases = [(Q, N, w) for Q, N in ((5, 2), (10, 3), (4, 4), (7, 1), (3, 0))
             for w in ((1.0, 5.0, 2.0), (2.0, 1.0, 0.0), (0.0, 0.0, 1.0))]
    worst = 0.0
    for Q, N, (wc, wb, wg) in cases:
        logits, boxes, labels, tgt = _random_case(g, Q, N)
        got, err = call_solution(name, fn, logits.clone(), boxes.clone(), labels.clone(), tgt.clone(), wc, wb, wg)
        if err:
            return report(name, False, err)
        got = torch.as_tensor(got, dtype=torch.float32)
        ref = HungarianMatcher(wc, wb, wg).cost_matrix(
            {"pred_logits": logits[None], "pred_boxes": boxes[None]}, [{"labels": labels, "boxes": tgt}])[0]
        if got.shape != ref.shape:
            return report(name, False, f"Q={Q}, N={N}: expected shape {tuple(ref.shape)} (queries x "
                                       f"objects), got {tuple(got.shape)}")
        if N:
            worst = max(worst, float((got - ref).abs().max()))
    return report(name, worst <= 1e-5, f"{len(cases)} cases (Q up to 10, N = 0..4, three weightings), "
                                       f"max |error| = {worst:.2g} (tolerance 1e-5)")


def check_set_matching(fn: Callable) -> bool:
    """Exercise: ``fn(cost [Q, N]) -> (query_indices [N], object_indices [N])`` a one-to-one
    assignment of the N objects to N of the Q >= N queries with the smallest total cost
    (brute force over permutations is fine for these sizes). Checked against
    ``scipy.optimize.linear_sum_assignment``: same total cost, every object matched once."""
    from scipy.optimize import linear_sum_assignment

    name = "set_matching"
    g = torch.Generator().manual_seed(1)
    cases = [torch.rand(Q, N, generator=g) * 4 - 2 for Q, N in ((4, 2), (5, 3), (3, 3), (6, 1), (6, 4))]
    cases.append(torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 5.0]]))        # ties
    cases.append(torch.zeros(4, 0))                                         # no objects
    for cost in cases:
        got, err = call_solution(name, fn, cost.clone())
        if err:
            return report(name, False, err)
        try:
            rows, cols = (torch.as_tensor(x, dtype=torch.int64).flatten() for x in got)
        except (TypeError, ValueError):
            return report(name, False, "return two sequences of indices: (query_indices, object_indices)")
        Q, N = cost.shape
        if len(rows) != N or len(cols) != N:
            return report(name, False, f"cost [{Q}, {N}]: expected {N} pairs, got {len(rows)} and {len(cols)} indices")
        if N and (sorted(cols.tolist()) != list(range(N)) or len(set(rows.tolist())) != N
                  or rows.min() < 0 or rows.max() >= Q):
            return report(name, False, f"cost [{Q}, {N}]: not one-to-one: queries {rows.tolist()}, "
                                       f"objects {cols.tolist()} (each object once, each query at most once)")
        r, c = linear_sum_assignment(cost.numpy())
        best = float(cost[r, c].sum())
        total = float(cost[rows, cols].sum()) if N else 0.0
        if total > best + 1e-6:
            return report(name, False, f"cost [{Q}, {N}]: your assignment costs {total:.4f}, "
                                       f"the best one {best:.4f}")
    return report(name, True, f"{len(cases)} cost matrices (ties and N = 0 included): every "
                              f"assignment one-to-one and of minimum total cost (tolerance 1e-6)")
