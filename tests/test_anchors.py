"""cvcourse.ops.anchors and cvcourse.ops.matching against torchvision.models.detection.

Anchors, the IoU matcher, the sampler and the anchor labels."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from cvcourse.ops.anchors import AnchorGenerator, anchors_for, cell_anchors
from cvcourse.ops.boxes import box_iou
from cvcourse.ops.matching import BalancedPositiveNegativeSampler, Matcher, label_anchors

# --------------------------------------------------------------------------------- anchors


@pytest.mark.parametrize(
    "sizes, ratios",
    [((32,), (0.5, 1.0, 2.0)), ((16, 45, 128), (0.5, 1.0, 2.0)), ((24, 33), (1.0, 0.3, 3.7))],
)
def test_cell_anchors_match_torchvision(sizes, ratios):
    expected = TorchvisionAnchorGenerator((sizes,), (ratios,)).cell_anchors[0]
    ours = cell_anchors(sizes, ratios)
    assert torch.equal(ours, expected)
    assert torch.equal(ours, AnchorGenerator((sizes,), (ratios,)).cell_anchors[0])
    assert (ours[:, :2] <= 0).all() and (ours[:, 2:] >= 0).all()  # centred on the origin


def test_anchor_generator_matches_torchvision_on_several_maps():
    sizes, ratios = ((16, 32), (64,), (128,)), ((0.5, 1.0, 2.0), (1.0,), (0.5, 2.0))
    images = ImageList(torch.zeros(2, 3, 128, 96), [(128, 96), (120, 90)])
    maps = [torch.zeros(2, 8, 32, 24), torch.zeros(2, 8, 16, 12), torch.zeros(2, 8, 8, 6)]
    expected = TorchvisionAnchorGenerator(sizes, ratios)(images, maps)
    ours = AnchorGenerator(sizes, ratios)
    got = ours(images, maps)
    assert len(got) == 2 and all(torch.equal(a, b) for a, b in zip(got, expected))
    assert ours.num_anchors_per_location() == [6, 1, 2]
    assert torch.equal(ours(images.tensors, maps)[0], got[0])  # a plain batch of images works too


def test_anchors_for_is_location_major_and_matches_grid_anchors():
    anchors = anchors_for((5, 7), 16, sizes=(32, 64), ratios=(0.5, 1.0, 2.0))
    assert anchors.shape == (5 * 7 * 6, 4)
    tv_gen = TorchvisionAnchorGenerator(((32, 64),), ((0.5, 1.0, 2.0),))
    assert torch.equal(
        anchors, tv_gen.grid_anchors([[5, 7]], [[torch.tensor(16), torch.tensor(16)]])[0]
    )
    base = cell_anchors((32, 64), (0.5, 1.0, 2.0))
    i, j = 3, 4  # the anchors of cell (3, 4) are rows (3 * 7 + 4) * 6 ... + 6, shifted to (64, 48)
    cell = anchors[(i * 7 + j) * 6 : (i * 7 + j + 1) * 6]
    assert torch.equal(cell, base + torch.tensor([j * 16.0, i * 16.0, j * 16.0, i * 16.0]))
    non_square = anchors_for((2, 3), (8, 4), sizes=(10,), ratios=(1.0,), dtype=torch.float64)
    assert non_square.dtype == torch.float64 and non_square[-1].tolist() == [3.0, 3.0, 13.0, 13.0]


def test_bad_anchor_arguments_raise():
    with pytest.raises(ValueError, match="sizes and aspect_ratios"):
        cell_anchors((), (1.0,))
    with pytest.raises(ValueError, match="stride"):
        anchors_for((4, 4), 0)
    with pytest.raises(ValueError, match="feature_shape"):
        anchors_for((4, 4, 4), 8)
    with pytest.raises(ValueError, match="one grid size and one stride per feature map"):
        AnchorGenerator().grid_anchors([(4, 4), (2, 2)], [(8, 8)])


# -------------------------------------------------------------------------------- matcher


@st.composite
def quality_matrices(draw):
    """IoU-like [M, N] matrices with values on a coarse grid, so ties are common."""
    m, n = draw(st.integers(1, 5)), draw(st.integers(1, 25))
    levels = draw(st.integers(2, 10))
    values = draw(st.lists(st.integers(0, levels), min_size=m * n, max_size=m * n))
    return torch.tensor(values, dtype=torch.float32).view(m, n) / levels


@settings(max_examples=50, deadline=None)
@given(
    quality_matrices(),
    st.sampled_from([(0.7, 0.3), (0.5, 0.5), (0.5, 0.4), (1.0, 0.0)]),
    st.booleans(),
)
def test_matcher_matches_torchvision(quality, thresholds, allow_low_quality_matches):
    high, low = thresholds
    expected = tv_utils.Matcher(high, low, allow_low_quality_matches)(quality.clone())
    ours = Matcher(high, low, allow_low_quality_matches)(quality.clone())
    assert ours.dtype == torch.int64 and torch.equal(ours, expected)


def test_matcher_keeps_ties_of_low_quality_matches():
    quality = torch.tensor([[0.4, 0.4, 0.1, 0.0], [0.0, 0.2, 0.6, 0.6]])  # both ground truths tie
    assert Matcher(0.7, 0.3, allow_low_quality_matches=True)(quality).tolist() == [0, 0, 1, 1]
    assert Matcher(0.7, 0.3)(quality).tolist() == [-2, -2, -2, -2]
    assert Matcher(0.5, 0.3)(quality).tolist() == [-2, -2, 1, 1]


def test_matcher_without_ground_truth_or_predictions():
    """torchvision raises here; background everywhere is the useful answer."""
    assert Matcher(0.7, 0.3, True)(torch.zeros(0, 4)).tolist() == [-1, -1, -1, -1]
    assert Matcher(0.7, 0.3)(torch.zeros(3, 0)).shape == (0,)
    with pytest.raises(ValueError):
        tv_utils.Matcher(0.7, 0.3)(torch.zeros(0, 4))
    with pytest.raises(ValueError, match="low_threshold must be <= high_threshold"):
        Matcher(0.3, 0.7)
    with pytest.raises(ValueError, match="match_quality_matrix"):
        Matcher(0.7, 0.3)(torch.zeros(4))


# -------------------------------------------------------------------------------- sampler


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.sampled_from([-1, 0, 0, 1, 2]), max_size=60), min_size=1, max_size=3),
    st.integers(0, 40),
    st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    st.integers(0, 2**16),
)
def test_sampler_draws_what_torchvision_draws(labels, batch_size, fraction, seed):
    matched = [torch.tensor(image, dtype=torch.int64) for image in labels]
    torch.manual_seed(seed)
    pos, neg = BalancedPositiveNegativeSampler(batch_size, fraction)(matched)
    torch.manual_seed(seed)
    tv_pos, tv_neg = tv_utils.BalancedPositiveNegativeSampler(batch_size, fraction)(matched)
    for image, p, n, tp, tn in zip(matched, pos, neg, tv_pos, tv_neg):
        assert p.dtype == torch.uint8 and torch.equal(p, tp) and torch.equal(n, tn)
        assert (image[p.bool()] >= 1).all() and (image[n.bool()] == 0).all()  # subsets
        num_pos = min(int((image >= 1).sum()), int(batch_size * fraction))
        assert int(p.sum()) == num_pos
        assert int(n.sum()) == min(int((image == 0).sum()), batch_size - num_pos)


def test_sampler_validates_its_arguments():
    with pytest.raises(ValueError, match="positive_fraction"):
        BalancedPositiveNegativeSampler(256, 1.5)


# --------------------------------------------------------------------------- anchor labels


def test_label_anchors_match_torchvision_rpn():
    g = torch.Generator().manual_seed(0)
    anchors = anchors_for((8, 8), 16, sizes=(24, 48), ratios=(0.5, 1.0, 2.0))
    xy = torch.rand(5, 2, generator=g) * 100
    gt = torch.cat([xy, xy + 8 + torch.rand(5, 2, generator=g) * 40], dim=1)
    rpn = RegionProposalNetwork(
        AnchorGenerator(),
        RPNHead(4, 6),
        0.7,
        0.3,
        256,
        0.5,
        dict(training=10, testing=10),
        dict(training=10, testing=10),
        0.7,
    )
    expected_labels, expected_boxes = rpn.assign_targets_to_anchors([anchors], [{"boxes": gt}])
    ours = label_anchors(anchors, gt)
    assert torch.equal(ours.labels.float(), expected_labels[0])
    positive = ours.labels == 1
    assert positive.any() and (ours.matched_gt[~positive] == -1).all()
    assert torch.equal(gt[ours.matched_gt[positive]], expected_boxes[0][positive])
    assert (ours.iou[ours.labels == 0] < 0.3).all()


def test_label_anchors_without_ground_truth_are_all_negative():
    anchors = anchors_for((4, 4), 8)
    ours = label_anchors(anchors, torch.zeros(0, 4))
    assert (ours.labels == 0).all() and (ours.matched_gt == -1).all() and (ours.iou == 0).all()


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 60), st.floats(0, 60), st.floats(4, 40), st.floats(4, 40)),
        max_size=4,
    )
)
def test_every_ground_truth_gets_a_positive_anchor(gt_xywh):
    anchors = anchors_for((6, 6), 12, sizes=(16, 32))
    gt = torch.tensor(gt_xywh, dtype=torch.float32).view(-1, 4)
    gt = torch.cat([gt[:, :2], gt[:, :2] + gt[:, 2:]], dim=1)
    result = label_anchors(anchors, gt)
    assert set(result.labels.unique().tolist()) <= {-1, 0, 1}
    assert set(result.matched_gt[result.labels == 1].tolist()) <= set(range(len(gt)))
    assert ((result.iou >= 0.7) <= (result.labels == 1)).all()  # IoU >= 0.7 implies positive
    if len(gt):  # allow_low_quality_matches: each ground truth's best anchors are positive
        iou = box_iou(gt, anchors)
        best_for_gt = iou == iou.max(dim=1, keepdim=True).values  # (G, A)
        assert (result.labels[best_for_gt.any(0)] == 1).all()


def test_label_anchors_validate_boxes():
    with pytest.raises(ValueError, match="anchors"):
        label_anchors(torch.zeros(4, 5), torch.zeros(0, 4))
    with pytest.raises(ValueError, match="gt_boxes"):
        label_anchors(torch.zeros(4, 4), torch.zeros(3))
