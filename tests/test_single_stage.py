"""Single-stage detectors: the focal loss vs torchvision, YOLO / SSD / RetinaNet losses and
outputs, SSD's default boxes and loss vs torchvision, degenerate inputs, widgets, bars."""

import math

import numpy as np
import pytest
import torch
import torchvision

from cvcourse import exercises, pretrained
from cvcourse.data import ShapesDataset, detection_collate
from cvcourse.models import SSD, YOLO, RetinaNet
from cvcourse.models.retinanet import classification_loss, loss_shares, prior_bias
from cvcourse.models.ssd import default_boxes, hard_negative_mining
from cvcourse.models.yolo import assign_cells, responsible_cells
from cvcourse.ops import box_iou, sigmoid_focal_loss

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {YOLO: dict(width=8), SSD: dict(width=8), RetinaNet: dict(width=8, fpn_channels=16, head_norm=True)}
LOSSES = {YOLO: {"loss_box_reg", "loss_objectness", "loss_no_object", "loss_classifier"},
          SSD: {"loss_classifier", "loss_box_reg"}, RetinaNet: {"loss_classifier", "loss_box_reg"}}
MODELS = [YOLO, SSD, RetinaNet]


def _batch(n=2, size=64, split="train"):
    ds = ShapesDataset(split, n, size=size)
    images, targets = detection_collate([ds[i] for i in range(n)])
    return images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]


def _model(cls, **kw):
    torch.manual_seed(0)
    return cls(**{**SMALL[cls], **kw})


# ------------------------------------------------------------------------------ focal loss
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 0.0), (0.5, 1.0), (0.9, 3.5)])
def test_focal_loss_matches_torchvision_values_and_gradients(reduction, alpha, gamma):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 5, 3, generator=g) * 5
    y = (torch.rand(7, 5, 3, generator=g) < 0.2).float()
    ours_x, ref_x = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ours = sigmoid_focal_loss(ours_x, y, alpha, gamma, reduction)
    ref = torchvision.ops.sigmoid_focal_loss(ref_x, y, alpha, gamma, reduction)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-6, rtol=1e-6)
    w = torch.randn(ours.shape, generator=g)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    assert torch.allclose(ours_x.grad, ref_x.grad, atol=1e-6, rtol=1e-6)


def test_focal_loss_gradients_in_float64_agree_with_finite_differences():
    x = torch.randn(6, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1.0, 0, 0, 1, 0, 1], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: sigmoid_focal_loss(t, y, 0.25, 2.0, "sum"), (x,))


def test_focal_loss_is_bce_at_gamma_0_and_down_weights_easy_examples():
    x = torch.tensor([-6.0, -1.0, 0.0, 2.0])
    y = torch.zeros(4)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert torch.allclose(sigmoid_focal_loss(x, y, alpha=-1, gamma=0), bce)
    ratio = sigmoid_focal_loss(x, y, alpha=-1, gamma=2) / bce      # = p ** 2 for negatives
    assert torch.allclose(ratio, torch.sigmoid(x) ** 2, rtol=1e-5)
    assert ratio[0] < 1e-4 < 0.2 < ratio[3]                         # easy: ~1e-5; hard: ~0.8


def test_focal_loss_rejects_bad_reduction_and_shapes():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(x, x, reduction="average")
    with pytest.raises(ValueError, match="same shape"):
        sigmoid_focal_loss(x, torch.zeros(4))


def test_prior_bias_gives_the_prior_probability():
    assert math.isclose(torch.sigmoid(torch.tensor(prior_bias(0.01))).item(), 0.01, rel_tol=1e-6)
    model = _model(RetinaNet)
    p = torch.sigmoid(model.cls_subnet[-1].bias)
    assert torch.allclose(p, torch.full_like(p, 0.01))
    with pytest.raises(ValueError, match="prior"):
        prior_bias(1.0)


# ------------------------------------------------------------------------------ YOLO parts
def test_responsible_cell_contains_the_centre():
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [120.0, 110.0, 128.0, 128.0],
                          [30.0, 10.0, 50.0, 20.0]])
    rc = responsible_cells(boxes, 16, 128)
    assert rc.tolist() == [[1, 1], [14, 15], [1, 5]]
    assert responsible_cells(boxes, 1, 128).tolist() == [[0, 0]] * 3


def test_assign_cells_keeps_the_largest_object_per_cell():
    boxes = torch.tensor([[10.0, 2.0, 14.0, 6.0], [0.0, 0.0, 24.0, 24.0], [60.0, 60.0, 70.0, 70.0]])
    assert sorted(assign_cells(boxes, 8, 128).tolist()) == [1, 2]   # 0 and 1 share cell (0, 0)
    assert sorted(assign_cells(boxes, 64, 128).tolist()) == [0, 1, 2]


# ------------------------------------------------------------------------------ SSD parts
def test_default_boxes_match_torchvision_default_box_generator():
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.image_list import ImageList

    scales, strides = [12, 24, 48, 96], [8, 16, 32]
    tv = DefaultBoxGenerator([[2]] * 3, scales=[s / 128 for s in scales], steps=strides, clip=False)
    feats = [torch.zeros(1, 1, 128 // s, 128 // s) for s in strides]
    ref = tv(ImageList(torch.zeros(1, 3, 128, 128), [(128, 128)]), feats)[0]
    ours = torch.cat([default_boxes((128 // s, 128 // s), s, scales[k], scales[k + 1], (0.5, 2.0))
                      for k, s in enumerate(strides)])
    assert ours.shape == ref.shape == ((256 + 64 + 16) * 4, 4)
    assert torch.allclose(ours, ref, atol=1e-4)


def test_hard_negative_mining_keeps_three_hardest_negatives_per_positive():
    loss = torch.tensor([[0.1, 5.0, 0.3, 0.2, 0.9, 0.4, 0.05, 0.6], [1.0] * 8])
    positive = torch.tensor([[False, True, False, False, False, False, False, False], [False] * 8])
    used = hard_negative_mining(loss, positive, 3)
    assert used[0].nonzero().flatten().tolist() == [1, 4, 5, 7]    # the positive + 0.9, 0.6, 0.4
    assert not used[1].any()                                      # no positives: no negatives


def test_ssd_loss_matches_torchvision_compute_loss():
    from types import SimpleNamespace

    from torchvision.models.detection import _utils as tv_utils
    from torchvision.models.detection.ssd import SSD as TVSSD

    images, targets = _batch(3, size=128)
    model = _model(SSD).train()
    features = model.backbone(images)
    logits, deltas = model.head(features)
    anchors = model.default_boxes(features, 128)
    ours = model.compute_loss(logits, deltas, anchors, targets)
    matcher = tv_utils.SSDMatcher(0.5)
    matched = [matcher(box_iou(t["boxes"], anchors)) for t in targets]
    fake = SimpleNamespace(box_coder=tv_utils.BoxCoder((10.0, 10.0, 5.0, 5.0)), neg_to_pos_ratio=3)
    ref = TVSSD.compute_loss(fake, targets, {"bbox_regression": deltas, "cls_logits": logits},
                             [anchors] * 3, matched)
    assert torch.allclose(ours["loss_box_reg"], ref["bbox_regression"], rtol=1e-5)
    assert torch.allclose(ours["loss_classifier"], ref["classification"], rtol=1e-5)


# ------------------------------------------------------------------------------ all three
@pytest.mark.parametrize("cls", MODELS)
def test_training_returns_named_finite_scalar_losses(cls):
    images, targets = _batch(2)
    losses = _model(cls).train()(images, targets)
    assert set(losses) == LOSSES[cls]
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


@pytest.mark.parametrize("cls", MODELS)
def test_losses_decrease_when_overfitting_two_scenes(cls):
    images, targets = _batch(2)
    model = _model(cls).train()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    totals = []
    for _ in range(20):
        total = sum(model(images, targets).values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert all(math.isfinite(t) for t in totals)
    assert sum(totals[-3:]) / 3 < 0.6 * sum(totals[:3]) / 3, totals


@pytest.mark.parametrize("cls", MODELS)
def test_eval_returns_boxes_scores_labels_per_image(cls):
    images, _ = _batch(3)
    out = _model(cls, score_thresh=0.0).eval()(images)
    assert len(out) == 3
    for det in out:
        assert set(det) == {"boxes", "scores", "labels"}
        d = len(det["boxes"])
        assert 0 < d <= 100 and det["boxes"].shape == (d, 4) and det["scores"].shape == (d,)
        assert det["labels"].dtype == torch.int64 and bool(((det["labels"] >= 1) & (det["labels"] <= 3)).all())
        assert bool((det["boxes"] >= 0).all() and (det["boxes"] <= 64).all())
        assert bool((det["scores"][:-1] >= det["scores"][1:]).all())


def _empty(n):
    return [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}] * n


def test_yolo_without_objects_is_the_no_object_loss_of_every_predictor():
    images, _ = _batch(2)
    model = _model(YOLO).train()
    losses = model(images, _empty(2))
    conf = model.grid(images).confidence
    expected = 0.5 * torch.nn.functional.softplus(conf).sum() / 2     # BCE with target 0
    assert losses["loss_box_reg"] == 0 and losses["loss_objectness"] == 0
    assert losses["loss_classifier"] == 0
    assert torch.allclose(losses["loss_no_object"], expected, rtol=1e-5)
    sum(losses.values()).backward()


def test_yolo_iou_confidence_target_is_the_detached_iou_of_the_responsible_box():
    images, targets = _batch(2, size=128)
    grads, losses = {}, {}
    for t in ("one", "iou"):
        model = _model(YOLO, confidence_target=t).train()
        pred = model.grid(images)
        conf = pred.confidence.detach().requires_grad_()
        losses[t] = model.compute_loss(pred._replace(confidence=conf), targets, 128)
        # the target never carries gradient into the boxes: it is detached
        assert torch.autograd.grad(losses[t]["loss_objectness"], pred.boxes, retain_graph=True,
                                   allow_unused=True)[0] is None
        losses[t]["loss_objectness"].backward()
        grads[t] = conf.grad * len(images)      # d BCE / d logit = sigmoid(logit) - target
    for k in ("loss_box_reg", "loss_no_object", "loss_classifier"):
        assert torch.equal(losses["one"][k], losses["iou"][k])
    responsible = grads["one"] != 0                                   # (N, S, S, B)
    p = pred.confidence.detach().sigmoid()
    assert torch.allclose(grads["one"][responsible], p[responsible] - 1, atol=1e-6)
    target = p - grads["iou"]
    n_objects = 0
    for i, t in enumerate(targets):
        boxes = t["boxes"][assign_cells(t["boxes"], 16, 128)]
        for box, (r, c) in zip(boxes, responsible_cells(boxes, 16, 128).tolist()):
            (b,) = torch.where(responsible[i, r, c])[0].tolist()      # one predictor per object
            ious = torchvision.ops.box_iou(pred.boxes[i, r, c].detach(), box[None])[:, 0]   # (B,)
            assert ious[b] == ious.max()                              # the best box is responsible
            assert abs(target[i, r, c, b] - ious[b]) < 1e-5           # v1: Pr(Object) x IoU
            n_objects += 1
    assert int(responsible.sum()) == n_objects > 0
    assert losses["iou"]["loss_objectness"] != losses["one"]["loss_objectness"]
    with pytest.raises(ValueError, match="confidence_target"):
        YOLO(confidence_target="giou")


def test_retinanet_without_objects_is_the_focal_loss_of_every_anchor_as_negative():
    images, _ = _batch(2)
    model = _model(RetinaNet).train()
    losses = model(images, _empty(2))
    logits = torch.cat(model.head(model.fpn(model.backbone(images)))[0], 1)
    expected = sigmoid_focal_loss(logits, torch.zeros_like(logits), 0.25, 2.0, "sum")  # / max(1, 0)
    assert losses["loss_box_reg"] == 0
    assert torch.allclose(losses["loss_classifier"], expected, rtol=1e-5)
    sum(losses.values()).backward()


def test_ssd_without_objects_mines_no_negatives_like_torchvision():
    images, _ = _batch(2)
    losses = _model(SSD).train()(images, _empty(2))
    assert losses["loss_classifier"] == 0 and losses["loss_box_reg"] == 0  # 3 x 0 negatives
    images, targets = _batch(2)
    mixed = _model(SSD).train()(images, [targets[0], _empty(1)[0]])
    assert mixed["loss_classifier"] > 0 and torch.isfinite(sum(mixed.values()))


@pytest.mark.parametrize("cls", MODELS)
def test_bad_inputs_raise_clear_errors(cls):
    images, targets = _batch(2)
    model = _model(cls).train()
    with pytest.raises(ValueError, match="one dict per image"):
        model(images, targets[:1])
    with pytest.raises(ValueError, match="targets must be given"):
        model(images)
    with pytest.raises(ValueError, match="images"):
        model(images[0], targets)
    bad = [{"boxes": torch.tensor([[10.0, 10.0, 5.0, 20.0]]), "labels": torch.tensor([1])}] * 2
    with pytest.raises(ValueError, match="x2 > x1"):
        model(images, bad)


def test_retinanet_variants_build_and_bad_settings_are_refused():
    images, targets = _batch(2)
    plain = _model(RetinaNet, head_norm=False, fpn=False, fpn_channels=32).train()
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in plain.modules())
    assert torch.isfinite(sum(plain(images, targets).values()))
    with pytest.raises(ValueError, match="fpn_channels"):
        RetinaNet(width=8, fpn=False, fpn_channels=16)
    with pytest.raises(ValueError, match="loss"):
        RetinaNet(width=8, loss="mse")
    with pytest.raises(ValueError, match="scales"):
        SSD(width=8, scales=(12, 24))


def test_retinanet_bce_and_focal_differ_only_in_the_classification_loss():
    images, targets = _batch(2)
    focal, bce = _model(RetinaNet, loss="focal").train(), _model(RetinaNet, loss="bce").train()
    lf, lb = focal(images, targets), bce(images, targets)
    assert torch.allclose(lf["loss_box_reg"], lb["loss_box_reg"])
    assert lb["loss_classifier"] > 3 * lf["loss_classifier"]        # the easy negatives' weight
    shares = loss_shares(bce, images, targets)
    assert math.isclose(shares["easy_negatives"] + shares["hard_negatives"] + shares["positives"], 1, rel_tol=1e-5)
    assert loss_shares(focal, images, targets)["easy_negatives"] < shares["easy_negatives"]
    with pytest.raises(ValueError, match="loss"):
        classification_loss(torch.zeros(2), torch.zeros(2), "mse")


# ------------------------------------------------------------------------------ widgets
def test_widget_figures_draw_and_close():
    from matplotlib.figure import Figure

    from cvcourse.widgets import single_stage as w

    images, targets = _batch(2, size=128)
    yolo = _model(YOLO)
    grids = w.grid_outputs(yolo, images)
    assert grids[0]["boxes"].shape == (16, 16, 2, 4) and grids[0]["class_probs"].shape == (16, 16, 3)
    for fig in (w.grid_figure(images[0], targets[0]), w.grid_figure(images[0], targets[0], grids[0], 3, 4),
                w.default_boxes_figure(images[0]), w.focal_loss_figure(2.0, 0.25)):
        assert isinstance(fig, Figure) and len(fig.axes) >= 1
    probs, y = w.anchor_probabilities(_model(RetinaNet), images, targets)
    assert probs.shape == y.shape and set(np.unique(y)) <= {0.0, 1.0}
    fig = w.focal_loss_figure(1.0, 0.5, probs, y)
    assert len(fig.axes) == 2 and any("share of the loss" in t.get_text() for t in fig.texts)
    with pytest.raises(ValueError, match="row and col"):
        w.grid_figure(images[0], targets[0], grids[0], 16, 0)


def test_grid_figure_keeps_a_zero_size_box_visible_and_says_its_size():
    from cvcourse.widgets import single_stage as w

    images, targets = _batch(1, size=128)
    grid = w.grid_outputs(_model(YOLO), images)[0]
    boxes = grid["boxes"].clone()
    boxes[3, 4, 0] = torch.tensor([30.0, 20.0, 50.0, 60.0])         # 20 x 40 px
    boxes[3, 4, 1] = torch.tensor([40.0, 30.0, 40.0, 30.0])         # width and height 0: a point
    fig = w.grid_figure(images[0], targets[0], {**grid, "boxes": boxes}, 3, 4)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert any(t.endswith("20x40 px") for t in texts) and any(t.startswith("box 1") and
                                                              t.endswith("0x0 px") for t in texts)
    (marks,) = [line for line in fig.axes[0].lines if line.get_marker() == "x"]
    assert np.allclose(np.c_[marks.get_xdata(), marks.get_ydata()], [[39.5, 39.5], [39.5, 29.5]])


def test_responsible_predictor_is_the_best_overlapping_box_of_the_cell():
    from cvcourse.models.yolo import responsible_predictors

    cell_boxes = torch.tensor([[[0.0, 0, 10, 10], [0, 0, 20, 20]], [[5, 5, 9, 9], [5, 5, 9, 9]]])
    boxes = torch.tensor([[0.0, 0, 18, 18], [5, 5, 9, 9]])
    b, iou = responsible_predictors(cell_boxes, boxes)
    assert b.tolist() == [1, 0] and torch.allclose(iou, torch.tensor([18 * 18 / 400, 1.0]))  # tie: first


def test_widget_loss_shares_agree_with_the_model_and_widgets_build():
    from cvcourse.widgets import single_stage as w

    images, targets = _batch(2, size=128)
    model = _model(RetinaNet)
    probs, y = w.anchor_probabilities(model, images, targets)
    ours = w.loss_shares_np(probs, y, 2.0, 0.25)
    ref = loss_shares(model, images, targets, "focal", 0.25, 2.0)
    for k in ("positives", "hard_negatives", "easy_negatives"):
        assert abs(ours[k] - ref[k]) < 1e-4
    assert w.grid_widget(_model(YOLO), images, targets).figure_fn is not None
    assert w.focal_loss_widget(probs, y).controls["gamma"].value == 2.0


def test_widget_redraws_are_quick():
    import statistics

    from cvcourse.widgets import single_stage as w
    from cvcourse.widgets import time_figure

    images, targets = _batch(4, size=128)
    grids = w.grid_outputs(_model(YOLO), images)
    probs, y = w.anchor_probabilities(_model(RetinaNet), images, targets)

    def grid(index, row, col):
        return w.grid_figure(images[index], targets[index], grids[index], row, col)

    settings = [dict(index=i, row=3 * i, col=5 + i) for i in range(4)]
    time_figure(grid, settings[:1])                                      # warm-up: fonts
    # 150 ms on an idle CPU (the benchmark reports the real latency); this catches blow-ups
    assert statistics.median(time_figure(grid, settings)) < 2.0
    focal = [dict(gamma=g, alpha=a, probs=probs, targets=y) for g, a in ((0, 0.5), (2, 0.25), (5, 0.9))]
    assert statistics.median(time_figure(w.focal_loss_figure, focal)) < 2.0


def test_focal_loss_curve_is_cross_entropy_at_gamma_0():
    from cvcourse.widgets.single_stage import focal_loss_curves

    p = np.array([0.1, 0.5, 0.9])
    assert np.allclose(focal_loss_curves(p, 0.0), -np.log(p))
    assert np.allclose(focal_loss_curves(p, 2.0, 0.25), 0.25 * (1 - p) ** 2 * -np.log(p))


# ------------------------------------------------------------------------------ exercises
def test_exercise_checkers_pass_the_reference_and_fail_a_stub():
    from cvcourse.models.ssd import default_boxes as ref_default_boxes

    def stub(*args):
        raise NotImplementedError

    assert exercises.check_responsible_cells(responsible_cells)
    assert exercises.check_default_boxes(ref_default_boxes)
    assert exercises.check_focal_loss(sigmoid_focal_loss)
    assert not exercises.check_focal_loss(stub)
    assert not exercises.check_responsible_cells(lambda b, s, n: responsible_cells(b, s, n).flip(1))
    assert not exercises.check_focal_loss(lambda x, y, a, g: sigmoid_focal_loss(x, y, a, 0.0))


# ------------------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize("name", ["yolo", "ssd", "retinanet", "retinanet_bce"])
def test_checkpoint_meets_its_bar_on_held_out_scenes(name):
    if name not in pretrained.available():
        pytest.skip(f"checkpoint {name!r} is not installed yet (python -m cvcourse.train {name})")
    from cvcourse.recipes import get

    rec = pretrained.record(name)
    assert rec["bytes"] <= 5 * 2**20
    metrics = get(name).evaluate(pretrained.load(name, device="cpu"), split="test")
    for metric, bar in rec["bar"].items():
        assert metrics[metric] >= bar, f"{name}: {metric} {metrics[metric]:.4f} < bar {bar}"


# ------------------------------------------------------------------------------ the pyramid
def test_fpn_without_top_down_keeps_each_level_to_its_own_map():
    from cvcourse.models.retinanet import FeaturePyramid

    torch.manual_seed(0)
    feats = [torch.randn(1, 8, 8, 8), torch.randn(1, 8, 4, 4), torch.randn(1, 8, 2, 2)]
    changed = [feats[0], feats[1], feats[2] + 1.0]                   # only the coarsest map moves
    for top_down in (True, False):
        torch.manual_seed(0)
        fpn = FeaturePyramid(8, 16, top_down=top_down)
        a, b = fpn(feats), fpn(changed)
        assert [tuple(x.shape) for x in a] == [(1, 16, 8, 8), (1, 16, 4, 4), (1, 16, 2, 2)]
        moved = [not torch.allclose(x, y) for x, y in zip(a, b)]
        assert moved == ([True, True, True] if top_down else [False, False, True])
    laterals = [lat(f) for lat, f in zip(fpn.lateral, feats)]         # fpn is the one without
    assert all(torch.allclose(s(lat), x) for s, lat, x in zip(fpn.smooth, laterals, fpn(feats)))
    model = _model(RetinaNet, top_down=False)
    assert model.fpn.top_down is False and _model(RetinaNet).fpn.top_down is True


def test_pyramid_levels_send_each_object_to_the_level_of_its_best_anchor():
    from cvcourse.models.retinanet import pyramid_levels

    model = RetinaNet(width=8, fpn_channels=16)                      # anchors 12-19, 24-38, 48-76 px
    boxes = torch.tensor([[10.0, 10, 24, 24], [40, 40, 70, 70], [20, 20, 80, 80], [50, 8, 66, 72]])
    # 14, 30, 60 px squares; a 16 x 64 box: its best anchor is stride 16's 26 x 54 (IoU 0.46)
    assert pyramid_levels(model, boxes).tolist() == [0, 1, 2, 1]
    assert pyramid_levels(model, torch.zeros(0, 4)).shape == (0,)
