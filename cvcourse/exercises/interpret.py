"""Checkers for the interpret chapters (filters, saliency, CAM / Grad-CAM, guided backprop,
evaluation)."""

from __future__ import annotations

from typing import Callable

import torch

from ._core import call_solution, max_error, report

__all__: list[str] = ["check_filter_images", "check_saliency_map", "check_grad_cam_map", "check_guided_relu_backward",
                      "check_spearman_correlation"]


def _small_classifier(seed: int = 0):
    """A small `ShapeClassifier` with random weights and non-trivial BatchNorm statistics."""
    from ..models.classifier import ShapeClassifier

    with torch.random.fork_rng():  # leave the caller's random stream alone
        torch.manual_seed(seed)
        model = ShapeClassifier(width=4)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.num_features, generator=g))
    return model.eval()


def check_filter_images(fn: Callable) -> bool:
    """Exercise (filters chapter): ``fn(weight [K, 3, k, k]) -> [K, k, k, 3]`` RGB images in
    [0, 1]: each filter scaled on its own so that 0 is grey 0.5 and its largest |weight|
    reaches 0 or 1. Checked against `cvcourse.interpret.filter_images`."""
    from ..interpret import filter_images

    name = "filter_images"
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for k, n in ((3, 16), (5, 4), (7, 2)):
        w = torch.randn(n, 3, k, k, generator=g) * torch.rand(n, 1, 1, 1, generator=g)
        problem, error = max_error(name, fn, (w.clone(),), filter_images(w),
                                    f"{n} filters of 3x{k}x{k} (channels last, for imshow): ")
        if problem:
            return report(name, False, problem)
        worst = max(worst, error)
    return report(name, worst <= 1e-6, f"3 filter banks, max |error| = {worst:.2g} (tolerance 1e-6)")


def check_saliency_map(fn: Callable) -> bool:
    """Exercise (saliency chapter): ``fn(model, images [B, 3, H, W], targets [B]) -> [B, H, W]``,
    the max over colour channels of |d score_target / d pixel|, with the model in eval mode.
    Checked against `cvcourse.interpret.saliency` on a small random classifier."""
    from ..interpret import saliency

    name = "saliency_map"
    model = _small_classifier()
    g = torch.Generator().manual_seed(1)
    images, targets = torch.rand(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 2, 0])
    ref = saliency(model, images, targets)
    got, err = call_solution(name, fn, model, images.clone(), targets.clone())
    model.eval()
    if err:
        return report(name, False, err)
    got = torch.as_tensor(got).detach().float()
    if got.shape != ref.shape:
        return report(name, False, f"expected shape {tuple(ref.shape)}, got {tuple(got.shape)}")
    rel = float((got - ref).abs().max() / ref.abs().max())
    return report(name, rel <= 1e-5, f"4 images, max relative error = {rel:.2g} (tolerance 1e-5)")


def check_grad_cam_map(fn: Callable) -> bool:
    """Exercise (CAM chapter): ``fn(activations [B, K, h, w], gradients [B, K, h, w]) ->
    [B, h, w]``: channel weights = spatial mean of the gradients, then the ReLU of the
    weighted sum of the activations. Checked against `cvcourse.interpret.grad_cam_from`."""
    from ..interpret import grad_cam_from

    name = "grad_cam_map"
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for b, k, h, w in ((2, 8, 4, 4), (3, 16, 8, 6), (1, 5, 16, 16)):
        a = torch.relu(torch.randn(b, k, h, w, generator=g, dtype=torch.float64))
        grad = torch.randn(b, k, h, w, generator=g, dtype=torch.float64)
        got, err = call_solution(name, fn, a.clone(), grad.clone())
        if err:
            return report(name, False, err)
        ref = grad_cam_from(a, grad)
        got = torch.as_tensor(got, dtype=torch.float64)
        if got.shape != ref.shape:
            return report(name, False, f"expected shape {tuple(ref.shape)}, got {tuple(got.shape)}")
        if got.min() < 0:
            return report(name, False, "your map has negative values: Grad-CAM ends with a ReLU")
        worst = max(worst, float((got - ref).abs().max()))
    return report(name, worst <= 1e-10, f"3 cases, max |error| = {worst:.2g} (tolerance 1e-10)")


def check_guided_relu_backward(fn: Callable) -> bool:
    """Exercise (guided backprop chapter): ``fn(x, grad_output) -> grad_input`` for one ReLU
    ``y = max(x, 0)`` under guided backprop: the gradient passes only where the forward
    input was positive *and* the incoming gradient is positive."""
    name = "guided_relu_backward"
    g = torch.Generator().manual_seed(0)
    x, grad_out = torch.randn(3, 4, 5, 5, generator=g), torch.randn(3, 4, 5, 5, generator=g)
    got, err = call_solution(name, fn, x.clone(), grad_out.clone())
    if err:
        return report(name, False, err)
    got = torch.as_tensor(got)
    ref = grad_out * (x > 0) * (grad_out > 0)
    if got.shape != ref.shape:
        return report(name, False, f"expected shape {tuple(ref.shape)}, got {tuple(got.shape)}")
    if torch.equal(got, grad_out * (x > 0)):
        return report(name, False, "this is the plain ReLU backward: negative gradients must be dropped too")
    wrong = int((got != ref).sum())
    return report(name, wrong == 0, f"{ref.numel()} values, {wrong} wrong (tolerance 0)")


def check_spearman_correlation(fn: Callable) -> bool:
    """Exercise (evaluation chapter): ``fn(a [N], b [N]) -> float``, Spearman's rank
    correlation: the Pearson correlation of the ranks, tied values sharing their average
    rank. Checked against ``scipy.stats.spearmanr``, with and without ties."""
    from scipy import stats

    name = "spearman_correlation"
    g = torch.Generator().manual_seed(0)
    cases = [(torch.rand(50, generator=g), torch.rand(50, generator=g)),
             (torch.arange(20.0), torch.arange(20.0) ** 3)]
    ties = torch.randint(0, 5, (60,), generator=g).float()                      # many ties
    cases += [(ties, ties + torch.randint(0, 3, (60,), generator=g).float()),
              (cases[0][0], cases[0][0] + 0.3 * cases[0][1])]
    worst = 0.0
    for a, b in cases:
        got, err = call_solution(name, fn, a.clone(), b.clone())
        if err:
            return report(name, False, err)
        ref = stats.spearmanr(a.numpy(), b.numpy()).statistic
        worst = max(worst, abs(float(got) - float(ref)))
    detail = (f"{len(cases)} pairs (one with many ties) vs scipy.stats.spearmanr, max |error| = {worst:.2g} "
              "(tolerance 1e-6)")
    if worst > 1e-6 and worst < 0.2:
        detail += " — are tied values given their average rank?"
    return report(name, worst <= 1e-6, detail)
