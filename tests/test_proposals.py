"""Selective-search proposals and proposal recall."""

import numpy as np
import pytest
import torch

from cvcourse.proposals import adjacent_pairs, proposal_recall, propose, recall_curve, region_histograms

pytestmark = pytest.mark.usefixtures("one_thread")


def test_adjacent_pairs_from_shifted_label_maps():
    labels = np.array([[0, 0, 1],
                       [0, 2, 1],
                       [3, 3, 3]])
    pairs = {tuple(p) for p in adjacent_pairs(labels).tolist()}
    assert pairs == {(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)}


def test_histograms_count_each_region_and_sum_to_one():
    labels = np.array([[0, 1], [1, 1]])
    values = np.array([[0.1, 0.9], [0.95, 0.2]])[..., None]  # (2, 2, 1)
    hist = region_histograms(labels, values, bins=2, n=2)
    np.testing.assert_allclose(hist, [[1, 0], [1 / 3, 2 / 3]])


def test_a_lone_square_is_proposed_exactly():
    image = torch.full((3, 64, 64), 0.2)
    image[:, 20:40, 10:34] = torch.tensor([0.9, 0.1, 0.3])[:, None, None]
    boxes = propose(image, max_proposals=50, strategies=(("rgb", 100),))
    assert boxes.shape[1] == 4 and 1 <= len(boxes) <= 50
    assert bool((boxes[:, 2:] >= boxes[:, :2]).all() and (boxes >= 0).all() and (boxes <= 64).all())
    assert torch.tensor([10.0, 20, 34, 40]).tolist() in boxes.tolist()


def test_proposals_are_ranked_deduplicated_and_capped():
    from cvcourse.data import make_scene
    from cvcourse.ops.boxes import box_iou

    scene = make_scene(0, split="test", size=64)
    boxes = propose(scene["image"], max_proposals=30, strategies=(("rgb", 100), ("hsv", 100)))
    assert len(boxes) <= 30
    iou = box_iou(boxes, boxes).fill_diagonal_(0)
    assert float(iou.max()) <= 0.9 + 1e-6


def test_proposal_recall_and_curve_on_a_hand_example():
    gt = [{"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])}]
    props = [torch.tensor([[0.0, 0, 10, 11], [50, 50, 60, 60], [21, 21, 30, 30]])]
    assert proposal_recall(props, gt) == 0.5 * (1 + 1)
    assert recall_curve(props, gt, counts=[1, 2, 3]) == {1: 0.5, 2: 0.5, 3: 1.0}
    assert proposal_recall([torch.zeros(0, 4)], gt) == 0.0


def test_bad_image_raises():
    with pytest.raises(ValueError, match="image"):
        propose(torch.rand(64, 64))
