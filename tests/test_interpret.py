"""Interpretability methods against trusted implementations (captum, pytorch-grad-cam, an
independent hook-based Grad-CAM, scipy), the CAM = Grad-CAM identity, the model left as it
was found, evaluation functions on hand-made cases, and clear errors on bad input."""

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from cvcourse.interpret import (
    activations_and_gradients,
    cascade_layers,
    cascading_randomization,
    class_activation_map,
    explanation_methods,
    grad_cam,
    grad_cam_from,
    guided_backprop,
    input_gradient,
    normalize,
    pointing_game,
    randomization_test,
    rank,
    saliency,
    spearman,
    strongest_units,
    upsample,
)
from cvcourse.models import ShapeClassifier

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ["features.1", "features.3", "features.4", "features.6", "features.7"]


def _trained_like(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights plus random BatchNorm statistics and affine parameters, so that
    every BN does something (a fresh BN in eval mode is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn(m.num_features, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
                m.bias.copy_(0.3 * torch.randn(m.num_features, generator=g))
    return model.eval()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return _trained_like(ShapeClassifier(num_classes=3, width=4)).double()


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(4, 3, 24, 32, generator=g, dtype=torch.float64)  # non-square: catches H/W swaps
    return images, torch.tensor([0, 1, 2, 1])


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(getattr(m, "_backward_pre_hooks", {})) for m in model.modules())


# ------------------------------------------------------------------- against captum
@pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")
def test_saliency_and_input_gradient_equal_captum(model, batch):
    from captum.attr import Saliency

    images, targets = batch
    ours = saliency(model, images, targets)
    theirs = Saliency(model).attribute(images.clone(), target=targets, abs=True)
    assert ours.shape == (4, 24, 32)
    torch.testing.assert_close(ours, theirs.amax(1), rtol=1e-10, atol=1e-12)
    signed = Saliency(model).attribute(images.clone(), target=targets, abs=False)
    torch.testing.assert_close(input_gradient(model, images, targets), signed, rtol=1e-10, atol=1e-12)


def test_guided_backprop_equals_captum_and_differs_from_the_gradient(model, batch):
    from captum.attr import GuidedBackprop

    images, targets = batch
    ours = guided_backprop(model, images, targets)
    with pytest.warns(UserWarning):  # captum warns that it sets hooks on the ReLUs
        theirs = GuidedBackprop(model).attribute(images.clone(), target=targets)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    plain = input_gradient(model, images, targets)
    assert (ours - plain).abs().max() > 0.1 * plain.abs().max()  # the guide changes the result


def test_guided_backprop_rule_on_one_relu():
    """d/dx through ReLU with guidance = [x > 0] [g > 0] g, written out by hand."""
    relu_net = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2, bias=False))
    with torch.no_grad():
        relu_net[0].weight.fill_(1.0)
        relu_net[3].weight.copy_(torch.tensor([[1.0, -2.0, 3.0, -4.0], [0.0, 0.0, 0.0, 0.0]]))
    x = torch.tensor([[[[1.0, 2.0], [-1.0, -2.0]]]])
    g = guided_backprop(relu_net, x, 0)
    # upstream gradient of the ReLU outputs: [1, -2, 3, -4]; on: [1, 1, 0, 0]; positive: [1, 0, 1, 0]
    torch.testing.assert_close(g, torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]]))
    torch.testing.assert_close(input_gradient(relu_net, x, 0), torch.tensor([[[[1.0, -2.0], [0.0, 0.0]]]]))


# ------------------------------------------------------------------------- Grad-CAM
def _grad_cam_by_hand(model, layer: nn.Module, images, targets):
    """An independent Grad-CAM: a forward hook keeps the output, a *tensor* hook its
    gradient, and ``backward()`` runs on a copy of the model without in-place ReLUs."""
    import copy

    net = copy.deepcopy(model)
    for m in net.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    name = {m: n for n, m in model.named_modules()}[layer]
    store = {}

    def hook(module, inp, out):
        store["a"] = out
        out.register_hook(lambda g: store.__setitem__("g", g))

    handle = net.get_submodule(name).register_forward_hook(hook)
    logits = net(images)
    logits[torch.arange(len(images)), targets].sum().backward()
    handle.remove()
    a, g = store["a"].detach(), store["g"]
    weights = g.sum((2, 3)) / (g.shape[2] * g.shape[3])
    return torch.relu((weights[:, :, None, None] * a).sum(1))


@pytest.mark.parametrize("layer", LAYERS)
def test_grad_cam_equals_an_independent_hook_computation(model, batch, layer):
    images, targets = batch
    ours = grad_cam(model, layer, images, targets, upsample=False)
    ref = _grad_cam_by_hand(model, model.get_submodule(layer), images, targets)
    assert ours.shape == ref.shape and ref.abs().max() > 0
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("layer", ["features.3", "features.7"])
def test_grad_cam_equals_pytorch_grad_cam(model, batch, layer):
    """pytorch-grad-cam: ReLU, min-max normalise, cv2 bilinear resize, normalise again."""
    import copy

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    images, targets = batch
    net = copy.deepcopy(model).float()
    x = images.float()
    with GradCAM(model=net, target_layers=[net.get_submodule(layer)]) as cam:
        theirs = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets]))
    ours = grad_cam(model, layer, images, targets, upsample=False)                  # (B, h, w) float64
    ours = normalize(upsample(normalize(ours), images.shape[-2:])).float()         # the same post-processing
    assert theirs.shape == ours.shape == (4, 24, 32)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=2e-5)


def test_grad_cam_from_matches_grad_cam_and_upsamples(model, batch):
    images, targets = batch
    a, g = activations_and_gradients(model, "features.4", images, targets)
    assert a.shape == g.shape == (4, 8, 12, 16)
    torch.testing.assert_close(grad_cam_from(a, g), grad_cam(model, "features.4", images, targets, upsample=False))
    signed = grad_cam_from(a, g, relu=False)
    assert signed.min() < 0 and torch.equal(signed.clamp(min=0), grad_cam_from(a, g))
    up = grad_cam(model, model.features[4], images, targets)
    assert up.shape == (4, 24, 32)


def test_cam_equals_grad_cam_at_the_last_layer_and_sums_to_the_logit(model, batch):
    """GAP + linear: dS_c/df_k(i,j) = w_kc / (hw), so alpha_k = w_kc / (hw) and
    Grad-CAM = ReLU(CAM) / (hw); and mean(CAM) + b_c = S_c."""
    import copy

    images, targets = batch
    model = copy.deepcopy(model)
    with torch.no_grad():  # shift the class weights so that the maps cross zero (the ReLU matters)
        f = model.features(images).mean((0, 2, 3))                                  # (K,)
        model.fc.weight -= (model.fc.weight @ f)[:, None] / f.sum()
    cam = class_activation_map(model, images, targets, upsample=False)               # (B, 6, 8)
    gc = grad_cam(model, "features.7", images, targets, upsample=False)
    hw = cam.shape[1] * cam.shape[2]
    assert cam.min() < 0 < cam.max()
    torch.testing.assert_close(gc, cam.clamp(min=0) / hw, rtol=1e-10, atol=1e-14)
    with torch.no_grad():
        logits = model(images)[torch.arange(4), targets]
    torch.testing.assert_close(cam.mean((1, 2)) + model.fc.bias[targets].detach(), logits)
    up = class_activation_map(model, images, targets)
    assert up.shape == (4, 24, 32)


def test_cam_refuses_a_model_that_is_not_gap_linear(model, batch):
    class MaxPooled(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.features, self.fc = inner.features, inner.fc

        def forward(self, x):
            return self.fc(self.features(x).amax((2, 3)))

    with pytest.raises(ValueError, match="GAP"):
        class_activation_map(MaxPooled(model), *batch)
    with pytest.raises(ValueError, match="must be an nn.Linear"):
        class_activation_map(model, *batch, classifier="features.7")


# ------------------------------------------------------------ the model as it was found
def _all_methods():
    return {**explanation_methods(),
            "input_gradient": input_gradient, "guided (raw)": guided_backprop,
            "grad-cam module": lambda m, x, t: grad_cam(m, m.features[3], x, t)}


@pytest.mark.parametrize("name", list(_all_methods()))
def test_methods_leave_the_model_unchanged(name, batch):
    torch.manual_seed(0)
    net = _trained_like(ShapeClassifier(width=4)).double().train()
    net.features[1].eval()                             # a mixed state must come back as it was
    net.fc.weight.requires_grad_(False)
    modes = [m.training for m in net.modules()]
    flags = [p.requires_grad for p in net.parameters()]
    state = {k: v.clone() for k, v in net.state_dict().items()}
    hooks = _hook_count(net)
    images, targets = batch
    with torch.no_grad():  # methods must work even when the caller disabled gradients
        maps = _all_methods()[name](net, images, targets)
    assert maps.shape[0] == 4 and torch.isfinite(maps).all()
    assert [m.training for m in net.modules()] == modes
    assert [p.requires_grad for p in net.parameters()] == flags
    assert all(p.grad is None for p in net.parameters())
    assert _hook_count(net) == hooks
    for k, v in net.state_dict().items():  # BN running statistics untouched (eval inside)
        assert torch.equal(v, state[k]), k


def test_model_restored_after_an_error(batch):
    net = _trained_like(ShapeClassifier(width=4)).double().train()
    hooks = _hook_count(net)
    for fn in (lambda: grad_cam(net, "features.7", batch[0], 3), lambda: guided_backprop(net, batch[0], 5),
               lambda: class_activation_map(net, batch[0], -1), lambda: saliency(net, batch[0], 7)):
        with pytest.raises(ValueError, match="targets must be class indices in 0..2"):
            fn()
        assert net.training and all(m.training for m in net.modules())
        assert _hook_count(net) == hooks


# ----------------------------------------------------------------------- bad input
def test_bad_layers_targets_and_images(model, batch):
    images, targets = batch
    with pytest.raises(ValueError, match="layer 'features.9' is not in the model"):
        grad_cam(model, "features.9", images, targets)
    with pytest.raises(ValueError, match="is not a submodule of the model"):
        grad_cam(model, nn.Conv2d(8, 8, 3), images, targets)
    with pytest.raises(TypeError, match="layer must be an nn.Module"):
        grad_cam(model, 7, images, targets)
    with pytest.raises(ValueError, match="ran 0 times"):
        grad_cam(_Unused(model), "spare", images, targets)
    with pytest.raises(ValueError, match=r"must output \[B, K, h, w\]"):
        grad_cam(model, "fc", images, targets)
    with pytest.raises(ValueError, match="targets must be class indices in 0..2, got \\[3\\]"):
        saliency(model, images, torch.tensor([0, 1, 3, 1]))
    with pytest.raises(ValueError, match="one per image"):
        saliency(model, images, [0, 1])
    with pytest.raises(ValueError, match="integer class indices"):
        saliency(model, images, torch.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"images must be a \[B, C, H, W\] batch"):
        saliency(model, images[0], 0)
    with pytest.raises(TypeError, match="images must be a torch.Tensor"):
        saliency(model, images.numpy(), 0)
    with pytest.raises(ValueError, match="floating point"):
        guided_backprop(model, (images * 255).to(torch.uint8), 0)
    with pytest.raises(ValueError, match="needs nn.ReLU modules"):
        guided_backprop(nn.Sequential(nn.Flatten(), nn.LazyLinear(2)), images.float(), 0)


class _Unused(nn.Module):
    """The model plus a layer that never runs."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.spare = inner, nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return self.inner(x)


def test_an_int_target_applies_to_every_image(model, batch):
    images, _ = batch
    torch.testing.assert_close(saliency(model, images, 2), saliency(model, images, [2, 2, 2, 2]))


@pytest.mark.gpu
def test_methods_on_cuda_match_cpu(batch, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)   # compare float32 with float32
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    torch.manual_seed(0)
    net = _trained_like(ShapeClassifier(width=4))
    images, targets = batch[0].float(), batch[1]
    for name, fn in _all_methods().items():
        cpu = fn(net, images, targets)
        gpu_model = net.cuda()
        on_gpu = fn(gpu_model, images, targets)                   # cpu images, model on cuda
        assert on_gpu.device.type == "cpu", name
        torch.testing.assert_close(on_gpu, cpu, rtol=1e-3, atol=1e-3 * float(cpu.abs().max()))
        assert fn(gpu_model, images.cuda(), targets.cuda()).device.type == "cuda", name
        net = gpu_model.cpu()
    r = randomization_test(net.cuda(), saliency, images.cuda(), targets, layers=["fc", "features.7"])
    assert r["features.7"].device.type == "cpu" and torch.isfinite(r["features.7"]).all()


# ----------------------------------------------------------------------- evaluation
def test_pointing_game_hand_made():
    maps = torch.zeros(4, 5, 5)
    masks = torch.zeros(4, 5, 5, dtype=torch.bool)
    masks[:, 1:3, 1:3] = True
    maps[0, 2, 2] = 1.0         # inside: hit
    maps[1, 4, 4] = 1.0         # outside: miss
    maps[2, 1, 1] = maps[2, 4, 0] = 1.0  # a tie, one of two maxima inside: 0.5
    # maps[3] is constant: every pixel is a maximum, score = mask area fraction 4/25
    torch.testing.assert_close(pointing_game(maps, masks), torch.tensor([1.0, 0.0, 0.5, 4 / 25]))
    near = torch.zeros(1, 5, 5)
    near[0, 3, 3] = 1.0         # one pixel diagonal from the mask's corner (2, 2)
    assert pointing_game(near, masks[:1]).item() == 0.0
    assert pointing_game(near, masks[:1], tolerance=1).item() == 1.0
    with pytest.raises(ValueError, match="bool tensor"):
        pointing_game(maps, masks.float())
    with pytest.raises(ValueError, match=r"maps must be \[B, H, W\]"):
        pointing_game(maps[0], masks[0])
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(maps, masks, tolerance=-1)


def test_rank_and_spearman_equal_scipy():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 6, (5, 40), generator=g).float()  # many ties
    b = a + torch.randint(0, 4, (5, 40), generator=g).float()
    c = torch.rand(5, 8, 5, generator=g)
    d = torch.rand(5, 8, 5, generator=g)
    for row in a:
        np.testing.assert_allclose(rank(row[None])[0].numpy(), stats.rankdata(row.numpy()))
    for x, y in ((a, b), (c, d)):
        ours = spearman(x, y)
        ref = [stats.spearmanr(u.flatten().numpy(), v.flatten().numpy()).statistic for u, v in zip(x, y)]
        np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-5, atol=1e-6)
    assert torch.isnan(spearman(torch.ones(1, 4), torch.rand(1, 4))).all()
    torch.testing.assert_close(spearman(c, c), torch.ones(5))
    torch.testing.assert_close(spearman(c, -c), -torch.ones(5))
    with pytest.raises(ValueError, match="one shape"):
        spearman(c, d[:, :4])


def test_cascade_layers_and_cascading_randomization(model, batch):
    assert cascade_layers(model) == ["fc", "features.7", "features.6", "features.4", "features.3", "features.1"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    for k, (name, net) in enumerate(cascading_randomization(model, seed=3)):
        seen.append(name)
        changed = {n for n in cascade_layers(model)
                   if not all(torch.equal(p, model.get_submodule(n).state_dict()[q])
                              for q, p in net.get_submodule(n).state_dict().items())}
        assert changed == set(cascade_layers(model)[:k + 1]), (name, changed)
    assert seen == cascade_layers(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the original untouched
    first = next(cascading_randomization(model, seed=3))[1].state_dict()
    again = next(cascading_randomization(model, seed=3))[1].state_dict()
    other = next(cascading_randomization(model, seed=4))[1].state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)  # reproducible
    assert not torch.equal(first["fc.weight"], other["fc.weight"])
    with pytest.raises(ValueError, match="not in the model"):
        next(cascading_randomization(model, ["nope"]))


def test_randomization_test_separates_model_dependent_and_independent_maps(model, batch):
    images, targets = batch
    edges = lambda m, x, t: (x[..., 1:, :] - x[..., :-1, :]).abs().amax(1)  # noqa: E731 ignores the model
    r = randomization_test(model, edges, images, targets)
    assert list(r) == ["trained", *cascade_layers(model)]
    assert all(torch.allclose(v, torch.ones(4)) for v in r.values())
    r = randomization_test(model, saliency, images, targets, layers=["fc", "features.7"])
    assert list(r) == ["trained", "fc", "features.7"]
    assert r["features.7"].abs().mean() < 0.9
    again = randomization_test(model, saliency, images, targets, layers=["fc", "features.7"],
                               reference=saliency(model, images, targets))
    assert all(torch.equal(again[k], r[k]) for k in r)


# ------------------------------------------------- guided backprop from one neuron
def _small_cnn() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 5, 3),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)).eval()


def _neuron_cases():
    from cvcourse import pretrained

    shipped = pretrained.load("classifier")
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    small = _small_cnn()
    small_images = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(4))
    cases = [(shipped, images, "features.1", 3), (shipped, images, "features.4", 7),
             (shipped, images, "features.6.0", 11), (shipped, images, "features.7", 2),
             (small, small_images, "1", 4), (small, small_images, "3", 0), (small, small_images, "6", 2)]
    return [(m, x, name, _strongest_unit(m, x, name, c)) for m, x, name, c in cases]


def _strongest_unit(model, images, name, c):
    """(c, y, x) of the largest activation of channel c in the first image: a unit that is on."""
    out = []
    handle = model.get_submodule(name).register_forward_hook(lambda m, i, o: out.append(o.detach().clone()))
    with torch.no_grad():
        model(images)
    handle.remove()
    w = out[0].shape[-1]
    i = int(out[0][0, c].argmax())
    return c, i // w, i % w


@pytest.mark.filterwarnings("ignore")
def test_neuron_guided_backprop_equals_captum():
    from captum.attr import NeuronGuidedBackprop

    for model, images, name, (c, y, x) in _neuron_cases():
        layer = model.get_submodule(name)
        theirs = NeuronGuidedBackprop(model, layer).attribute(images.clone(), neuron_selector=(c, y, x))
        assert theirs.abs().max() > 0, name  # the unit is on for some image: a real comparison
        ours = guided_backprop(model, images, layer=name, neuron=(c, y, x))
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
        by_module = guided_backprop(model, images, layer=layer, neuron=[c, y, x])
        torch.testing.assert_close(by_module, ours, rtol=0, atol=0)
        # the channel sum: captum with a selector that sums channel c over positions
        theirs = NeuronGuidedBackprop(model, layer).attribute(
            images.clone(), neuron_selector=lambda out, c=c: out[:, c].sum((1, 2)))
        torch.testing.assert_close(guided_backprop(model, images, layer=name, neuron=c), theirs, rtol=0, atol=1e-5)


def test_neuron_guided_backprop_is_zero_outside_the_receptive_field():
    """A unit after one 3x3 convolution depends on a 3x3 patch of the image only."""
    model = _small_cnn()
    images = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(5))
    c, y, x = _strongest_unit(model, images, "1", 2)
    g = guided_backprop(model, images, layer="1", neuron=(c, y, x))
    patch = (..., slice(max(y - 1, 0), y + 2), slice(max(x - 1, 0), x + 2))
    outside = g.clone()
    outside[patch] = 0
    assert outside.abs().max() == 0 and g[0][patch].abs().max() > 0


def test_neuron_guided_backprop_rejects_bad_arguments():
    model = _small_cnn()
    images = torch.rand(1, 3, 20, 24)
    bad = [
        (dict(layer="3", neuron=(8, 0, 0)), ValueError, "neuron .* out of range"),
        (dict(layer="3", neuron=(0, 10, 0)), ValueError, "neuron .* out of range"),
        (dict(layer="3", neuron=(0, 0, -1)), ValueError, "neuron .* out of range"),
        (dict(layer="3", neuron=8), ValueError, "neuron .* out of range"),
        (dict(layer="3", neuron=(0, 1)), ValueError, "neuron must have one index per axis"),
        (dict(layer="3", neuron=1.5), ValueError, "neuron must be a channel index"),
        (dict(layer="3", neuron=True), ValueError, "neuron must be a channel index"),
        (dict(layer="nope", neuron=0), ValueError, "layer 'nope' is not in the model"),
        (dict(layer=nn.Conv2d(3, 3, 1), neuron=0), ValueError, "layer Conv2d is not a submodule"),
        (dict(neuron=0), ValueError, "neuron needs layer"),
        (dict(layer="3"), ValueError, "layer needs neuron"),
        (dict(targets=1, layer="3", neuron=0), ValueError, "targets cannot be combined with neuron"),
        (dict(), ValueError, "targets is required"),
    ]
    hooks = _hook_count(model)
    for kwargs, error, match in bad:
        with pytest.raises(error, match=match):
            guided_backprop(model, images, **kwargs)
        assert _hook_count(model) == hooks, kwargs
    twice = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
    twice.forward = lambda x: twice[1](twice[0](twice[0](x)))
    with pytest.raises(ValueError, match="must run once per forward pass"):
        guided_backprop(twice, images, layer="0", neuron=0)


def test_strongest_units_picks_each_images_peak_and_its_guided_gradient():
    model = _small_cnn()
    images = torch.rand(3, 3, 20, 24, generator=torch.Generator().manual_seed(6))
    r = strongest_units(model, images, "3")
    for j in range(3):
        c, y, x = _strongest_unit(model, images[j:j + 1], "3", r["channel"])
        assert r["units"][j].tolist() == [c, y, x]
        torch.testing.assert_close(r["patterns"][j:j + 1],
                                   guided_backprop(model, images[j:j + 1], layer="3", neuron=(c, y, x)))
    assert strongest_units(model, images, "3", channel=5)["units"][:, 0].tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="channel must be in 0..7"):
        strongest_units(model, images, "3", channel=8)
