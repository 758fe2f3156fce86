"""Our Faster R-CNN: interface, losses, overfitting, and the RPN's targets vs torchvision's."""

import pytest
import torch

from cvcourse.data import ShapesDataset, detection_collate
from cvcourse.models.faster_rcnn import FasterRCNN
from cvcourse.ops.anchors import anchors_for

LOSSES = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}

pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(n=2, size=64):
    ds = ShapesDataset("train", n, size=size)
    return detection_collate([ds[i] for i in range(n)])


def _small(**kw):
    torch.manual_seed(0)
    small = dict(width=8, representation_size=64, rpn_pre_nms_top_n_train=100,
                 rpn_post_nms_top_n_train=30, rpn_pre_nms_top_n_test=100,
                 rpn_post_nms_top_n_test=30,
                 box_batch_size_per_image=32)
    return FasterRCNN(**{**small, **kw})


@pytest.mark.parametrize("pooler", ["align", "pool"])
def test_training_returns_the_four_named_finite_losses(pooler):
    images, targets = _batch()
    losses = _small(pooler=pooler).train()(images, targets)
    assert set(losses) == LOSSES
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())


def test_eval_returns_boxes_scores_labels_per_image():
    images, _ = _batch(3)
    out = _small().eval()(images)
    assert len(out) == 3
    for det in out:
        assert set(det) == {"boxes", "scores", "labels"}
        d = len(det["boxes"])
        assert det["boxes"].shape == (d, 4) and det["scores"].shape == (d,)
        labels = det["labels"]
        assert labels.dtype == torch.int64 and bool(((labels >= 1) & (labels <= 3)).all())
        assert bool((det["boxes"] >= 0).all() and (det["boxes"] <= 64).all())


def test_losses_decrease_when_overfitting_two_scenes():
    images, targets = _batch(2)
    model = _small(stride=8, anchor_sizes=(8, 16, 32)).train()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    totals = []
    for _ in range(20):
        losses = model(images, targets)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item())
    assert all(torch.isfinite(torch.tensor(totals)))
    assert sum(totals[-3:]) / 3 < 0.6 * sum(totals[:3]) / 3, totals


def test_an_image_without_objects_trains():
    images, targets = _batch(2)
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = _small().train()(images, targets)
    assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()


def test_bad_inputs_raise_value_errors_naming_the_argument():
    images, targets = _batch(2)
    model = _small().train()
    with pytest.raises(ValueError, match="targets"):
        model(images)
    with pytest.raises(ValueError, match="images"):
        model(images[0], targets)
    bad = [dict(t) for t in targets]
    bad[0]["boxes"] = torch.tensor([[10.0, 10.0, 5.0, 20.0]])
    bad[0]["labels"] = torch.tensor([1])
    with pytest.raises(ValueError, match=r"targets\[0\]\['boxes'\]"):
        model(images, bad)


def test_rpn_anchor_labels_match_torchvision():
    from torchvision.models.detection.rpn import AnchorGenerator as TVAnchors
    from torchvision.models.detection.rpn import RegionProposalNetwork as TVRPN
    from torchvision.models.detection.rpn import RPNHead as TVHead

    ours = _small(anchor_sizes=(16, 32, 64)).rpn
    tv = TVRPN(TVAnchors(((16, 32, 64),), ((0.5, 1.0, 2.0),)), TVHead(8, 9), 0.7, 0.3, 256, 0.5,
               dict(training=10, testing=10), dict(training=10, testing=10), 0.7)
    anchors = anchors_for((16, 16), 8, (16, 32, 64), (0.5, 1.0, 2.0))
    _, targets = _batch(4, size=128)
    targets = [{"boxes": t["boxes"]} for t in targets] + [{"boxes": torch.zeros(0, 4)}]
    a_list = [anchors] * len(targets)
    our_labels, our_boxes = ours.assign_targets_to_anchors(a_list, targets)
    tv_labels, tv_boxes = tv.assign_targets_to_anchors(a_list, targets)
    for ol, tl, ob, tb in zip(our_labels, tv_labels, our_boxes, tv_boxes):
        assert torch.equal(ol, tl)
        assert torch.equal(ob[ol == 1], tb[tl == 1])


# ------------------------------------------------------------------------------ R-CNN


def test_rcnn_targets_label_by_iou_half():
    from cvcourse.models.rcnn import rcnn_targets

    targets = [{"boxes": torch.tensor([[10.0, 10, 30, 30]]), "labels": torch.tensor([2])}]
    proposals = [torch.tensor([[10.0, 10, 30, 30], [12, 12, 30, 30], [20, 20, 40, 40]])]
    labels, deltas = rcnn_targets(proposals, targets)
    assert labels[0].tolist() == [2, 2, 0]  # IoU 1, 0.81, 0.14
    assert torch.allclose(deltas[0][0], torch.zeros(4)) and bool((deltas[0][2] == 0).all())
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]
    assert rcnn_targets(proposals, empty)[0][0].tolist() == [0, 0, 0]


def test_rcnn_warps_every_proposal_and_runs_one_pass_each():
    from cvcourse.models.rcnn import RCNN, rcnn_loss, warp_proposals

    images, targets = _batch(2)
    proposals = [t["boxes"] + torch.tensor([1.0, -1, 2, 0]) for t in targets]
    proposals = [torch.cat([p, torch.tensor([[0.0, 0, 20, 20]])]).clamp(0, 64) for p in proposals]
    crops = warp_proposals(images, proposals, 16)
    assert crops.shape == (sum(len(p) for p in proposals), 3, 16, 16)
    whole = warp_proposals(images[:1], [torch.tensor([[0.0, 0, 64, 64]])], 64, sampling_ratio=1)
    torch.testing.assert_close(whole[0], images[0], atol=1e-5, rtol=0)  # warp of the image = image
    torch.manual_seed(0)
    model = RCNN(3, crop_size=16, width=8)
    calls = []
    model.cnn.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    losses = rcnn_loss(model, (images, targets, proposals))
    assert set(losses) == {"loss_classifier", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    model.eval()
    out = model.predict(images, proposals)
    assert calls[-1] == sum(len(p) for p in proposals)  # the CNN's batch is the proposals
    assert len(out) == 2 and set(out[0]) == {"boxes", "scores", "labels"}
    with pytest.raises(ValueError, match="proposals"):
        model.predict(images, proposals[:1])


def test_fastrcnn_loss_matches_torchvision():
    from torchvision.models.detection.roi_heads import fastrcnn_loss as tv_loss

    from cvcourse.models.roi_heads import fastrcnn_loss

    torch.manual_seed(0)
    logits, deltas = torch.randn(12, 4), torch.randn(12, 16)
    labels, targets = torch.randint(0, 4, (12,)), torch.randn(12, 4)
    ours = fastrcnn_loss(logits, deltas, labels, targets)
    theirs = tv_loss(logits, deltas, [labels[:5], labels[5:]], [targets[:5], targets[5:]])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)


def test_an_image_without_proposals_gives_no_detections():
    model = _small().eval()
    proposals = [torch.zeros(0, 4), torch.tensor([[0.0, 0, 9, 9]])]
    out = model.roi_heads(torch.zeros(2, 32, 8, 8), proposals, (64, 64))[0]
    assert len(out) == 2 and out[0]["boxes"].shape == (0, 4)


# --------------------------------------------------------------------------- exercise checker
def _postprocess(probs, boxes, score_thresh, nms_thresh, per_class=True):
    """The chapter's solution; ``per_class=False`` runs one NMS over all classes (wrong)."""
    from cvcourse.ops import nms

    labels = torch.arange(probs.shape[1]).expand_as(probs)                  # (K, C+1)
    b, s, lab = boxes[:, 1:].reshape(-1, 4), probs[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
    keep = s > score_thresh
    b, s, lab = b[keep], s[keep], lab[keep]
    if not per_class:
        keep = nms(b, s, nms_thresh)
        return b[keep], s[keep], lab[keep]
    kept = [torch.where(lab == c)[0][nms(b[lab == c], s[lab == c], nms_thresh)] for c in lab.unique()]
    keep = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long)
    return b[keep], s[keep], lab[keep]


def test_detection_postprocess_checker_passes_right_and_fails_wrong(capsys):
    from cvcourse import exercises

    def stub(*args):
        raise NotImplementedError

    assert exercises.check_detection_postprocess(_postprocess)
    assert capsys.readouterr().out.startswith("PASS")
    assert not exercises.check_detection_postprocess(lambda *a: _postprocess(*a, per_class=False))
    assert capsys.readouterr().out.startswith("FAIL")
    assert not exercises.check_detection_postprocess(stub)
    assert "not implemented" in capsys.readouterr().out
