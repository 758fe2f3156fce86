"""DETR: the Hungarian matcher vs brute force, the set loss, the model's interface, bad input,
the shipped checkpoint's bar, the widget figures and the exercise checkers."""

import itertools

import pytest
import torch
import torch.nn.functional as F
import torchvision
from matplotlib.figure import Figure

from cvcourse.data import ShapesDataset, detection_collate
from cvcourse.models.detr import (
    DETR,
    NO_OBJECT,
    DETRConfig,
    SetCriterion,
    SMCADecoder,
    SpatialPrior,
    TransformerDecoder,
    sine_position_encoding,
    upgrade_state_dict_keys,
)
from cvcourse.ops.hungarian import HungarianMatcher

pytestmark = pytest.mark.usefixtures("one_thread")

LOSSES = {"loss_ce", "loss_bbox", "loss_giou"}


def _boxes(g, n):
    centre = torch.rand(n, 2, generator=g) * 0.6 + 0.2
    return torch.cat([centre, torch.rand(n, 2, generator=g) * 0.35 + 0.02], 1)   # cxcywh in [0, 1]


def _case(g, B, Q, sizes, K=4):
    outputs = {"pred_logits": torch.randn(B, Q, K, generator=g) * 2,
               "pred_boxes": _boxes(g, B * Q).view(B, Q, 4)}
    targets = [{"labels": torch.randint(1, K, (n,), generator=g), "boxes": _boxes(g, n)} for n in sizes]
    return outputs, targets


def _small(**kw):
    torch.manual_seed(0)
    return DETR(**{**dict(width=8, d_model=32, nhead=2, dim_feedforward=64, num_queries=6), **kw})


def _batch(n=2, size=64, max_objects=2):
    ds = ShapesDataset("train", n, size=size, max_objects=max_objects)
    images, targets = detection_collate([ds[i] for i in range(n)])
    return images, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]


# ------------------------------------------------------------------------------- matcher
@pytest.mark.parametrize("Q", [1, 3, 5, 6])
def test_matcher_finds_the_minimum_cost_assignment_of_brute_force(Q):
    g = torch.Generator().manual_seed(Q)
    matcher = HungarianMatcher(1.0, 5.0, 2.0)
    for _ in range(6):
        sizes = [int(torch.randint(0, Q + 1, (1,), generator=g)) for _ in range(3)] + [Q]
        outputs, targets = _case(g, len(sizes), Q, sizes)
        costs = matcher.cost_matrix(outputs, targets)
        for (rows, cols), cost, n in zip(matcher(outputs, targets), costs, sizes):
            assert rows.dtype == cols.dtype == torch.int64 and len(rows) == len(cols) == n
            assert sorted(cols.tolist()) == list(range(n)) and len(set(rows.tolist())) == n
            assert rows.tolist() == sorted(rows.tolist())
            best = min(sum(float(cost[p[j], j]) for j in range(n))
                       for p in itertools.permutations(range(Q), n))   # every injective assignment
            assert float(cost[rows, cols].sum()) == pytest.approx(best, abs=1e-5)


def test_cost_matrix_matches_a_direct_computation_with_torchvision_ops():
    g = torch.Generator().manual_seed(0)
    outputs, targets = _case(g, 2, 5, [3, 2])
    parts = HungarianMatcher(2.0, 3.0, 4.0).cost_parts(outputs, targets)
    tv = torchvision.ops
    for b, (t, p) in enumerate(zip(targets, parts)):
        prob = outputs["pred_logits"][b].softmax(-1)
        pb, tb = outputs["pred_boxes"][b], t["boxes"]
        giou = tv.generalized_box_iou(tv.box_convert(pb, "cxcywh", "xyxy"), tv.box_convert(tb, "cxcywh", "xyxy"))
        l1 = (pb[:, None] - tb[None]).abs().sum(-1)
        torch.testing.assert_close(p["class"], -prob[:, t["labels"]], atol=1e-6, rtol=0)
        torch.testing.assert_close(p["bbox"], l1, atol=1e-5, rtol=0)
        torch.testing.assert_close(p["giou"], -giou, atol=1e-6, rtol=0)
        torch.testing.assert_close(p["total"], -2 * prob[:, t["labels"]] + 3 * l1 - 4 * giou, atol=1e-5, rtol=0)


def test_matcher_pairs_each_object_with_the_query_that_predicts_it():
    boxes = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.8, 0.3, 0.1, 0.3]])
    logits = torch.zeros(1, 3, 4)
    outputs = {"pred_logits": logits, "pred_boxes": boxes[None]}
    targets = [{"labels": torch.tensor([2, 1]), "boxes": boxes[[2, 0]]}]   # object 0 = query 2, 1 = query 0
    rows, cols = HungarianMatcher()(outputs, targets)[0]
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 2, 1: 0}


def test_empty_targets_give_empty_indices():
    g = torch.Generator().manual_seed(0)
    outputs, targets = _case(g, 3, 4, [0, 2, 0])
    out = HungarianMatcher()(outputs, targets)
    for (rows, cols), n in zip(out, [0, 2, 0]):
        assert len(rows) == len(cols) == n and rows.dtype == torch.int64
    outputs, targets = _case(g, 2, 4, [0, 0])
    assert all(len(r) == 0 and len(c) == 0 for r, c in HungarianMatcher()(outputs, targets))


@pytest.mark.parametrize("change, message", [
    (lambda o, t: (o, t[:1]), "mismatched batch sizes"),
    (lambda o, t: (o, t + t), "mismatched batch sizes"),
    (lambda o, t: ({"pred_logits": o["pred_logits"]}, t), "pred_boxes"),
    (lambda o, t: ({**o, "pred_boxes": o["pred_boxes"][..., :3]}, t), "pred_boxes"),
    (lambda o, t: ({**o, "pred_boxes": o["pred_boxes"][:, :2]}, t), "share B and Q"),
    (lambda o, t: (o, [{"labels": torch.tensor([9]), "boxes": torch.rand(1, 4)}, t[1]]), "labels"),
    (lambda o, t: (o, [{"labels": torch.tensor([1, 2]), "boxes": torch.rand(1, 4)}, t[1]]), "labels"),
    (lambda o, t: (o, [{"labels": torch.ones(5, dtype=torch.long), "boxes": torch.rand(5, 4)}, t[1]]),
     "only Q = 4 queries"),
    (lambda o, t: (o, {"labels": 1}), "list of dicts"),
])
def test_matcher_rejects_bad_input_with_a_clear_error(change, message):
    g = torch.Generator().manual_seed(0)
    outputs, targets = change(*_case(g, 2, 4, [1, 2]))
    with pytest.raises(ValueError, match=message):
        HungarianMatcher()(outputs, targets)


def test_matcher_rejects_negative_weights_and_non_finite_costs():
    with pytest.raises(ValueError, match="cost_bbox"):
        HungarianMatcher(cost_bbox=-1.0)
    with pytest.raises(ValueError, match="at least one"):
        HungarianMatcher(0, 0, 0)
    g = torch.Generator().manual_seed(0)
    outputs, targets = _case(g, 1, 3, [2])
    outputs["pred_logits"][0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="not finite"):
        HungarianMatcher()(outputs, targets)


# ------------------------------------------------------------------------------- set loss
def test_set_criterion_equals_the_losses_written_out():
    g = torch.Generator().manual_seed(0)
    outputs, targets = _case(g, 2, 4, [2, 1])
    crit = SetCriterion(3, HungarianMatcher(), eos_coef=0.1, weight_ce=1.0, weight_bbox=5.0, weight_giou=2.0)
    losses = crit(outputs, targets)
    indices = HungarianMatcher()(outputs, targets)
    classes = torch.full((2, 4), NO_OBJECT)
    src, tgt = [], []
    for b, ((rows, cols), t) in enumerate(zip(indices, targets)):
        classes[b, rows] = t["labels"][cols]
        src.append(outputs["pred_boxes"][b, rows])
        tgt.append(t["boxes"][cols])
    src, tgt = torch.cat(src), torch.cat(tgt)
    weight = torch.tensor([0.1, 1.0, 1.0, 1.0])
    ce = F.cross_entropy(outputs["pred_logits"].reshape(-1, 4), classes.flatten(), weight)
    tv = torchvision.ops
    giou = torch.diag(tv.generalized_box_iou(tv.box_convert(src, "cxcywh", "xyxy"),
                                             tv.box_convert(tgt, "cxcywh", "xyxy")))
    torch.testing.assert_close(losses["loss_ce"], ce)
    torch.testing.assert_close(losses["loss_bbox"], 5.0 * (src - tgt).abs().sum() / 3)
    torch.testing.assert_close(losses["loss_giou"], 2.0 * (1 - giou).sum() / 3)


def test_set_criterion_without_objects_only_teaches_no_object():
    g = torch.Generator().manual_seed(0)
    outputs, targets = _case(g, 2, 4, [0, 0])
    outputs["pred_logits"].requires_grad_(True)
    outputs["pred_boxes"].requires_grad_(True)
    losses = SetCriterion(3, HungarianMatcher())(outputs, targets)
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_giou"].item() == 0.0
    expected = F.cross_entropy(outputs["pred_logits"].reshape(-1, 4), torch.zeros(8, dtype=torch.long))
    torch.testing.assert_close(losses["loss_ce"], expected)   # eos weight cancels in the weighted mean
    sum(losses.values()).backward()
    assert torch.isfinite(outputs["pred_logits"].grad).all()


def test_set_criterion_rejects_mismatched_batch_sizes_and_bad_eos_coef():
    g = torch.Generator().manual_seed(0)
    outputs, targets = _case(g, 2, 4, [1, 1])
    with pytest.raises(ValueError, match="mismatched batch sizes"):
        SetCriterion(3, HungarianMatcher())(outputs, targets[:1])
    with pytest.raises(ValueError, match="eos_coef"):
        SetCriterion(3, HungarianMatcher(), eos_coef=0.0)


# ------------------------------------------------------------------------------- model
def test_sine_position_encoding_is_distinct_per_cell_and_checks_d_model():
    pos = sine_position_encoding(64, 8, 8)
    assert pos.shape == (64, 64) and pos.abs().max() <= 1
    assert torch.cdist(pos, pos)[~torch.eye(64, dtype=torch.bool)].min() > 0.1
    with pytest.raises(ValueError, match="multiple of 4"):
        sine_position_encoding(30, 4, 4)


def test_spatial_prior_is_a_gaussian_window_around_the_predicted_centre():
    torch.manual_seed(0)
    prior = SpatialPrior(16, nhead=2)
    query = torch.randn(3, 5, 16)
    ys, xs = torch.meshgrid((torch.arange(8) + 0.5) / 8, (torch.arange(8) + 0.5) / 8, indexing="ij")
    grid = torch.stack((xs, ys), -1).reshape(64, 2)
    bias, centre = prior(query, grid)
    assert bias.shape == (3 * 2, 5, 64) and centre.shape == (3, 5, 2)
    width = 0.15                                                         # the initial width, all heads
    expected = -0.5 * ((grid[None, None] - centre[:, :, None]) / width).pow(2).sum(-1)   # (3, 5, 64)
    torch.testing.assert_close(bias.view(3, 2, 5, 64), expected[:, None].expand(3, 2, 5, 64))
    nearest = (grid[None, None] - centre[:, :, None]).norm(dim=-1).argmin(-1)            # (3, 5)
    assert torch.equal(bias.view(3, 2, 5, 64)[:, 0].argmax(-1), nearest)


def test_training_returns_the_named_losses_and_auxiliary_losses_per_decoder_layer():
    images, targets = _batch()
    model = _small(num_decoder_layers=3).train()
    losses = model(images, targets)
    assert set(losses) == LOSSES | {f"{k}_{i}" for k in LOSSES for i in (0, 1)}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert set(_small(aux_loss=False).train()(images, targets)) == LOSSES
    losses = _small(spatial_prior=True).train()(images, targets)
    assert set(losses) == LOSSES | {f"{k}_0" for k in LOSSES}
    assert all(torch.isfinite(v) for v in losses.values())


def test_forward_raw_gives_detrs_outputs():
    images, _ = _batch(3)
    out = _small(num_decoder_layers=2).eval().forward_raw(images)
    assert out["pred_logits"].shape == (3, 6, 4) and out["pred_boxes"].shape == (3, 6, 4)
    assert bool(((out["pred_boxes"] > 0) & (out["pred_boxes"] < 1)).all())
    assert len(out["aux_outputs"]) == 1 and out["aux_outputs"][0]["pred_boxes"].shape == (3, 6, 4)


def test_eval_returns_one_detection_per_query_in_torchvisions_format():
    images, _ = _batch(3)
    out = _small().eval()(images)
    assert len(out) == 3
    for det in out:
        assert set(det) == {"boxes", "scores", "labels"}
        assert det["boxes"].shape == (6, 4) and det["scores"].shape == (6,)
        assert det["labels"].dtype == torch.int64 and bool(((det["labels"] >= 1) & (det["labels"] <= 3)).all())
        assert bool((det["boxes"] >= 0).all() and (det["boxes"] <= 64).all())
        assert bool((det["boxes"][:, 2:] >= det["boxes"][:, :2]).all())
        assert bool(((det["scores"] > 0) & (det["scores"] < 1)).all())


def test_config_and_keyword_arguments_build_the_same_model():
    cfg = DETRConfig(width=8, d_model=32, nhead=2, dim_feedforward=64, num_queries=6, spatial_prior=True)
    torch.manual_seed(0)
    from_config = DETR(cfg)
    from_kwargs = _small(spatial_prior=True)
    assert from_config.config == from_kwargs.config == cfg
    for (k1, v1), (k2, v2) in zip(from_config.state_dict().items(), from_kwargs.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    assert isinstance(from_config.decoder, SMCADecoder)
    assert type(_small().decoder) is TransformerDecoder
    with pytest.raises(TypeError, match="unknown settings.*hidden_dim"):
        DETR(hidden_dim=32)


@pytest.mark.parametrize("spatial_prior", [False, True])
def test_checkpoints_with_the_earlier_key_names_load_and_give_the_same_outputs(spatial_prior):
    """Checkpoints saved before the decoder was a module said decoder.0., decoder_norm.,
    spatial_prior.: they load into today's DETR and give identical outputs."""
    model = _small(spatial_prior=spatial_prior).eval()
    old_names = {"decoder.layers.": "decoder.", "decoder.norm.": "decoder_norm.", "decoder.prior.": "spatial_prior."}

    def old(key):
        for new, was in old_names.items():
            if key.startswith(new):
                return was + key[len(new):]
        return key

    old_state = {old(k): v for k, v in model.state_dict().items()}
    assert "decoder.0.self_attn.in_proj_weight" in old_state and "decoder_norm.weight" in old_state
    assert {upgrade_state_dict_keys(k) for k in old_state} == set(model.state_dict())
    fresh = _small(spatial_prior=spatial_prior, num_classes=3)
    torch.nn.init.zeros_(fresh.class_embed.weight)             # differs until loaded
    fresh.load_state_dict(old_state)                          # strict: no missing or unexpected key
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a, b = model.forward_raw(images), fresh.eval().forward_raw(images)
    assert torch.equal(a["pred_logits"], b["pred_logits"]) and torch.equal(a["pred_boxes"], b["pred_boxes"])


def test_model_rejects_bad_input():
    images, targets = _batch()
    model = _small().train()
    with pytest.raises(ValueError, match="one dict per image"):
        model(images, targets[:1])
    with pytest.raises(ValueError, match="targets must be given"):
        model(images)
    with pytest.raises(ValueError, match=r"1\.\.3"):
        model(images, [{"boxes": t["boxes"], "labels": torch.zeros_like(t["labels"])} for t in targets])
    with pytest.raises(ValueError, match=r"Tensor\[B, 3, H, W\]"):
        model.eval()(images[0])
    with pytest.raises(ValueError, match="frozen_backbone_layers"):
        DETR(frozen_backbone_layers=99)


def test_images_without_objects_train_and_give_zero_box_losses():
    images, _ = _batch()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}] * 2
    losses = _small().train()(images, empty)
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_giou"].item() == 0.0
    assert torch.isfinite(losses["loss_ce"])
    sum(losses.values()).backward()


@pytest.mark.parametrize("spatial_prior", [False, True])
def test_losses_decrease_when_overfitting_two_scenes(spatial_prior):
    images, targets = _batch(2)
    model = _small(spatial_prior=spatial_prior).train()
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    totals = []
    for _ in range(40):
        losses = model(images, targets)
        total = sum(v for k, v in losses.items() if k in LOSSES)
        opt.zero_grad()
        sum(losses.values()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1)
        opt.step()
        totals.append(total.item())
    assert all(torch.isfinite(torch.tensor(totals)))
    assert sum(totals[-5:]) / 5 < 0.5 * sum(totals[:5]) / 5


def test_frozen_backbone_layers_get_no_gradient_and_keep_their_statistics():
    images, targets = _batch()
    model = _small(frozen_backbone_layers=5).train()
    frozen_bn = model.backbone[1][1]
    before = frozen_bn.running_mean.clone()
    assert not frozen_bn.training and model.backbone[6][1].training
    sum(model(images, targets).values()).backward()
    assert all(p.grad is None for p in model.backbone[:5].parameters())
    assert all(p.grad is not None for p in model.backbone[6].parameters())
    assert torch.equal(frozen_bn.running_mean, before)


# ------------------------------------------------------------------------------- checkpoint
def _checkpoint():
    from cvcourse import pretrained

    if "detr" not in pretrained.available():
        pytest.skip("the detr checkpoint is not installed yet (python -m cvcourse.train detr)")
    return pretrained.load("detr", device="cpu")


def test_shipped_checkpoint_meets_its_bar_on_the_test_split():
    from cvcourse.recipes import get

    recipe = get("detr")
    metrics = recipe.evaluate(_checkpoint(), split="test")
    for key, bar in recipe.bar.items():
        assert metrics[key] >= bar, f"{key} = {metrics[key]:.3f} < bar {bar}"


def test_recipe_loads_the_classifier_into_the_first_backbone_layers():
    from cvcourse import pretrained
    from cvcourse.recipes.detr import detr_with_pretrained_backbone

    if "classifier" not in pretrained.available():
        pytest.skip("the classifier checkpoint is not installed")
    model = detr_with_pretrained_backbone("classifier", width=16, frozen_backbone_layers=8)
    clf = pretrained.load("classifier", device="cpu")
    torch.testing.assert_close(model.backbone[7][0].weight, clf.features[7][0].weight)
    assert not any(p.requires_grad for p in model.backbone[:8].parameters())


# ------------------------------------------------------------------------------- widget, exercises
def test_widget_figures_draw_for_any_detr():
    from cvcourse.data.scenes import held_out_scenes
    from cvcourse.widgets.detr import query_centres_figure, query_data, query_explorer, query_explorer_figure

    images, targets = held_out_scenes("val", 12, max_objects=2)
    data = query_data(_small(), images, targets)
    assert data["prob"].shape == (12, 6, 4) and len(data["matches"]) == 12
    assert all(len(r) == len(t["labels"]) for (r, _), t in zip(data["matches"], targets))
    assert isinstance(query_centres_figure(data), Figure)
    for q, s in ((0, 0), (5, 11)):
        assert isinstance(query_explorer_figure(q, s, data), Figure)
    with pytest.raises(ValueError, match="query"):
        query_explorer_figure(6, 0, data)
    widget = query_explorer(data=data)
    assert set(widget.controls) == {"query", "scene", "data"}


def test_exercise_checkers_pass_the_reference_and_fail_a_wrong_answer():
    from scipy.optimize import linear_sum_assignment

    from cvcourse import exercises

    def cost(logits, boxes, labels, tgt, wc, wb, wg):
        return HungarianMatcher(wc, wb, wg).cost_matrix(
            {"pred_logits": logits[None], "pred_boxes": boxes[None]}, [{"labels": labels, "boxes": tgt}])[0]

    def no_giou(logits, boxes, labels, tgt, wc, wb, wg):
        return -wc * logits.softmax(-1)[:, labels] + wb * torch.cdist(boxes, tgt, p=1)

    assert exercises.check_matching_cost(cost)
    assert not exercises.check_matching_cost(no_giou)
    assert exercises.check_set_matching(lambda c: linear_sum_assignment(c.numpy()))
    assert not exercises.check_set_matching(lambda c: (list(range(c.shape[1])), list(range(c.shape[1]))))
