"""Bad input to the public ops: a ValueError/TypeError naming the argument, or the right answer."""

import pytest
import torch
import torchvision

from cvcourse import ops

NAN, INF = float("nan"), float("inf")
B = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]])
S = torch.tensor([0.9, 0.8, 0.7])
IDX = torch.tensor([0, 0, 1])
X = torch.rand(1, 2, 8, 8)

CASES = [  # (call, error type, message)
    # nms / batched_nms thresholds
    (lambda: ops.nms(B, S, 50), ValueError, r"iou_threshold must be a number in \[0, 1\], got 50"),
    (lambda: ops.nms(B, S, -1), ValueError, "iou_threshold must be a number in"),
    (lambda: ops.nms(B, S, NAN), ValueError, "iou_threshold must be a number in"),
    (lambda: ops.nms(B, S, INF), ValueError, "iou_threshold must be a number in"),
    (lambda: ops.nms(B, S, "0.5"), ValueError, "iou_threshold must be a number in"),
    (lambda: ops.nms(B, S, None), ValueError, "iou_threshold must be a number in"),
    (lambda: ops.nms(B, S, True), ValueError, "iou_threshold must be a number in"),
    (lambda: ops.batched_nms(B, S, IDX, 1.5), ValueError, "iou_threshold must be a number in"),
    (lambda: ops.batched_nms(B, S, IDX, NAN), ValueError, "iou_threshold must be a number in"),
    (lambda: ops.batched_nms(B, S, IDX, -0.01), ValueError, "iou_threshold must be a number in"),
    # nms boxes and scores
    (lambda: ops.nms(B[:, :3], S, 0.5), ValueError, r"boxes must be a Tensor\[N, 4\]"),
    (lambda: ops.nms(torch.cat([B, B[:, :1]], 1), S, 0.5), ValueError, r"boxes must be a Tensor\[N, 4\]"),
    (lambda: ops.nms(B[0], S[:1], 0.5), ValueError, r"boxes must be a Tensor\[N, 4\]"),
    (lambda: ops.nms(B.long(), S, 0.5), TypeError, "floating point"),
    (lambda: ops.nms(B.tolist(), S, 0.5), TypeError, "boxes must be a Tensor"),
    (lambda: ops.nms(torch.tensor([[0.0, 0, NAN, 1]]), S[:1], 0.5), ValueError, "boxes must have finite"),
    (lambda: ops.nms(torch.tensor([[0.0, 0, INF, 1]]), S[:1], 0.5), ValueError, "boxes must have finite"),
    (lambda: ops.nms(B, torch.tensor([0.9, NAN, 0.7]), 0.5), ValueError, "scores must not be NaN"),
    (lambda: ops.nms(B, S[:2], 0.5), ValueError, "scores has 2 entries but there are 3 boxes"),
    (lambda: ops.nms(B, S.long(), 0.5), TypeError, "scores must be a floating point"),
    (lambda: ops.batched_nms(B, S, IDX.float(), 0.5), TypeError, "idxs must be an integer"),
    (lambda: ops.batched_nms(B, S, IDX.bool(), 0.5), TypeError, "idxs must be an integer"),
    (lambda: ops.batched_nms(B, S, IDX[:2], 0.5), ValueError, "idxs has 2 entries"),
    (lambda: ops.batched_nms(torch.tensor([[0.0, 0, 1, NAN]]), S[:1], IDX[:1], 0.5), ValueError, "finite"),
    # box_iou and friends
    (lambda: ops.box_iou(B, torch.tensor([[0.0, 0, NAN, 1]])), ValueError, "boxes2 must have finite"),
    (lambda: ops.box_iou(torch.tensor([[0.0, 0, INF, 1]]), B), ValueError, "boxes1 must have finite"),
    (lambda: ops.box_iou(B, torch.tensor([[5.0, 0, 1, 1]])), ValueError, "boxes2 must be xyxy"),
    (lambda: ops.box_iou(B[:, :3], B), ValueError, r"boxes1 must be a Tensor\[N, 4\]"),
    (lambda: ops.generalized_box_iou(B, torch.tensor([[0.0, 0, 1, NAN]])), ValueError, "boxes2 must have finite"),
    (lambda: ops.box_convert(B, "xyxy", "yxyx"), ValueError, "out_fmt must be one of"),
    (lambda: ops.box_convert(B, "ltrb", "xyxy"), ValueError, "in_fmt must be one of"),
    (lambda: ops.clip_boxes_to_image(B, (10,)), ValueError, "size must be the image's"),
    (lambda: ops.clip_boxes_to_image(B, (NAN, 5)), ValueError, "size must be the image's"),
    (lambda: ops.clip_boxes_to_image(B, (-1, 5)), ValueError, "size must be the image's"),
    (lambda: ops.clip_boxes_to_image(B, 10), ValueError, "size must be the image's"),
    (lambda: ops.remove_small_boxes(B, NAN), ValueError, "min_size must be a finite number"),
    (lambda: ops.remove_small_boxes(B, -1), ValueError, "min_size must be a finite number"),
    (lambda: ops.BoxCoder(weights=(1.0, 1.0, 1.0)), ValueError, "weights must be four numbers"),
    (lambda: ops.BoxCoder(weights=(1.0, 1.0, 0.0, 1.0)), ValueError, "weights must be four numbers"),
    (lambda: ops.BoxCoder(weights=(1.0, NAN, 1.0, 1.0)), ValueError, "weights must be four numbers"),
    (lambda: ops.BoxCoder(bbox_xform_clip=NAN), ValueError, "bbox_xform_clip must be"),
    (lambda: ops.BoxCoder().decode(torch.zeros(3, 5), B), ValueError, r"rel_codes must be a Tensor\[N, 4\]"),
    # RoI ops
    (lambda: ops.roi_align(X, [B], 2, spatial_scale=0), ValueError, "spatial_scale must be a positive"),
    (lambda: ops.roi_align(X, [B], 2, spatial_scale=NAN), ValueError, "spatial_scale must be a positive"),
    (lambda: ops.roi_align(X, [B], 2, spatial_scale=True), ValueError, "spatial_scale must be a positive"),
    (lambda: ops.roi_align(X, [B], 0), ValueError, "output_size must be an int > 0"),
    (lambda: ops.roi_align(X, [B], (2, 2, 2)), ValueError, "output_size must be"),
    (lambda: ops.roi_align(X, [B], 2.5), ValueError, "output_size must be"),
    (lambda: ops.roi_align(X, [B], 2, sampling_ratio=1.5), ValueError, "sampling_ratio must be an int"),
    (lambda: ops.roi_align(X, [B], 2, aligned="yes"), ValueError, "aligned must be True or False"),
    (lambda: ops.roi_align(X, [torch.tensor([[0.0, 0, NAN, 1]])], 2), ValueError, "finite coordinates"),
    (lambda: ops.roi_align(X, [torch.tensor([[5.0, 0, 1, 1]])], 2), ValueError, "x2 >= x1"),
    (lambda: ops.roi_align(X, torch.tensor([[1.0, 0, 0, 1, 1]]), 2), ValueError, r"a batch index in \[0, 1\)"),
    (lambda: ops.roi_align(X, torch.tensor([[0.5, 0, 0, 1, 1]]), 2), ValueError, "a batch index"),
    (lambda: ops.roi_align(X, [B, B], 2), ValueError, "one Tensor per image"),
    (lambda: ops.roi_align(X, B, 2), ValueError, r"boxes must be a Tensor\[K, 5\]"),
    (lambda: ops.roi_align(X.long(), [B], 2), ValueError, "input must be a floating point"),
    (lambda: ops.roi_align(X[0], [B], 2), ValueError, r"input must be a floating point Tensor\[N, C, H, W\]"),
    (lambda: ops.roi_pool(X, [B], 2, spatial_scale=-1), ValueError, "spatial_scale must be a positive"),
    (lambda: ops.roi_pool(X, [torch.tensor([[0.0, 0, 1, INF]])], 2), ValueError, "finite coordinates"),
    (lambda: ops.roi_pool(X, [B.long()], 2), ValueError, "boxes must be floating point"),
    (lambda: ops.roi_pool(X, [B], -2), ValueError, "output_size must be"),
    # upsampling
    (lambda: ops.nearest_upsample(X, 0), ValueError, "scale_factor must be an int >= 1"),
    (lambda: ops.nearest_upsample(X, 1.5), ValueError, "scale_factor must be an int >= 1"),
    (lambda: ops.nearest_upsample(X, True), ValueError, "scale_factor must be an int >= 1"),
    (lambda: ops.nearest_upsample(X[0], 2), ValueError, r"x must be a 4-D tensor"),
    (lambda: ops.bed_of_nails(X, (2, -1)), ValueError, "scale_factor must be"),
    (lambda: ops.max_pool2d_with_indices(X, 0), ValueError, "kernel_size must be"),
    (lambda: ops.max_pool2d_with_indices(X, 2, stride=0), ValueError, "stride must be"),
    (lambda: ops.max_pool2d_with_indices(X, 2, padding=2), ValueError, "padding must be at most half"),
    (lambda: ops.max_pool2d_with_indices(X, 2.0), ValueError, "kernel_size must be"),
    (lambda: ops.max_unpool2d(X, torch.zeros_like(X).long() + 999, 2), ValueError, "indices"),
    (lambda: ops.max_unpool2d(X, torch.zeros_like(X), 2), ValueError, "indices must be int64"),
    (lambda: ops.conv_transpose2d(X, torch.rand(2, 1, 3, 3), stride=0), ValueError, "stride must be"),
    (lambda: ops.conv_transpose2d(X, torch.rand(2, 1, 3, 3), padding=-1), ValueError, "padding must be"),
    (lambda: ops.conv_transpose2d(X, torch.rand(2, 1, 3, 3), groups=0), ValueError, "groups must be"),
    (lambda: ops.conv_transpose2d(X, torch.rand(3, 1, 3, 3)), ValueError, "weight|Cin"),
    (lambda: ops.bilinear_upsample_weight(0, 2), ValueError, "channels must be a positive int"),
    (lambda: ops.bilinear_upsample_weight(2, 0), ValueError, "scale_factor must be"),
]


@pytest.mark.parametrize("call, error, match", CASES)
def test_ops_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0, 0, 1, torch.tensor(0.5)])
def test_nms_accepts_every_threshold_in_the_closed_interval(threshold):
    ours = ops.nms(B, S, threshold)
    assert torch.equal(ours, torchvision.ops.nms(B, S, float(threshold)))


def test_batched_nms_is_right_for_negative_coordinates():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 100 - 80  # most boxes left of / above the origin
    boxes = torch.cat([xy, xy + torch.rand(200, 2, generator=g) * 30 + 1], 1)
    scores, idxs = torch.rand(200, generator=g), torch.randint(0, 4, (200,), generator=g)
    ref = torch.cat([torch.nonzero(idxs == c)[:, 0][torchvision.ops.nms(boxes[idxs == c], scores[idxs == c], 0.3)]
                     for c in range(4)])
    ours = ops.batched_nms(boxes, scores, idxs, 0.3)
    assert sorted(ours.tolist()) == sorted(ref.tolist())
    assert torch.equal(ours, ref[torch.sort(scores[ref], descending=True, stable=True).indices])


def test_empty_input_gives_empty_output():
    empty = torch.zeros(0, 4)
    assert ops.nms(empty, torch.zeros(0), 0.5).shape == (0,)
    assert ops.batched_nms(empty, torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).shape == (0,)
    assert ops.box_iou(empty, B).shape == (0, 3)
    assert ops.roi_align(X, [empty], 2).shape == (0, 2, 2, 2)
    assert ops.roi_pool(X, [empty], 2).shape == (0, 2, 2, 2)
