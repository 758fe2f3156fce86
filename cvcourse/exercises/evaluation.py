"""Checkers for the chapter on evaluating detectors."""

from __future__ import annotations

from typing import Callable

import torch

from ._core import call_solution, report

__all__: list[str] = ["check_average_precision"]


def _ap_cases(n_cases: int) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """(scores [D], is_tp [D] bool, n_gt) in shuffled order: random ones, then edge cases
    (all right, all wrong, one detection, objects never found)."""
    g = torch.Generator().manual_seed(0)
    cases = []
    for i in range(n_cases):
        d = 5 + 7 * i
        scores = torch.rand(d, generator=g, dtype=torch.float64)   # distinct: no ties
        is_tp = torch.rand(d, generator=g) < 0.3 + 0.5 * scores.float()  # good scores hit more
        cases.append((scores, is_tp, int(is_tp.sum()) + i % 3))     # some objects missed
    cases += [(torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64), torch.tensor([True, True, True]), 3),
              (torch.tensor([0.9, 0.3], dtype=torch.float64), torch.tensor([False, False]), 2),
              (torch.tensor([0.5], dtype=torch.float64), torch.tensor([True]), 4),
              (torch.tensor([0.2, 0.9, 0.6, 0.4], dtype=torch.float64),
               torch.tensor([True, False, True, True]), 5)]
    return cases


def check_average_precision(fn: Callable, n_cases: int = 6) -> bool:
    """Exercise (evaluation chapter): ``fn(scores [D], is_tp [D] bool, n_gt) -> float``, the
    all-point (VOC2010+) AP of detections that were already matched to the ground truth:
    sorted by decreasing score, precision and recall after each one, precision made
    non-increasing, area under the steps. Checked against `cvcourse.metrics.precision_recall`
    and `average_precision(method="voc_all")` on shuffled random cases and edge cases."""
    from ..metrics.ap import average_precision, precision_recall

    name = "average_precision"
    worst, wrong = 0.0, []
    cases = _ap_cases(n_cases)
    for scores, is_tp, n_gt in cases:
        got, err = call_solution(name, fn, scores.clone(), is_tp.clone(), n_gt)
        if err:
            return report(name, False, err)
        try:
            got = float(got)
        except (TypeError, ValueError):
            return report(name, False, f"expected a float, got {type(got).__name__}")
        precision, recall = precision_recall(scores, is_tp, n_gt)
        ref = average_precision(recall, precision, "voc_all")
        error = abs(got - ref)
        worst = max(worst, error)
        if error > 1e-9:
            wrong.append(f"{len(scores)} detections, {int(is_tp.sum())} right, {n_gt} objects: "
                         f"expected {ref:.6f}, got {got:.6f}")
    if wrong:
        return report(name, False, f"{len(wrong)} of {len(cases)} cases wrong, e.g. {wrong[0]}")
    return report(name, True, f"{len(cases)} cases (shuffled scores, all right, all wrong, missed "
                              f"objects), max |error| = {worst:.2g} (tolerance 1e-9)")
