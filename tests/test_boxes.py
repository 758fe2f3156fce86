"""cvcourse.ops.boxes against torchvision.ops (the reference), plus invariants and input errors."""

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder as TorchvisionBoxCoder
from torchvision.ops.boxes import _batched_nms_coordinate_trick

from cvcourse.ops import (
    BOX_FORMATS,
    BoxCoder,
    batched_nms,
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    generalized_box_iou,
    nms,
    remove_small_boxes,
)

tv = torchvision.ops
TOL = dict(atol=1e-6, rtol=0, equal_nan=True)


def random_boxes(n, seed, dtype=torch.float64, grid=False, degenerate=True):
    """[n, 4] xyxy boxes in a 100 x 100 image.

    grid=True puts corners on integers, so many IoUs are exact fractions (like 1/2) and
    edges coincide; degenerate=True adds zero-width, zero-height and duplicated boxes.
    """
    g = torch.Generator().manual_seed(seed)
    if grid:
        xy = torch.randint(0, 80, (n, 2), generator=g).to(dtype)
        wh = torch.randint(1, 21, (n, 2), generator=g).to(dtype)
    else:
        xy = torch.rand(n, 2, generator=g, dtype=torch.float64).to(dtype) * 80
        wh = torch.rand(n, 2, generator=g, dtype=torch.float64).to(dtype) * 30 + 0.5
    if degenerate and n >= 4:
        wh[1::7, 0] = 0  # zero width
        wh[2::11, 1] = 0  # zero height
        wh[3::13] = 0  # a point
    boxes = torch.cat([xy, xy + wh], dim=1)
    if degenerate and n >= 4:
        boxes[5::9] = boxes[0]  # identical boxes
    return boxes


# ------------------------------------------------------------------- area, IoU, GIoU


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("grid", [False, True])
def test_area_iou_giou_match_torchvision(dtype, grid):
    b1, b2 = random_boxes(60, 0, dtype, grid), random_boxes(45, 1, dtype, grid)
    torch.testing.assert_close(box_area(b1), tv.box_area(b1), **TOL)
    torch.testing.assert_close(box_iou(b1, b2), tv.box_iou(b1, b2), **TOL)
    torch.testing.assert_close(generalized_box_iou(b1, b2), tv.generalized_box_iou(b1, b2), **TOL)
    assert box_iou(b1, b2).dtype == dtype and box_iou(b1, b2).shape == (60, 45)


def test_half_precision_upcasts_like_torchvision():
    b = random_boxes(20, 2, grid=True, degenerate=False).half() * 10  # areas overflow float16
    assert box_area(b).dtype == torch.float32
    torch.testing.assert_close(box_area(b), tv.box_area(b))
    torch.testing.assert_close(box_iou(b, b), tv.box_iou(b, b))


@pytest.mark.parametrize(
    "fn, ref", [(box_iou, tv.box_iou), (generalized_box_iou, tv.generalized_box_iou)]
)
def test_gradients_match_torchvision(fn, ref):
    # Grid boxes: shared edges and identical boxes exercise the ties inside max/min/clamp.
    b1 = random_boxes(30, 3, grid=True, degenerate=False)
    b2 = torch.cat([b1[:10], random_boxes(20, 4, grid=True, degenerate=False)])
    weights = torch.randn(30, 30, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    grads = []
    for f in (fn, ref):
        x1, x2 = b1.clone().requires_grad_(), b2.clone().requires_grad_()
        (f(x1, x2) * weights).sum().backward()
        grads.append((x1.grad, x2.grad))
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=0)


def test_iou_known_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [2.0, 0.0, 4.0, 2.0], [4.0, 0.0, 6.0, 2.0]])
    torch.testing.assert_close(box_iou(a, b), torch.tensor([[1 / 3, 0.0, 0.0]]))
    # Enclosing boxes: 3 wide (area 6) -> 1/3 - 0; 4 wide (8) -> 0 - 0; 6 wide (12) -> 0 - 4/12.
    torch.testing.assert_close(generalized_box_iou(a, b), torch.tensor([[1 / 3, 0.0, -1 / 3]]))


def test_empty_inputs_follow_torchvision():
    empty, three = torch.zeros(0, 4), random_boxes(3, 6, torch.float32)
    assert box_iou(empty, three).shape == (0, 3) == tv.box_iou(empty, three).shape
    assert generalized_box_iou(three, empty).shape == (3, 0)
    assert box_area(empty).shape == (0,)
    assert box_convert(empty, "xyxy", "cxcywh").shape == (0, 4)
    assert remove_small_boxes(empty, 1.0).dtype == torch.int64
    no_idxs = torch.zeros(0, dtype=torch.long)
    for result in (nms(empty, torch.zeros(0), 0.5), batched_nms(empty, torch.zeros(0), no_idxs, 0.5)):
        assert result.shape == (0,) and result.dtype == torch.int64


# ----------------------------------------------------------- convert, clip, small boxes


@pytest.mark.parametrize("in_fmt", BOX_FORMATS)
@pytest.mark.parametrize("out_fmt", BOX_FORMATS)
def test_box_convert_matches_torchvision(in_fmt, out_fmt):
    boxes = random_boxes(50, 7, torch.float32).reshape(5, 10, 4)  # leading dims are kept
    ours = box_convert(boxes, in_fmt, out_fmt)
    assert torch.equal(ours, tv.box_convert(boxes, in_fmt, out_fmt))
    if in_fmt == out_fmt:
        assert ours is not boxes and ours.data_ptr() != boxes.data_ptr()


def test_clip_and_remove_small_match_torchvision():
    boxes = random_boxes(80, 8, torch.float32) * 1.6 - 20  # some outside a 100 x 120 image
    assert torch.equal(clip_boxes_to_image(boxes, (100, 120)), tv.clip_boxes_to_image(boxes, (100, 120)))
    batched = boxes.reshape(4, 20, 4)
    assert torch.equal(clip_boxes_to_image(batched, (50, 60)), tv.clip_boxes_to_image(batched, (50, 60)))
    for min_size in (0.0, 1.0, 10.0, 25.0):
        assert torch.equal(remove_small_boxes(boxes, min_size), tv.remove_small_boxes(boxes, min_size))


# ------------------------------------------------------------------------------- NMS


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("case", ["random", "ties"])
def test_nms_matches_torchvision(dtype, threshold, case):
    n = 700  # nms works in blocks of 256: three blocks, the last one partial
    g = torch.Generator().manual_seed(9)
    if case == "random":
        boxes = random_boxes(n, 10, dtype)
        scores = torch.rand(n, generator=g, dtype=dtype)
    else:  # integer boxes and only five distinct scores: ties everywhere
        boxes = random_boxes(n, 11, dtype, grid=True)
        scores = torch.randint(0, 5, (n,), generator=g).to(dtype)
    ours, ref = nms(boxes, scores, threshold), tv.nms(boxes, scores, threshold)
    assert ours.dtype == torch.int64
    assert torch.equal(ours, ref)


@pytest.mark.parametrize("n", [1, 2, 255, 256, 257, 513])
def test_nms_block_edges(n):
    boxes = random_boxes(n, n, torch.float32, grid=True)
    scores = torch.randint(0, 3, (n,), generator=torch.Generator().manual_seed(n)).float()
    assert torch.equal(nms(boxes, scores, 0.4), tv.nms(boxes, scores, 0.4))


def test_nms_long_suppression_chain():
    # Each box overlaps only its neighbours, so who is kept alternates down a 600-box chain.
    x = torch.arange(600, dtype=torch.float64)
    boxes = torch.stack([x, torch.zeros_like(x), x + 1.5, torch.ones_like(x)], dim=1)
    scores = -x  # left to right
    ours = nms(boxes, scores, 0.1)
    assert torch.equal(ours, tv.nms(boxes, scores, 0.1))
    assert torch.equal(ours, torch.arange(0, 600, 2))


def test_nms_threshold_compared_in_double_precision():
    # IoU = 1/3 in float32 is 0.33333334; a threshold a hair below it must still suppress.
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 0.0, 3.0, 2.0]])
    scores = torch.tensor([0.9, 0.8])
    iou = box_iou(boxes, boxes)[0, 1].item()
    for threshold in (iou - 1e-12, iou, iou + 1e-12):
        assert torch.equal(nms(boxes, scores, threshold), tv.nms(boxes, scores, threshold))
    assert nms(boxes, scores, iou - 1e-12).tolist() == [0]


@pytest.mark.parametrize("n", [300, 1500])  # torchvision loops over classes above 1000 boxes
def test_batched_nms_matches_torchvision(n):
    g = torch.Generator().manual_seed(12)
    boxes = random_boxes(n, 13, torch.float32, grid=True)  # integer corners: offsets are exact
    scores = torch.randperm(n, generator=g).float()  # distinct, so both orders agree
    idxs = torch.randint(0, 6, (n,), generator=g)
    ours = batched_nms(boxes, scores, idxs, 0.5)
    assert torch.equal(ours, tv.batched_nms(boxes, scores, idxs, 0.5))
    tied = torch.randint(0, 4, (n,), generator=g).float()
    reference = _batched_nms_coordinate_trick(boxes, tied, idxs, 0.5)
    assert torch.equal(batched_nms(boxes, tied, idxs, 0.5), reference)
    for c in range(6):  # per class it is plain nms
        mine = idxs[ours] == c
        only = torch.nonzero(idxs == c)[:, 0]
        assert torch.equal(ours[mine], only[nms(boxes[only], scores[only], 0.5)])


# -------------------------------------------------------------------------- box coder


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_box_coder_matches_torchvision_and_round_trips(dtype, weights):
    anchors = random_boxes(200, 14, dtype, degenerate=False)
    gt = random_boxes(200, 15, dtype, degenerate=False)
    ours, ref = BoxCoder(weights), TorchvisionBoxCoder(weights)
    codes = ours.encode(gt, anchors)
    torch.testing.assert_close(codes, ref.encode_single(gt, anchors), atol=1e-6, rtol=0)
    assert codes.shape == (200, 4) and codes.dtype == dtype
    decoded = ours.decode(codes, anchors)
    torch.testing.assert_close(decoded, ref.decode_single(codes, anchors), atol=1e-6, rtol=0)
    torch.testing.assert_close(decoded, gt, atol=1e-4 if dtype == torch.float32 else 1e-9, rtol=0)
    g = torch.Generator().manual_seed(16)
    per_class = torch.randn(200, 12, generator=g, dtype=dtype) * 3  # 3 classes
    torch.testing.assert_close(
        ours.decode(per_class, anchors), ref.decode_single(per_class, anchors), atol=1e-6, rtol=1e-6
    )


def test_box_coder_clips_huge_sizes():
    huge = torch.tensor([[0.0, 0.0, 100.0, 100.0]])  # exp(100) times the anchor's size
    decoded = BoxCoder().decode(huge, torch.tensor([[0.0, 0.0, 16.0, 16.0]]))
    torch.testing.assert_close(decoded, torch.tensor([[-492.0, -492.0, 508.0, 508.0]]))  # 1000 wide


# ----------------------------------------------------------------- invariants (hypothesis)

coordinate = st.floats(0, 100, allow_nan=False, width=64)
size = st.floats(0, 50, allow_nan=False, width=64)


@st.composite
def box_sets(draw, min_size=1, max_size=12, positive=False):
    row = st.tuples(coordinate, coordinate, size, size)
    rows = draw(st.lists(row, min_size=min_size, max_size=max_size))
    boxes = torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2] + (0.5 if positive else 0.0)
    return boxes


@settings(max_examples=50, deadline=None)
@given(box_sets(), box_sets())
def test_iou_symmetric_and_bounded(b1, b2):
    iou = box_iou(b1, b2)
    torch.testing.assert_close(iou, box_iou(b2, b1).T, atol=0, rtol=0, equal_nan=True)
    finite = iou[~iou.isnan()]
    assert ((finite >= 0) & (finite <= 1)).all()


@settings(max_examples=50, deadline=None)
@given(box_sets(positive=True), box_sets(positive=True))
def test_iou_of_itself_is_one_and_giou_is_below_iou(b1, b2):
    torch.testing.assert_close(box_iou(b1, b1).diagonal(), torch.ones(len(b1), dtype=torch.float64))
    iou, giou = box_iou(b1, b2), generalized_box_iou(b1, b2)
    assert ((giou >= -1 - 1e-12) & (giou <= 1 + 1e-12)).all()
    assert (giou <= iou + 1e-12).all()


@settings(max_examples=50, deadline=None)
@given(box_sets(), st.sampled_from(BOX_FORMATS), st.sampled_from(BOX_FORMATS))
def test_box_convert_round_trips(boxes, in_fmt, out_fmt):
    there = box_convert(box_convert(boxes, "xyxy", in_fmt), in_fmt, out_fmt)
    torch.testing.assert_close(box_convert(there, out_fmt, "xyxy"), boxes, atol=1e-9, rtol=1e-12)


@settings(max_examples=50, deadline=None)
@given(box_sets(max_size=30), st.sampled_from([0.0, 0.25, 0.5, 0.9]), st.data())
def test_nms_keeps_a_maximal_non_overlapping_subset(boxes, threshold, data):
    ties = st.lists(st.integers(0, 3), min_size=len(boxes), max_size=len(boxes))
    scores = torch.tensor(data.draw(ties), dtype=torch.float64)
    keep = nms(boxes, scores, threshold)
    assert torch.equal(keep, tv.nms(boxes, scores, threshold))
    assert len(keep.unique()) == len(keep) and (scores[keep].diff() <= 0).all()
    iou = box_iou(boxes, boxes).nan_to_num(0.0)
    kept_iou = iou[keep][:, keep]
    assert (kept_iou.triu(diagonal=1) <= threshold).all()  # kept boxes do not overlap ...
    dropped = torch.ones(len(boxes), dtype=torch.bool)
    dropped[keep] = False
    assert (iou[dropped][:, keep] > threshold).any(dim=1).all()  # ... and each dropped box did


# ------------------------------------------------------------------ devices and errors


@pytest.mark.gpu
def test_cuda_matches_cpu():
    boxes, scores = random_boxes(600, 17, torch.float32), torch.rand(600)
    keep = nms(boxes.cuda(), scores.cuda(), 0.5)
    assert keep.device.type == "cuda" and torch.equal(keep.cpu(), tv.nms(boxes, scores, 0.5))
    on_gpu = box_iou(boxes.cuda(), boxes.cuda())
    torch.testing.assert_close(on_gpu.cpu(), box_iou(boxes, boxes), equal_nan=True)


def test_validation_errors_name_the_argument():
    good = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 3)
    shape = r"boxes1 must be a Tensor\[N, 4\] of xyxy boxes, got shape \(3, 5\)"
    with pytest.raises(ValueError, match=shape):
        box_iou(torch.zeros(3, 5), good)
    with pytest.raises(TypeError, match="boxes2 .* floating point dtype, got torch.int64"):
        generalized_box_iou(good, good.long())
    with pytest.raises(TypeError, match="boxes must be a Tensor.*got list"):
        nms([[0, 0, 1, 1]], torch.ones(1), 0.5)
    flipped = torch.tensor([[0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 1.0, 1.0]])
    order = r"boxes2 must be xyxy boxes with x2 >= x1 .* box 1 is \[2.0, 0.0, 1.0, 1.0\]"
    with pytest.raises(ValueError, match=order):
        box_iou(good, flipped)
    with pytest.raises(ValueError, match="boxes1 must be xyxy"):
        generalized_box_iou(flipped, good)
    with pytest.raises(ValueError, match="scores has 2 entries but there are 3 boxes"):
        nms(good, torch.ones(2), 0.5)
    with pytest.raises(ValueError, match="idxs has 4 entries but there are 3 boxes"):
        batched_nms(good, torch.ones(3), torch.zeros(4, dtype=torch.long), 0.5)
    with pytest.raises(TypeError, match="idxs must be an integer Tensor"):
        batched_nms(good, torch.ones(3), torch.zeros(3), 0.5)
    formats = r"in_fmt must be one of \('xyxy', 'xywh', 'cxcywh'\), got 'xywhr'"
    with pytest.raises(ValueError, match=formats):
        box_convert(good, "xywhr", "xyxy")
    with pytest.raises(ValueError, match="size must be the image's"):
        clip_boxes_to_image(good, (10, 10, 3))
    with pytest.raises(ValueError, match="weights must be four numbers"):
        BoxCoder((1.0, 1.0))
    with pytest.raises(ValueError, match="reference_boxes and proposals must pair up"):
        BoxCoder().encode(good, good[:2])
    codes = r"rel_codes must be a Tensor\[N, 4\] or Tensor\[N, 4 \* C\], got \(3, 6\)"
    with pytest.raises(ValueError, match=codes):
        BoxCoder().decode(torch.zeros(3, 6), good)


def test_paired_iou_is_the_diagonal_of_box_iou():
    from cvcourse.ops.boxes import paired_iou

    g = torch.Generator().manual_seed(0)
    a = torch.rand(6, 2, generator=g) * 50
    a = torch.cat([a, a + 1 + torch.rand(6, 2, generator=g) * 40], 1)
    b = torch.rand(6, 2, generator=g) * 50
    b = torch.cat([b, b + 1 + torch.rand(6, 2, generator=g) * 40], 1)
    assert torch.allclose(paired_iou(a, b), box_iou(a, b).diagonal(), atol=1e-6)

    # broadcast over leading dims: [2, 3, 4] with [1, 3, 4] pairs each row with b
    aa, bb = a.view(2, 3, 4), b[:3].view(1, 3, 4)
    assert torch.allclose(paired_iou(aa, bb)[1], box_iou(a[3:], b[:3]).diagonal(), atol=1e-6)
