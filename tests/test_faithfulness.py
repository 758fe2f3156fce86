"""Faithfulness tests: occlusion = a brute-force loop = captum's Occlusion; deletion and
insertion curves on a model whose output is a known function of the pixels; a perfect map
beats a random one; bad input gets a clear error."""

import pytest
import torch
from torch import nn

from cvcourse.interpret import auc, blurred, deletion_curve, insertion_curve, occlusion_map
from cvcourse.models import ShapeClassifier

pytestmark = pytest.mark.usefixtures("one_thread")


class Linear(nn.Module):
    """Two-class logits ``(0, w · x)``: the class-1 logit is a known linear function of the pixels."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        s = (x * self.w).flatten(1).sum(1)                    # (B,)
        return torch.stack([torch.zeros_like(s), s], 1)      # (B, 2)


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return ShapeClassifier(num_classes=3, width=4).double().eval()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 24, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


@pytest.mark.parametrize("window, stride", [(8, 4), (6, 5), (5, 5)])
def test_occlusion_equals_a_loop_and_captum(classifier, images, window, stride):
    from captum.attr import Occlusion

    targets = torch.tensor([0, 1, 2])
    base = blurred(images, 3.0)
    ours = occlusion_map(classifier, images, targets, window, stride, base, batch_size=7)     # (B, H, W)
    theirs = Occlusion(classifier).attribute(images, sliding_window_shapes=(3, window, window),
                                             strides=(3, stride, stride), baselines=base, target=targets)
    assert torch.allclose(ours, theirs[:, 0].double(), atol=1e-5) and torch.equal(theirs[:, 0], theirs[:, 2])
    # brute force: every window position, one image at a time
    H, W = images.shape[-2:]
    total, count = torch.zeros_like(ours), torch.zeros(H, W, dtype=torch.float64)
    with torch.no_grad():
        clean = classifier(images).gather(1, targets[:, None])[:, 0]
        for y in range(0, H - window + stride, stride):
            for x in range(0, W - window + stride, stride):
                occluded = images.clone()
                occluded[..., y:y + window, x:x + window] = base[..., y:y + window, x:x + window]
                drop = clean - classifier(occluded).gather(1, targets[:, None])[:, 0]
                total[:, y:y + window, x:x + window] += drop[:, None, None]
                count[y:y + window, x:x + window] += 1
    assert torch.allclose(ours, total / count, atol=1e-10)


def test_occlusion_of_a_linear_model_is_the_window_mean_of_w_times_x():
    w = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    # window 1: each pixel's drop is exactly its contribution w·x (baseline 0)
    assert torch.allclose(occlusion_map(Linear(w), x, 1, window=1, stride=1), (w * x)[:, 0])


def test_deletion_and_insertion_of_a_linear_model_give_the_known_curve():
    w = torch.arange(16, dtype=torch.float64).view(1, 1, 4, 4) / 10       # pixel k adds 0.1·k to the logit
    x = torch.ones(1, 1, 4, 4, dtype=torch.float64)
    model, maps = Linear(w), w[:, 0].clone()                              # the true contributions
    steps = 4                                                              # 4 pixels per step
    # remove the 4 largest first: the logit after step k is the sum of the 16 - 4k smallest weights
    logit = torch.tensor([sum(range(16 - 4 * k)) / 10 for k in range(steps + 1)], dtype=torch.float64)
    deletion = deletion_curve(model, x, 1, maps, baseline=0.0, steps=steps)
    assert torch.allclose(deletion[0], torch.sigmoid(logit))              # softmax of (0, s) = sigmoid(s)
    inserted = torch.tensor([sum(range(16 - 4 * k, 16)) / 10 for k in range(steps + 1)], dtype=torch.float64)
    insertion = insertion_curve(model, x, 1, maps, baseline=0.0, steps=steps)
    assert torch.allclose(insertion[0], torch.sigmoid(inserted))
    assert insertion[0, 0] == 0.5 and deletion[0, -1] == 0.5               # all pixels at the baseline
    # the AUC is the trapezoidal rule over [0, 1]
    p = torch.sigmoid(logit)
    expected = ((p[1:] + p[:-1]) / 2).mean()
    assert torch.isclose(auc(deletion)[0], expected)
    assert torch.isclose(auc(torch.tensor([[0.0, 1.0], [1.0, 1.0]])), torch.tensor([0.5, 1.0])).all()


def test_a_perfect_map_beats_a_random_map():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(4, 1, 16, 16, generator=g, dtype=torch.float64).mean(0, keepdim=True) * 3
    x = torch.rand(8, 1, 16, 16, generator=g, dtype=torch.float64)
    model = Linear(w)
    perfect = (w * x)[:, 0]                                  # each pixel's true contribution
    random = torch.rand(8, 16, 16, generator=g, dtype=torch.float64)
    d_perfect, d_random = (auc(deletion_curve(model, x, 1, m, steps=16)) for m in (perfect, random))
    i_perfect, i_random = (auc(insertion_curve(model, x, 1, m, steps=16)) for m in (perfect, random))
    assert (d_perfect < d_random).all() and (i_perfect > i_random).all()
    # occlusion with a one-pixel window recovers the perfect map
    assert torch.allclose(occlusion_map(model, x, 1, window=1, stride=1), perfect)


def test_blurred_erases_detail_and_keeps_the_mean():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    b = blurred(x, 4.0)
    assert b.shape == x.shape and b.std() < 0.3 * x.std()
    assert torch.allclose(b.mean((2, 3)), x.mean((2, 3)), atol=0.02)
    assert blurred(x, 100.0).shape == x.shape                 # a kernel wider than the image is cut to fit


def test_bad_input_gets_a_clear_error(classifier, images):
    maps = torch.rand(3, 24, 32, dtype=torch.float64)
    for kwargs, match in (({"window": 0}, "window must be an int >= 1"), ({"window": 25}, "window must be <="),
                          ({"window": 4, "stride": 5}, "stride <= window"), ({"stride": 1.5}, "stride must be"),
                          ({"baseline": torch.zeros(5)}, "baseline must be"), ({"batch_size": 0}, "batch_size")):
        with pytest.raises(ValueError, match=match):
            occlusion_map(classifier, images, 0, **kwargs)
    for curve in (deletion_curve, insertion_curve):
        for bad_maps in (maps[:2], maps[..., :-1], maps.numpy(), maps.clone().fill_(float("nan"))):
            with pytest.raises(ValueError, match="maps must be"):
                curve(classifier, images, 0, bad_maps)
        for steps in (0, 2.5, True):
            with pytest.raises(ValueError, match="steps must be"):
                curve(classifier, images, 0, maps, steps=steps)
        with pytest.raises(ValueError, match="targets must be class indices in 0..2"):
            curve(classifier, images, [0, 1, 5], maps)
        with pytest.raises(ValueError, match="images must be"):
            curve(classifier, images[0], 0, maps)
    with pytest.raises(ValueError, match="curves must be"):
        auc(torch.ones(3, 1))
    with pytest.raises(ValueError, match="sigma must be"):
        blurred(images, 0)


def test_faithfulness_figure_draws_both_tests_with_their_auc():
    from matplotlib.figure import Figure

    from cvcourse.widgets.interpret import faithfulness_figure

    d = torch.tensor([[1.0, 0.5, 0.0], [1.0, 0.7, 0.2]])
    fig = faithfulness_figure({"map": (d, d.flip(1))}, title="t")
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == [f"map (AUC {auc(d).mean():.2f})"] and labels[0] == "map (AUC 0.57)"   # (0.5 + 0.65) / 2
    with pytest.raises(ValueError, match="curves must hold"):
        faithfulness_figure({})
