"""Mask R-CNN: pasting, mask targets and loss vs torchvision; the model's interface, losses,
overfitting, bad input; the shipped checkpoints' bars; the chapter's figures and checkers."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection import roi_heads as tv

from cvcourse import pretrained, recipes
from cvcourse.data import ShapesDataset, detection_collate
from cvcourse.models import MaskRCNN
from cvcourse.models.mask_rcnn import mask_targets, maskrcnn_loss, paste_masks_in_image

pytestmark = pytest.mark.usefixtures("one_thread")

LOSSES = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}


def _random_boxes(n, h, w, seed=0):
    """Boxes of 0.3-50 px that overlap the image, many of them across its border."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 1.2, h * 1.2]) - 10
    boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 50 + 0.3], 1)
    keep = (boxes[:, 2] > 1) & (boxes[:, 3] > 1) & (boxes[:, 0] < w - 1) & (boxes[:, 1] < h - 1)
    return boxes[keep]


# ----------------------------------------------------------------------------- ops
@pytest.mark.parametrize("size,m,padding", [((60, 80), 28, 1), ((128, 128), 28, 1),
                                            ((33, 47), 14, 0), ((50, 50), 28, 2)])
def test_paste_masks_matches_torchvision(size, m, padding):
    boxes = _random_boxes(300, *size)
    outside = (boxes[:, :2] < 0).any(1) | (boxes[:, 2] > size[1]) | (boxes[:, 3] > size[0])
    assert int(outside.sum()) > 20                          # partly outside boxes are tested
    masks = torch.rand(len(boxes), 1, m, m, generator=torch.Generator().manual_seed(1))
    ours = paste_masks_in_image(masks, boxes, size, padding=padding)
    ref = tv.paste_masks_in_image(masks, boxes, size, padding=padding)
    assert ours.shape == ref.shape == (len(boxes), 1, *size)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=0)


def test_paste_masks_edge_cases():
    empty = paste_masks_in_image(torch.zeros(0, 1, 28, 28), torch.zeros(0, 4), (20, 30))
    assert empty.shape == (0, 1, 20, 30)
    far = torch.tensor([[100.0, 100.0, 120.0, 130.0], [-40.0, 2.0, -20.0, 9.0]])  # off the image
    assert float(paste_masks_in_image(torch.ones(2, 1, 28, 28), far, (20, 30)).abs().max()) == 0
    # a constant mask of ones pasted without padding covers exactly the box's pixels (+1 each way)
    one = paste_masks_in_image(torch.ones(1, 1, 28, 28), torch.tensor([[2.0, 3.0, 9.0, 5.0]]),
                               (10, 12), padding=0)[0, 0]
    assert torch.equal(one.nonzero().min(0).values, torch.tensor([3, 2]))
    assert torch.equal(one.nonzero().max(0).values, torch.tensor([5, 9]))
    assert float(one.sum()) == pytest.approx(3 * 8)


@pytest.mark.parametrize("masks,boxes,match", [
    (torch.rand(2, 28, 28), torch.rand(2, 4), r"Tensor\[N, 1, M, M\]"),           # no channel
    (torch.rand(2, 1, 28, 14), torch.rand(2, 4), r"square"),                      # not square
    (torch.rand(2, 1, 28, 28), torch.rand(3, 4), r"one per mask"),               # N differs
    (torch.rand(2, 1, 28, 28), torch.rand(2, 5), r"Tensor\[N, 4\]"),
])
def test_paste_masks_bad_input(masks, boxes, match):
    with pytest.raises(ValueError, match=match):
        paste_masks_in_image(masks, boxes, (20, 20))


def test_mask_targets_match_torchvision_project_masks_on_boxes():
    ds = ShapesDataset("val", 3)
    for i in range(3):
        gt = ds[i][1]["masks"]
        boxes = _random_boxes(80, 128, 128, seed=i)
        idx = torch.randint(0, len(gt), (len(boxes),), generator=torch.Generator().manual_seed(i))
        ours = mask_targets(gt, boxes, idx, 28)
        ref = tv.project_masks_on_boxes(gt, boxes, idx, 28)
        assert torch.allclose(ours, ref, atol=1e-6, rtol=0)
    assert mask_targets(gt, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)).shape == (0, 28, 28)
    with pytest.raises(ValueError, match="matched_idxs must index"):
        mask_targets(gt, boxes[:2], torch.tensor([0, len(gt)]))
    with pytest.raises(ValueError, match=r"gt_masks must be a Tensor\[G, H, W\]"):
        mask_targets(gt[0], boxes[:2], torch.tensor([0, 0]))


def test_maskrcnn_loss_matches_torchvision_and_is_zero_without_positives():
    g = torch.Generator().manual_seed(0)
    gt_masks = [torch.rand(3, 40, 40, generator=g) > 0.5, torch.rand(2, 40, 40, generator=g) > 0.5]
    gt_labels = [torch.tensor([1, 3, 2]), torch.tensor([2, 2])]
    boxes = [_random_boxes(12, 40, 40, seed=1)[:5], _random_boxes(12, 40, 40, seed=2)[:4]]
    matched = [torch.tensor([0, 1, 2, 1, 0]), torch.tensor([1, 0, 0, 1])]
    logits = torch.randn(9, 4, 28, 28, generator=g, requires_grad=True)
    ours = maskrcnn_loss(logits, boxes, gt_masks, [lab[i] for lab, i in zip(gt_labels, matched)], matched)
    ref = tv.maskrcnn_loss(logits, boxes, gt_masks, gt_labels, matched)
    assert ours.item() == pytest.approx(ref.item(), abs=1e-6)
    (g1,) = torch.autograd.grad(ours, logits)
    (g2,) = torch.autograd.grad(ref, logits)
    assert torch.allclose(g1, g2, atol=1e-8)
    nothing = torch.zeros(0, 4, 28, 28, requires_grad=True)
    none = maskrcnn_loss(nothing, [torch.zeros(0, 4)], [gt_masks[0]], [torch.zeros(0, dtype=torch.long)],
                         [torch.zeros(0, dtype=torch.long)])
    assert none.item() == 0 and none.requires_grad


# ----------------------------------------------------------------------------- the model
def _batch(n=2, size=64):
    ds = ShapesDataset("train", n, size=size)
    return detection_collate([ds[i] for i in range(n)])


def _small(**kw):
    torch.manual_seed(0)
    small = dict(width=8, representation_size=64, rpn_pre_nms_top_n_train=100,
                 rpn_post_nms_top_n_train=30, rpn_pre_nms_top_n_test=100,
                 rpn_post_nms_top_n_test=30, box_batch_size_per_image=32, mask_channels=16,
                 mask_layers=2, anchor_sizes=(8, 16, 32))
    return MaskRCNN(**{**small, **kw})


@pytest.mark.parametrize("mask_pooler", ["align", "pool"])
def test_training_returns_five_named_finite_losses(mask_pooler):
    images, targets = _batch()
    losses = _small(mask_pooler=mask_pooler).train()(images, targets)
    assert set(losses) == LOSSES
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())


def test_eval_returns_masks_like_torchvision():
    images, _ = _batch(3)
    model = _small(box_score_thresh=0.0).eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 3 and sum(len(d["boxes"]) for d in out) > 0
    for det in out:
        d = len(det["boxes"])
        assert set(det) == {"boxes", "scores", "labels", "masks", "roi_masks"}
        assert det["masks"].shape == (d, 1, 64, 64) and det["roi_masks"].shape == (d, 1, 28, 28)
        assert bool((det["masks"] >= 0).all() and (det["masks"] <= 1).all())
        assert torch.allclose(det["masks"], paste_masks_in_image(det["roi_masks"], det["boxes"], (64, 64)))


def test_eval_with_no_detections_gives_empty_masks():
    images, _ = _batch(2)
    with torch.no_grad():
        out = _small(box_score_thresh=1.0).eval()(images)
    assert all(d["masks"].shape == (0, 1, 64, 64) and d["roi_masks"].shape == (0, 1, 28, 28)
               for d in out)


def test_losses_decrease_when_overfitting_two_scenes():
    images, targets = _batch(2)
    model = _small().train()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    history = []
    for _ in range(25):
        losses = model(images, targets)
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
        history.append({k: v.item() for k, v in losses.items()})
    first = sum(history[0].values())
    last = sum(sum(h.values()) for h in history[-3:]) / 3
    assert last < 0.5 * first
    assert sum(h["loss_mask"] for h in history[-3:]) / 3 < 0.7 * history[0]["loss_mask"]


@pytest.mark.parametrize("change,match", [
    (lambda t: t.pop("masks"), r"targets\[0\]\['masks'\] must be a Tensor\[N, H, W\]"),
    (lambda t: t.update(masks=t["masks"][:, :32]), r"\[\d, 64, 64\]"),
    (lambda t: t.update(masks=t["masks"][:0]), r"one mask per box"),
])
def test_training_bad_targets(change, match):
    images, targets = _batch(2)
    change(targets[0])
    with pytest.raises(ValueError, match=match):
        _small().train()(images, targets)


def test_bad_pooler():
    with pytest.raises(ValueError, match="mask_pooler must be 'align' or 'pool'"):
        _small(mask_pooler="max")


# ----------------------------------------------------------------------------- recipes, checkpoints
def test_recipes_differ_only_in_the_mask_pooler():
    a, b = recipes.get("mask_rcnn"), recipes.get("mask_rcnn_pool")
    assert {k for k in a.config if a.config[k] != b.config[k]} == {"mask_pooler"}
    assert (a.config["mask_pooler"], b.config["mask_pooler"]) == ("align", "pool")
    for field in ("steps", "batch_size", "lr", "warmup", "grad_clip", "seed", "weight_decay"):
        assert getattr(a, field) == getattr(b, field)


def _need(*names):
    missing = [n for n in names if n not in pretrained.available()]
    if missing:
        pytest.skip(f"checkpoint(s) {missing} not shipped yet (python -m cvcourse.train NAME)")


def test_mask_rcnn_checkpoint_meets_its_bar():
    _need("mask_rcnn")
    from cvcourse.recipes.instance import instance_metrics

    scores = instance_metrics(pretrained.load("mask_rcnn", device="cpu"), split="test")
    for key, bar in recipes.get("mask_rcnn").bar.items():
        assert scores[key] >= bar, f"{key} = {scores[key]:.3f} < bar {bar}"


def test_roi_align_masks_beat_roi_pool_at_iou_075():
    _need("mask_rcnn", "mask_rcnn_pool")
    align = pretrained.record("mask_rcnn")["metrics"]
    pool = pretrained.record("mask_rcnn_pool")["metrics"]
    print(f"mask AP@0.75: RoI Align {align['mask_map_75']:.3f}, RoI Pool {pool['mask_map_75']:.3f}")
    assert align["mask_map_75"] >= pool["mask_map_75"]
    assert pool["box_map_50"] >= recipes.get("mask_rcnn_pool").bar["box_map_50"]


# ----------------------------------------------------------------------------- figures, checkers
def _fake_detections(h=64, w=64):
    g = torch.Generator().manual_seed(0)
    boxes = torch.tensor([[5.0, 6.0, 30.0, 28.0], [30.0, 20.0, 60.0, 50.0], [0.0, 40.0, 12.0, 63.0]])
    roi = F.avg_pool2d(torch.rand(3, 1, 32, 32, generator=g), 5, 1)        # smooth 28x28 blobs
    masks = paste_masks_in_image(roi, boxes, (h, w))
    return {"boxes": boxes, "scores": torch.tensor([0.9, 0.8, 0.3]), "labels": torch.tensor([1, 1, 3]),
            "roi_masks": roi, "masks": masks[:, 0] > 0.5}


def test_instance_figure_and_its_speed():
    from matplotlib.figure import Figure

    from cvcourse.widgets import time_figure
    from cvcourse.widgets.instance import instance_figure

    image, det = torch.rand(3, 64, 64), _fake_detections()
    fig = instance_figure(image, det, threshold=0.5, score_thresh=0.5)
    # one Axes: the image with the masks overlaid, then a raw and a pasted mask per detection
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    assert len(fig.axes[0].images) == 1 + 2 * 2                      # two detections above 0.5
    assert len(instance_figure(image, det, score_thresh=0.99).axes[0].images) == 1  # none
    with pytest.raises(ValueError, match="threshold must be in"):
        instance_figure(image, det, threshold=1.5)
    times = time_figure(instance_figure, [dict(image=image, detections=det, threshold=t)
                                          for t in (0.3, 0.5, 0.7)])
    assert sorted(times)[1] < 0.6  # 150 ms on an idle CPU; generous on a shared one


def test_best_mask_iou():
    from cvcourse.widgets.instance import best_mask_iou

    truth = torch.zeros(2, 10, 10, dtype=torch.bool)
    truth[0, :5, :5] = True
    truth[1, 5:, 5:] = True
    pred = torch.zeros(2, 10, 10, dtype=torch.bool)
    pred[0, :5, :4] = True                                     # 20 of object 0's 25 pixels
    pred[1, :5, :5] = True                                     # object 0 exactly
    assert best_mask_iou(pred, truth).tolist() == [1.0, 0.0]
    assert best_mask_iou(pred[:1], truth).tolist() == pytest.approx([0.8, 0.0])
    assert best_mask_iou(pred[:0], truth).tolist() == [0.0, 0.0]


def test_other_instance_figures():
    from cvcourse.widgets.instance import mask_target_figure, pooler_figure, semantic_vs_instance_figure

    image, det = torch.rand(3, 64, 64), _fake_detections()
    semantic = torch.zeros(32, 32, dtype=torch.long)
    semantic[5:20, 5:25] = 1
    assert len(semantic_vs_instance_figure(image, semantic, det, 1).axes) == 3
    target = {"masks": det["masks"][:2], "boxes": det["boxes"][:2]}
    assert len(pooler_figure(image, target, [det, det], ("align", "pool"), zoom=0).axes) == 3
    assert len(mask_target_figure(image, det["masks"][0], det["boxes"][0], det["roi_masks"][0, 0]).axes) == 3


def test_exercise_checkers():
    from cvcourse import exercises
    from cvcourse.ops import roi_align

    def paste_mask(mask, box, size):
        padded = paste_masks_in_image(mask[None, None], box[None], size, padding=0)
        return padded[0, 0]

    def mask_target(gt, boxes, matched, m):
        return roi_align(gt[:, None].float(), torch.cat([matched[:, None].float(), boxes], 1), m)[:, 0]

    def stub(*args):
        raise NotImplementedError

    assert exercises.check_paste_mask(paste_mask) and exercises.check_mask_target(mask_target)
    assert not exercises.check_paste_mask(stub) and not exercises.check_mask_target(stub)
    assert not exercises.check_paste_mask(lambda m, b, s: torch.zeros(s))


def test_instance_widget_on_the_shipped_checkpoint():
    _need("mask_rcnn")
    from cvcourse.widgets.instance import instance_browser_figure, instance_widget

    box = instance_widget(n=3)
    assert set(box.controls) >= {"index", "threshold", "score_thresh"}
    fig = box.figure_fn(index=2, threshold=0.5, score_thresh=0.5, n=3)
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match=r"index must be an int in \[0, 3\)"):
        instance_browser_figure(index=3, n=3)
