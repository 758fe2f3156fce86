"""Every explanation function leaves the model exactly as found: each submodule's train/eval
flag, each parameter's requires_grad and .grad, and the hooks (the caller's stay, ours go)."""

import pytest
import torch
from torch import nn

from cvcourse.interpret import (
    attention_maps,
    attention_rollout_method,
    class_activation_map,
    deletion_curve,
    explanation_methods,
    grad_cam,
    guided_backprop,
    input_gradient,
    insertion_curve,
    occlusion_map,
    randomization_test,
    saliency,
)
from cvcourse.interpret.grad_cam import activations_and_gradients
from cvcourse.models import ShapeClassifier
from cvcourse.models.vit import VisionTransformer


def _mixed(model: nn.Module) -> nn.Module:
    """Give `model` a state no method would choose: modes and requires_grad alternate by
    submodule / parameter, and the caller has a forward hook of its own on every module."""
    torch.manual_seed(0)
    for i, m in enumerate(model.modules()):
        m.training = i % 2 == 0
    for i, p in enumerate(model.parameters()):
        p.requires_grad_(i % 3 != 0)
    model.calls = 0

    def count(m, inputs, output):
        model.calls += 1

    for m in model.modules():
        m.register_forward_hook(count)
    return model


def _state(model: nn.Module):
    return ([m.training for m in model.modules()],
            [p.requires_grad for p in model.parameters()],
            [p.grad for p in model.parameters()],
            [(len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
              len(getattr(m, "_backward_pre_hooks", {}))) for m in model.modules()],
            {k: v.clone() for k, v in model.state_dict().items()})


def _same(a, b):
    modes, flags, grads, hooks, weights = a
    modes2, flags2, grads2, hooks2, weights2 = b
    assert modes == modes2, "a submodule's train/eval mode changed"
    assert flags == flags2, "a parameter's requires_grad changed"
    assert all(g is None for g in grads2) and grads == grads2, "a parameter's .grad was touched"
    assert hooks == hooks2, "hooks were added or removed"
    assert weights.keys() == weights2.keys() and all(torch.equal(weights[k], weights2[k]) for k in weights)


IMAGES = torch.rand(2, 3, 64, 64)
CLASSIFIER_CALLS = {
    "saliency": lambda m: saliency(m, IMAGES, 1),
    "input_gradient": lambda m: input_gradient(m, IMAGES, [0, 2]),
    "class_activation_map": lambda m: class_activation_map(m, IMAGES, 1),
    "grad_cam": lambda m: grad_cam(m, "features.7", IMAGES, 1),
    "grad_cam (module)": lambda m: grad_cam(m, m.features[4], IMAGES, 2, upsample=False),
    "activations_and_gradients": lambda m: activations_and_gradients(m, "features.4", IMAGES, 0),
    "guided_backprop": lambda m: guided_backprop(m, IMAGES, 1),
    "guided_backprop (neuron)": lambda m: guided_backprop(m, IMAGES, layer="features.4", neuron=(2, 5, 6)),
    "guided_backprop (channel, module)": lambda m: guided_backprop(m, IMAGES, layer=m.features[7], neuron=1),
    "randomization_test": lambda m: randomization_test(m, saliency, IMAGES, 1),
    "occlusion_map": lambda m: occlusion_map(m, IMAGES, [0, 2], window=32, stride=32, batch_size=3),
    "deletion_curve": lambda m: deletion_curve(m, IMAGES, 1, IMAGES[:, 0], steps=2, batch_size=4),
    "insertion_curve": lambda m: insertion_curve(m, IMAGES, 1, IMAGES[:, 0], steps=2),
    **{f"explanation_methods: {k}": (lambda method: lambda m: method(m, IMAGES, 1))(f)
       for k, f in explanation_methods().items()},
}


@pytest.mark.parametrize("name", CLASSIFIER_CALLS)
def test_classifier_explanations_leave_the_model_as_found(name):
    model = _mixed(ShapeClassifier())
    before = _state(model)
    CLASSIFIER_CALLS[name](model)
    _same(before, _state(model))
    assert model.calls > 0  # the caller's hook saw the forward passes


@pytest.mark.parametrize("name", CLASSIFIER_CALLS)
def test_classifier_explanations_restore_the_state_after_an_error(name):
    model = _mixed(ShapeClassifier())
    before = _state(model)

    def fail(m, inputs, output):
        raise RuntimeError("boom")

    handle = model.fc.register_forward_hook(fail)
    with pytest.raises(RuntimeError, match="boom"):
        CLASSIFIER_CALLS[name](model)
    handle.remove()
    _same(before, _state(model))


VIT_CALLS = {
    "attention_maps": lambda m: attention_maps(m, IMAGES, batch_size=1),
    "attention_maps (one image)": lambda m: attention_maps(m, IMAGES[0]),
    "attention_rollout_method": lambda m: attention_rollout_method()(m, IMAGES, None),
    "saliency": lambda m: saliency(m, IMAGES, 1),
    "occlusion_map": lambda m: occlusion_map(m, IMAGES, 1, window=32, stride=32),
    "deletion_curve": lambda m: deletion_curve(m, IMAGES, 1, IMAGES[:, 0], steps=2),
}


@pytest.mark.parametrize("name", VIT_CALLS)
def test_vit_explanations_leave_the_model_as_found(name):
    model = _mixed(VisionTransformer(dim=16, depth=2, heads=2))
    before = _state(model)
    VIT_CALLS[name](model)
    _same(before, _state(model))


def test_attention_maps_rejects_bad_input():
    model = VisionTransformer(dim=16, depth=1, heads=2)
    for bad, match in ((IMAGES.long(), "floating point"), (IMAGES[:0], "B >= 1"), ([1, 2], "images must be")):
        with pytest.raises((ValueError, TypeError), match=match):
            attention_maps(model, bad)
    for batch_size in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            attention_maps(model, IMAGES, batch_size=batch_size)


def _helper_calls():
    from cvcourse import experiments, recipes
    from cvcourse.recipes.classification import classifier_accuracy
    from cvcourse.widgets import localization, single_stage
    from cvcourse.widgets.detr import query_data

    scenes = torch.rand(2, 3, 128, 128)
    targets = [{"boxes": torch.tensor([[10.0, 10, 50, 50]]), "labels": torch.tensor([1])}] * 2
    return {
        "experiments.multiply_adds": (lambda: ShapeClassifier(), lambda m: experiments.multiply_adds(m, IMAGES)),
        "localization.multiply_adds": (lambda: ShapeClassifier(),
                                       lambda m: localization.multiply_adds(m, (3, 64, 64))),
        "classifier_accuracy": (lambda: ShapeClassifier(), lambda m: classifier_accuracy(m, n=4, batch_size=4)),
        "single_stage.grid_outputs": (lambda: recipes.get("yolo").build(),
                                      lambda m: single_stage.grid_outputs(m, scenes)),
        "detr.query_data": (lambda: recipes.get("detr").build(), lambda m: query_data(m, scenes, targets)),
        "retinanet.anchor_logits": (lambda: recipes.get("retinanet").build(),
                                    lambda m: m.anchor_logits(scenes, targets)),
    }


@pytest.mark.parametrize("name", ["experiments.multiply_adds", "localization.multiply_adds", "classifier_accuracy",
                                  "single_stage.grid_outputs", "detr.query_data", "retinanet.anchor_logits"])
def test_helpers_leave_each_modules_mode_as_found(name):
    build, call = _helper_calls()[name]
    model = build()
    for i, m in enumerate(model.modules()):
        m.training = i % 2 == 0
    modes = [m.training for m in model.modules()]
    call(model)
    assert [m.training for m in model.modules()] == modes


def test_guided_backprop_leaves_the_model_as_found_after_a_bad_neuron():
    model = _mixed(ShapeClassifier())
    before = _state(model)
    with pytest.raises(ValueError, match="neuron"):
        guided_backprop(model, IMAGES, layer="features.4", neuron=(10_000, 0, 0))
    _same(before, _state(model))
