"""Semantic segmentation chapters: recipes, figures, widgets, exercise checkers, shipped bars."""

import io
import math
import statistics

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from cvcourse import exercises, pretrained, recipes
from cvcourse.data import NUM_CLASSES
from cvcourse.models import FCN, FullyConvolutionalPatchClassifier, PatchClassifier, UNet
from cvcourse.models.receptive_field import layers_of, receptive_field
from cvcourse.recipes import segmentation as seg
from cvcourse.train import fit
from cvcourse.widgets import segmentation as W
from cvcourse.widgets import time_figure
from cvcourse.widgets import upsampling as U

SEG_RECIPES = ["unet", "unet_noskip", "fcn", "patch"]


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)
    return buf.getvalue()


# ------------------------------------------------------------------------------- recipes
@pytest.mark.parametrize("name", SEG_RECIPES)
def test_recipe_trains_a_few_steps_and_evaluates(name):
    recipe = recipes.get(name)
    torch.manual_seed(0)
    model = recipe.build()
    data = seg.segmentation_data("train", 16)
    images, semantic = data[0]
    assert (
        images.shape == (3, 64, 64) and semantic.shape == (64, 64) and semantic.dtype == torch.int64
    )
    hist = fit(model, data, recipe.loss, steps=4, batch_size=4, lr=recipe.lr, progress=False)
    assert all(torch.isfinite(torch.tensor(hist.loss)))
    assert 0.1 < hist.loss[0] < 3 * math.log(NUM_CLASSES)  # a sane start: near log(4), not exploding
    metrics = recipe.evaluate(model.eval(), split="val", n=4)
    assert set(metrics) == {"mean_iou", "boundary_f1", "pixel_accuracy"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert set(recipe.bar) == set(metrics)


def test_patch_recipe_is_the_fully_convolutional_patch_classifier():
    model = recipes.get("patch").build().eval()
    assert isinstance(model, FullyConvolutionalPatchClassifier)
    patch = model.to_patch_classifier().eval()
    assert isinstance(patch, PatchClassifier)
    x = torch.rand(1, 3, 20, 20)
    with torch.no_grad():
        torch.testing.assert_close(patch.sliding_window(x), model(x), rtol=1e-5, atol=1e-5)


def test_pixel_loss_is_mean_cross_entropy_over_pixels():
    scores = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    loss = seg.pixel_loss(lambda x: scores, (None, target))
    manual = -scores.log_softmax(1).gather(1, target[:, None]).mean()
    torch.testing.assert_close(loss, manual)


def test_predict_shapes_and_bad_input():
    model = UNet(base=4, depth=2).eval()
    assert seg.predict(model, torch.rand(5, 3, 32, 32), batch_size=2).shape == (5, 32, 32)
    assert seg.predict(model, torch.rand(3, 16, 16)).shape == (16, 16)
    with pytest.raises(ValueError, match=r"images must be \[B, 3, H, W\]"):
        seg.predict(model, torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="held-out"):
        seg.held_out("train", 2)


@pytest.mark.parametrize(
    "factory",
    [lambda **kw: UNet(base=4, depth=3, **kw), lambda **kw: FCN(width=4, output_stride=8, **kw)],
)
def test_sizes_not_divisible_by_the_stride_are_padded_or_rejected(factory):
    x = torch.rand(2, 3, 60, 37)  # neither side is a multiple of 8
    assert seg.predict(factory(), x).shape == (2, 60, 37)
    with pytest.raises(ValueError, match="not divisible by the total stride 8"):
        seg.predict(factory(pad_mode="error"), x)


# ------------------------------------------------------------------------ receptive field
def _measured_receptive_field(layers):
    """Support of d(centre output)/d(input) for a purely linear stack with positive kernels."""
    mods = []
    for k, s in layers:
        conv = nn.Conv2d(1, 1, k, stride=s, bias=False)
        nn.init.constant_(conv.weight, 1.0)
        mods.append(conv)
    net = nn.Sequential(*mods)
    x = torch.zeros(1, 1, 101, 101, requires_grad=True)
    out = net(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    cols = (x.grad[0, 0] != 0).any(0).nonzero()
    return int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize(
    "layers",
    [
        [(3, 1)],
        [(3, 1), (2, 2), (3, 1)],
        [(5, 2), (3, 2), (3, 1), (3, 1)],
        [(3, 1), (3, 1), (2, 2)] * 3,
    ],
)
def test_receptive_field_formula_matches_gradient_support(layers):
    assert receptive_field(layers) == _measured_receptive_field(layers)


def test_receptive_field_of_the_course_models():
    assert receptive_field(layers_of(PatchClassifier(patch_size=17).to_fully_convolutional())) == 17
    rf = [receptive_field(layers_of(FCN(output_stride=s).backbone)) for s in (2, 4, 8, 16)]
    assert rf == sorted(rf) and rf[2] > 64  # the stride-8 FCN sees the whole 64 x 64 scene
    with pytest.raises(ValueError, match="kernel, stride"):
        receptive_field([(3,)])


# ------------------------------------------------------------------------ figure functions
def test_conv_transpose_figure_steps_and_final_check():
    fig = U.conv_transpose_figure(
        kernel_size=3, stride=2, padding=1, step=9, input="ramp", kernel="tent"
    )
    assert isinstance(fig, Figure) and _png(fig)[:4] == b"\x89PNG"
    assert any("max |err| 0" in t.get_text() for t in fig.axes[0].texts)
    assert len(U.conv_transpose_figure(step=1).axes[0].images) == 4  # input, filter, copy, running sum
    with pytest.raises(ValueError, match="step must be an int in"):
        U.conv_transpose_figure(step=10)
    with pytest.raises(ValueError, match="padding=2 crops the whole"):
        U.conv_transpose_figure(kernel_size=1, stride=1, padding=2, input_size=3)
    with pytest.raises(ValueError, match="kernel_size"):
        U.conv_transpose_figure(kernel_size=0)


def test_upsampling_outputs_match_torch():
    for scale in (2, 3, 4):
        out = U.upsampling_outputs(scale, seed=3)
        assert out["pooled"].shape == (4, 4) and out["original"].shape == (4 * scale, 4 * scale)
        for name in ("nearest", "bed of nails", "max unpooling", "transposed conv"):
            ours, err = out[name]
            assert ours.shape == (4 * scale, 4 * scale)
            assert err <= 1e-6, (name, scale, err)
    assert isinstance(U.upsampling_figure(3, 1), Figure)
    with pytest.raises(ValueError, match="scale"):
        U.upsampling_outputs(0)


def test_checkerboard_strength_measures_uneven_overlap():
    flat = torch.ones(1, 1, 12, 12)
    assert U.checkerboard_strength(flat) == 0.0
    board = flat.clone()
    board[..., ::2, ::2] = 3.0  # period 2 in both directions
    assert U.checkerboard_strength(board) > 0.1
    scores = U.checkerboard_scores(n_kernels=20)
    k3, k4, resize = (scores[name] for name in U.UPSAMPLERS)
    assert k3["averaging"] > 0.1 and k4["averaging"] < 1e-12  # uneven vs even overlap
    assert k4["random"] > 0.1  # even overlap, uneven taps: still a pattern
    assert resize["averaging"] < 1e-12 and resize["random"] < 1e-12  # resize-conv: flat by construction
    assert len(U.checkerboard_figure().axes) == 6


def test_layer_multiply_adds_sum_to_the_model_count():
    model = PatchClassifier(patch_size=17, width=8, hidden=32)
    rows = W.layer_multiply_adds(model, 64, 48)
    macs = model.multiply_adds(64, 48)
    assert sum(r["sliding_window"] for r in rows) == macs["sliding_window"]
    assert sum(r["fully_convolutional"] for r in rows) == macs["fully_convolutional"]
    assert rows[-1]["sliding_window"] == rows[-1]["fully_convolutional"]  # 1x1 layer: no overlap
    assert isinstance(W.sliding_window_cost_figure(model), Figure)


def test_layer_times_rows_match_the_counts_and_reject_bad_input():
    torch.manual_seed(0)
    model = PatchClassifier(patch_size=11, width=4, hidden=8)
    image = torch.rand(1, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    rows = W.layer_times(model, image, repeats=1, batch_size=50)
    counts = W.layer_multiply_adds(model, 12, 10)
    assert [r["layer"] for r in rows] == ["cut patches"] + [c["layer"] for c in counts]
    for row, count in zip(rows[1:], counts):
        assert row["sliding_window"] == count["sliding_window"]
        assert row["fully_convolutional"] == count["fully_convolutional"]
        assert row["sliding_window_seconds"] >= 0 and row["fully_convolutional_seconds"] >= 0
    assert rows[0]["sliding_window"] == 0 and rows[0]["fully_convolutional_seconds"] is None
    assert rows[0]["sliding_window_bytes"] == 12 * 10 * 3 * 11 * 11 * 4    # one float32 patch per pixel
    assert rows[1]["sliding_window_bytes"] == 12 * 10 * 4 * 7 * 7 * 4      # conv5: 11 -> 7, 4 channels
    assert rows[1]["fully_convolutional_bytes"] == 4 * 18 * 16 * 4          # (12+10) x (10+10) -> 18 x 16
    with pytest.raises(ValueError, match=r"image must be one \[1, 3, H, W\] image, got \(2, 3, 12, 10\)"):
        W.layer_times(model, image.repeat(2, 1, 1, 1))
    with pytest.raises(TypeError, match="model must be a PatchClassifier"):
        W.layer_times(model.to_fully_convolutional(), image)


def test_annotated_grid_rejects_non_2d():
    fig = Figure()
    with pytest.raises(ValueError, match="2-D grid"):
        U.annotated_grid(torch.zeros(2, 2, 2), fig.add_subplot())


def test_widgets_redraw_and_show_messages_for_impossible_settings():
    w = U.conv_transpose_widget()
    assert set(w.controls) == {"kernel_size", "stride", "padding", "step", "input", "kernel"}
    w.controls["step"].value = 4
    assert w.last_seconds is not None
    w.controls["kernel_size"].value, w.controls["stride"].value, w.controls["padding"].value = (
        1,
        1,
        2,
    )
    fig = w.figure_fn(kernel_size=1, stride=1, padding=2, step=1, input="ones", kernel="ones")
    assert "crops the whole" in fig.axes[0].texts[0].get_text()  # a message, not a traceback
    u = U.upsampling_widget()
    u.controls["scale"].value = 3
    assert u.last_seconds is not None
    times = time_figure(U.conv_transpose_figure, [{"step": s} for s in (1, 5, 9)])
    assert (
        statistics.median(times) < 2.0
    )  # the benchmark reports the real latency; this catches blow-ups


# ------------------------------------------------------------------------ exercise checkers
def _fc_to_conv(fc, in_channels, k):
    conv = nn.Conv2d(in_channels, fc.out_features, k)
    with torch.no_grad():
        conv.weight.copy_(fc.weight.view(fc.out_features, in_channels, k, k))
        conv.bias.copy_(fc.bias)
    return conv


def _fc_to_conv_transposed_kernel(fc, in_channels, k):  # a plausible mistake: kernel transposed
    conv = _fc_to_conv(fc, in_channels, k)
    with torch.no_grad():
        conv.weight.copy_(conv.weight.transpose(2, 3))
    return conv


def _receptive_field(layers):
    r, jump = 1, 1
    for k, s in layers:
        r, jump = r + (k - 1) * jump, jump * s
    return r


def _bed_of_nails(x, s):
    out = x.new_zeros(*x.shape[:2], x.shape[2] * s, x.shape[3] * s)
    out[..., ::s, ::s] = x
    return out


def _scatter(x, w, s):
    h, wd = x.shape
    k = w.shape[0]
    out = x.new_zeros((h - 1) * s + k, (wd - 1) * s + k)
    for i in range(h):
        for j in range(wd):
            out[i * s : i * s + k, j * s : j * s + k] += x[i, j] * w
    return out


def _skip_concat(skip, x):
    (h1, w1), (h2, w2) = skip.shape[2:], x.shape[2:]
    top, left = (h1 - h2) // 2, (w1 - w2) // 2
    return torch.cat([skip[:, :, top : top + h2, left : left + w2], x], 1)


def _semantic_from_instances(masks, labels):
    semantic = torch.zeros(masks.shape[1:], dtype=torch.long)
    for mask, label in zip(masks, labels):
        semantic[mask] = label
    return semantic


def _boxes_from_masks(masks, plus_one=1):
    boxes = []
    for mask in masks:
        ys, xs = torch.where(mask)
        boxes.append([xs.min(), ys.min(), xs.max() + plus_one, ys.max() + plus_one])
    return torch.tensor(boxes, dtype=torch.float32)


def _raises(*args):
    raise NotImplementedError


@pytest.mark.parametrize(
    "checker,right,wrong",
    [
        (
            exercises.check_semantic_from_instances,
            _semantic_from_instances,
            lambda masks, labels: masks.any(0).long(),  # every object class 1
        ),
        (
            exercises.check_boxes_from_masks,
            _boxes_from_masks,
            lambda masks: _boxes_from_masks(masks, plus_one=0),  # x2 = the last column itself
        ),
        (exercises.check_fc_to_conv, _fc_to_conv, _fc_to_conv_transposed_kernel),
        (
            exercises.check_receptive_field,
            _receptive_field,
            lambda layers: 1 + sum(k - 1 for k, _ in layers),
        ),
        (
            exercises.check_bed_of_nails,
            _bed_of_nails,
            lambda x, s: F.interpolate(x, scale_factor=s),
        ),
        (
            exercises.check_conv_transpose_scatter,
            _scatter,
            lambda x, w, s: F.conv2d(F.pad(x, (2, 2, 2, 2))[None, None], w[None, None])[0, 0],
        ),
        (
            exercises.check_skip_concat,
            _skip_concat,
            lambda skip, x: torch.cat([x, skip[:, :, : x.shape[2], : x.shape[3]]], 1),
        ),
    ],
)
def test_exercise_checkers_pass_right_and_fail_wrong(checker, right, wrong, capsys):
    assert checker(right) is True
    assert capsys.readouterr().out.startswith("PASS")
    assert checker(wrong) is False
    assert capsys.readouterr().out.startswith("FAIL")
    assert checker(_raises) is False
    assert "not implemented" in capsys.readouterr().out


# ------------------------------------------------------------------------ shipped checkpoints
needs_checkpoints = pytest.mark.skipif(
    not set(SEG_RECIPES) <= set(pretrained.available()),
    reason="segmentation checkpoints not shipped",
)


@needs_checkpoints
@pytest.mark.slow
def test_skip_connections_sharpen_boundaries_on_the_test_split():
    unet = recipes.get("unet").evaluate(pretrained.load("unet", device="cpu"), split="test")
    noskip = recipes.get("unet_noskip").evaluate(
        pretrained.load("unet_noskip", device="cpu"), split="test"
    )
    assert unet["mean_iou"] >= 0.95
    assert unet["boundary_f1"] >= noskip["boundary_f1"] + 0.05, (unet, noskip)


@needs_checkpoints
def test_prediction_figure_and_widget():
    fig = W.prediction_figure([0, 1])  # one Axes, one image per panel: 2 rows x 5 panels
    assert isinstance(fig, Figure) and len(fig.axes[0].images) == 2 * 5 and _png(fig)[:4] == b"\x89PNG"
    assert len(W.prediction_figure(2, models=("patch", "fcn", "unet")).axes[0].images) == 5
    with pytest.raises(ValueError, match="index must be"):
        W.prediction_figure(500)
    w = W.prediction_widget()
    w.controls["index"].value = 5
    assert w.last_seconds is not None
    data = W.held_out_predictions()
    assert data["unet"].shape == data["target"].shape == (200, 64, 64)
    times = time_figure(W.prediction_figure, [{"index": i} for i in range(3)])
    assert statistics.median(times) < 2.0
