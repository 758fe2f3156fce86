"""Fast R-CNN and RPN chapters: RoI ops and anchor widgets, exercise checkers,
the bad-input list for RoI ops, anchors and the box coder, and the shipped RPN's recall."""

import math
import statistics

import pytest
import torch
import torchvision
from matplotlib.figure import Figure
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder

from cvcourse import exercises, pretrained
from cvcourse.ops.anchors import AnchorGenerator, anchors_for, cell_anchors
from cvcourse.ops.boxes import BoxCoder
from cvcourse.ops.matching import label_anchors
from cvcourse.ops.roi import bilinear_sample_points, roi_align, roi_pool, roi_pool_bins, roi_pool_snapping_error
from cvcourse.widgets import time_figure
from cvcourse.widgets.anchors import anchor_figure, anchor_labels, anchor_widget
from cvcourse.widgets.roi import roi_figure, roi_widget, shared_features_figure

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------- RoI widget
ROI_SETTINGS = [
    {},
    {"output_size": 7, "sampling_ratio": 0, "aligned": False, "stride": 16},
    {"x": 50, "y": 50, "width": 3, "height": 2, "output_size": 3, "sampling_ratio": 1},  # under a cell
    {"x": 120, "y": 0, "width": 60, "height": 127, "stride": 4, "output_size": 5},   # clipped at the edge
    {"width": 0, "height": 0, "aligned": True},                                       # a point
]


@pytest.mark.parametrize("setting", ROI_SETTINGS)
def test_roi_figure_draws_each_setting(setting):
    fig = roi_figure(**setting)
    assert isinstance(fig, Figure) and len(fig.axes) == 1 and len(fig.axes[0].get_images()) == 4


def test_roi_figure_is_fast_enough_and_validates():
    times = time_figure(roi_figure, ROI_SETTINGS[:3])
    assert statistics.median(times) < 2.0  # the benchmark reports the real latency; this catches blow-ups
    with pytest.raises(ValueError, match="output_size"):
        roi_figure(output_size=0)
    with pytest.raises(ValueError, match="x must be in"):
        roi_figure(x=-3)
    with pytest.raises(ValueError, match="stride"):
        roi_figure(stride=5)


def test_roi_figure_shows_the_outputs_of_the_ops():
    """The right panel's images (the last two) are roi_pool's and roi_align's outputs on the
    widget's map."""
    from cvcourse.widgets.roi import feature_map

    fig = roi_figure(x=10, y=20, width=50, height=30, output_size=3, sampling_ratio=2, aligned=True)
    shown = [im.get_array() for im in fig.axes[0].get_images()[2:]]
    box = [torch.tensor([[10.0, 20, 60, 50]])]
    pooled = roi_pool(feature_map(0, 8), box, 3, 1 / 8)[0].permute(1, 2, 0)
    aligned = roi_align(feature_map(0, 8), box, 3, 1 / 8, 2, True)[0].permute(1, 2, 0)
    torch.testing.assert_close(torch.as_tensor(shown[0]), pooled.clamp(0, 1))
    torch.testing.assert_close(torch.as_tensor(shown[1]), aligned.clamp(0, 1))


def test_shared_features_figure():
    fig = shared_features_figure(torch.rand(3, 64, 64), torch.rand(8, 8, 8),
                                 torch.tensor([[4.0, 4, 30, 20]]), 8)
    assert isinstance(fig, Figure) and len(fig.axes[1].patches) == 1
    with pytest.raises(ValueError, match="features"):
        shared_features_figure(torch.rand(3, 64, 64), torch.rand(1, 8, 8, 8), torch.zeros(0, 4), 8)


# ---------------------------------------------------------------------- anchor widget
ANCHOR_SETTINGS = [
    {},
    {"scene": 3, "sizes": (32,), "ratios": (1 / 3, 1.0, 3.0), "row": 2, "col": 3, "high": 0.5, "low": 0.4},
    {"scene": 2, "sizes": (8, 16), "ratios": (1.0,), "row": 0, "col": 15},
    {"scene": 5, "sizes": (24, 48, 96), "high": 0.3, "low": 0.3},
]


@pytest.mark.parametrize("setting", ANCHOR_SETTINGS)
def test_anchor_figure_draws_each_setting(setting):
    fig = anchor_figure(**setting)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    a = len(setting.get("sizes", (16, 32, 64))) * len(setting.get("ratios", (0.5, 1.0, 2.0)))
    assert f"the {a} anchors of cell" in fig.axes[0].get_title()


def test_anchor_figure_is_fast_enough_and_validates():
    times = time_figure(anchor_figure, ANCHOR_SETTINGS[:3])
    assert statistics.median(times) < 2.0
    with pytest.raises(ValueError, match="row and col"):
        anchor_figure(row=16)
    with pytest.raises(ValueError, match="low_threshold must be <= high_threshold"):
        anchor_figure(high=0.3, low=0.5)


def test_anchor_labels_follow_the_rpn_rule():
    gt = torch.tensor([[55.0, 32, 102, 79], [57, 99, 74, 116]])
    anchors, lab = anchor_labels(gt)
    assert anchors.shape == (16 * 16 * 9, 4)
    assert torch.equal(anchors, anchors_for((16, 16), 8, (16, 32, 64), (0.5, 1.0, 2.0)))
    assert set(lab.matched_gt[lab.labels == 1].tolist()) == {0, 1}  # every object has a positive
    assert (lab.iou[lab.labels == 0] < 0.3).all()
    with pytest.raises(ValueError, match="stride"):
        anchor_labels(gt, stride=7)


def test_widgets_build_and_redraw():
    pytest.importorskip("ipywidgets")
    for widget in (roi_widget(), anchor_widget()):
        values = {k: getattr(c, "value", None) for k, c in widget.controls.items()}
        assert isinstance(widget.figure_fn(**values), Figure)
    bad = {k: getattr(c, "value", None) for k, c in anchor_widget().controls.items()}
    bad.update(high=0.3, low=0.6)
    fig = anchor_widget().figure_fn(**bad)  # a message, not a traceback
    assert "low_threshold" in fig.axes[0].texts[0].get_text()


# ------------------------------------------------------------------ exercise checkers
def _bilinear(features, y, x):
    _, h, w = features.shape
    y0, x0 = int(y), int(x)
    y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * features[:, y0, x0] + (1 - ly) * lx * features[:, y0, x1]
            + ly * (1 - lx) * features[:, y1, x0] + ly * lx * features[:, y1, x1])


def _roi_align_loops(features, box, output_size, spatial_scale, sampling_ratio, shift=0.5, read=_bilinear):
    x1, y1, x2, y2 = (box * spatial_scale - shift).tolist()
    bw, bh = (x2 - x1) / output_size, (y2 - y1) / output_size
    out = features.new_zeros(features.shape[0], output_size, output_size)
    for i in range(output_size):
        for j in range(output_size):
            for a in range(sampling_ratio):
                for b in range(sampling_ratio):
                    y = y1 + (i + (a + 0.5) / sampling_ratio) * bh
                    x = x1 + (j + (b + 0.5) / sampling_ratio) * bw
                    out[:, i, j] += read(features, y, x)
    return out / sampling_ratio**2


def _nearest(features, y, x):
    h, w = features.shape[1:]
    return features[:, min(int(round(y)), h - 1), min(int(round(x)), w - 1)]


def _anchors(feature_shape, stride, sizes, ratios, swap=False, round_corners=True):
    h, w = feature_shape
    cell = []
    for r in ratios:
        for s in sizes:
            aw, ah = s / math.sqrt(r), s * math.sqrt(r)
            if swap:  # ratio read as width / height
                aw, ah = ah, aw
            cell.append([-aw / 2, -ah / 2, aw / 2, ah / 2])
    cell = torch.tensor(cell)
    cell = cell.round() if round_corners else cell
    ys, xs = torch.meshgrid(torch.arange(h) * stride, torch.arange(w) * stride, indexing="ij")
    return (torch.stack([xs, ys, xs, ys], -1).reshape(-1, 1, 4) + cell).reshape(-1, 4)


def _encode(gt, anchors, log=True):
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    dx = (gt[:, 0] + gw / 2 - anchors[:, 0] - aw / 2) / aw
    dy = (gt[:, 1] + gh / 2 - anchors[:, 1] - ah / 2) / ah
    dw, dh = (torch.log(gw / aw), torch.log(gh / ah)) if log else (gw / aw, gh / ah)
    return torch.stack([dx, dy, dw, dh], 1)


def _stub(*args):
    raise NotImplementedError


def test_roi_align_checker(capsys):
    assert exercises.check_roi_align_one_box(_roi_align_loops)
    assert "PASS" in capsys.readouterr().out
    assert not exercises.check_roi_align_one_box(lambda *a: _roi_align_loops(*a, shift=0.0))  # legacy
    assert not exercises.check_roi_align_one_box(lambda *a: _roi_align_loops(*a, read=_nearest))
    pooled = lambda f, b, s, sc, r: roi_pool(f[None], [b[None]], s, sc)[0]  # noqa: E731
    assert not exercises.check_roi_align_one_box(pooled)
    assert not exercises.check_roi_align_one_box(_stub)
    assert "not implemented yet" in capsys.readouterr().out


def test_anchor_generation_checker(capsys):
    assert exercises.check_anchor_generation(_anchors)
    assert exercises.check_anchor_generation(lambda *a: _anchors(*a, round_corners=False))  # within 0.5 px
    assert "PASS" in capsys.readouterr().out
    assert not exercises.check_anchor_generation(lambda *a: _anchors(*a, swap=True))
    # size-major instead of ratio-major: the right anchors in the wrong order
    assert not exercises.check_anchor_generation(
        lambda shape, stride, sizes, ratios: anchors_for(shape, stride, sizes, ratios)
        .view(-1, len(ratios), len(sizes), 4).transpose(1, 2).reshape(-1, 4))
    assert not exercises.check_anchor_generation(lambda *a: _anchors(*a)[:-1])
    assert "expected shape" in capsys.readouterr().out


def test_box_encoding_checker():
    assert exercises.check_box_encoding(_encode)
    assert not exercises.check_box_encoding(lambda g, a: _encode(g, a, log=False))
    assert not exercises.check_box_encoding(lambda g, a: _encode(a, g))  # arguments swapped
    assert not exercises.check_box_encoding(_stub)


def test_checkers_are_exported():
    for name in ("check_roi_align_one_box", "check_anchor_generation", "check_box_encoding"):
        assert name in exercises.detection.__all__ and callable(getattr(exercises, name))


# ------------------------------------------------------- the bad-input list
# roi_pool / roi_align themselves: x2 < x1, shapes, batch indices and empty box lists are in
# tests/test_roi.py (test_bad_boxes_raise, test_no_boxes_give_an_empty_output); here the
# helpers the chapters call, anchors and the box coder.


def test_roi_helpers_reject_bad_boxes():
    with pytest.raises(ValueError, match=r"boxes must be a Tensor\[K, 4\]"):
        roi_pool_bins(torch.zeros(3, 5), 2, 0.5, (8, 8))
    with pytest.raises(ValueError, match="box must be one xyxy box"):
        bilinear_sample_points(torch.zeros(5), 2)
    with pytest.raises(ValueError, match="x2 >= x1 and y2 >= y1, but box 1"):
        roi_pool_snapping_error(torch.tensor([[0.0, 0, 4, 4], [5.0, 0, 4, 4]]), 0.5)
    with pytest.raises(ValueError, match=r"Tensor\[K, 4\]"):
        roi_pool_snapping_error(torch.zeros(4), 0.5)
    empty = roi_pool_snapping_error(torch.zeros(0, 4), 0.5)
    assert empty.pooled_boxes.shape == (0, 4) and empty.iou.shape == (0,)


@pytest.mark.parametrize("op", [roi_pool, roi_align])
def test_roi_ops_on_empty_boxes_and_empty_images_match_torchvision(op):
    x = torch.randn(2, 3, 8, 8)
    ours = op(x, [torch.zeros(0, 4), torch.tensor([[0.0, 0, 4, 4]])], 2)
    theirs = getattr(torchvision.ops, op.__name__)(x, [torch.zeros(0, 4), torch.tensor([[0.0, 0, 4, 4]])], 2)
    torch.testing.assert_close(ours, theirs)
    with pytest.raises(ValueError, match="batch index in \\[0, 2\\)"):
        op(x, torch.tensor([[-1.0, 0, 0, 4, 4]]), 2)


def test_anchor_and_label_bad_input():
    with pytest.raises(ValueError, match="sizes and aspect_ratios must be non-empty and positive"):
        cell_anchors((16, -32), (1.0,))
    with pytest.raises(ValueError, match="sizes and aspect_ratios must be non-empty and positive"):
        anchors_for((4, 4), 8, sizes=(16,), ratios=())
    with pytest.raises(ValueError, match="one entry per feature map"):
        AnchorGenerator(((16,), (32,)), ((1.0,),) * 3)
    anchors = anchors_for((4, 4), 8)
    flipped = torch.tensor([[10.0, 10, 5, 20]])
    with pytest.raises(ValueError, match="x2 >= x1"):
        label_anchors(anchors, flipped)
    with pytest.raises(ValueError, match="gt_boxes"):
        label_anchors(anchors, torch.zeros(2, 3))
    with pytest.raises(TypeError, match="anchors"):
        label_anchors(anchors.long(), torch.zeros(0, 4))
    no_anchors = label_anchors(torch.zeros(0, 4), torch.tensor([[0.0, 0, 8, 8]]))
    assert no_anchors.labels.shape == (0,)


def test_box_coder_bad_and_empty_input_follow_torchvision():
    ours, theirs = BoxCoder(), TorchvisionBoxCoder((1.0, 1.0, 1.0, 1.0))
    empty = torch.zeros(0, 4)
    assert ours.encode(empty, empty).shape == (0, 4) == theirs.encode_single(empty, empty).shape
    assert ours.decode(empty, empty).shape == (0, 4) == theirs.decode_single(empty, empty).shape
    # x2 < x1: no error in torchvision either; the same numbers (NaN from the log of a negative)
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 0, 10, 10]])
    anchors = torch.tensor([[1.0, 1, 9, 9], [2.0, 2, 12, 12]])
    torch.testing.assert_close(ours.encode(gt, anchors), theirs.encode_single(gt, anchors), equal_nan=True)
    torch.testing.assert_close(ours.decode(torch.ones(2, 4), gt), theirs.decode_single(torch.ones(2, 4), gt))
    with pytest.raises(ValueError, match=r"reference_boxes must be a Tensor\[N, 4\]"):
        ours.encode(torch.zeros(2, 5), anchors)
    with pytest.raises(ValueError, match="rel_codes and boxes must pair up"):
        ours.decode(torch.zeros(3, 4), anchors)


# ---------------------------------------------------------------- the shipped RPN
@pytest.mark.skipif("faster_rcnn" not in pretrained.available(), reason="checkpoint not installed")
def test_shipped_rpn_recall_on_held_out_scenes():
    """The RPN chapter's headline: the trained RPN's first 100 proposals cover the objects."""
    from cvcourse.data.scenes import held_out_scenes
    from cvcourse.proposals import recall_curve

    model = pretrained.load("faster_rcnn", device="cpu")
    images, targets = held_out_scenes("test", 50)
    with torch.no_grad():
        proposals, _ = model.rpn(images, model.backbone(images))
    recall = recall_curve(proposals, targets, iou=0.5, counts=(10, 100))
    assert recall[100] >= 0.95 and recall[10] >= 0.6, recall
