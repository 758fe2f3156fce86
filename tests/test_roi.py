"""cvcourse.ops.roi against torchvision.ops (the reference): values, gradients, helpers, errors."""

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from cvcourse.ops.roi import (
    RoIAlign,
    RoIPool,
    bilinear_sample_points,
    roi_align,
    roi_pool,
    roi_pool_bins,
    roi_pool_snapping_error,
)

tv = torchvision.ops
N, C, H, W = 3, 3, 11, 13
OUT = (3, 5)  # non-square, so rows and columns cannot be swapped unnoticed
TOL = dict(atol=1e-5, rtol=0)


def random_rois(k, seed, spatial_scale, dtype=torch.float64):
    """[k, 5] rois over an N-image batch whose maps are H x W cells at `spatial_scale`.

    Corners range a fifth of the map beyond every edge, so boxes stick out of the map or lie
    wholly outside; a quarter are tiny (under a cell), and a few span more than the map.
    """
    g = torch.Generator().manual_seed(seed)
    size = torch.tensor([W, H], dtype=torch.float64) / spatial_scale  # the map in input pixels
    xy = (torch.rand(k, 2, generator=g, dtype=torch.float64) * 1.4 - 0.2) * size
    wh = torch.rand(k, 2, generator=g, dtype=torch.float64) ** 2 * size
    wh[: k // 4] = (
        torch.rand(k // 4, 2, generator=g, dtype=torch.float64) * 0.9 / spatial_scale
    )  # tiny
    wh[k // 4 : k // 4 + 3] = 1.3 * size  # larger than the map
    wh[-1] = 0  # a point
    index = torch.randint(0, N, (k, 1), generator=g).double()
    return torch.cat([index, xy, xy + wh], dim=1).to(dtype)


def as_list(rois):
    """The same boxes as one [L, 4] tensor per image, and the order that takes them back."""
    index = rois[:, 0].long()
    order = torch.cat([torch.where(index == n)[0] for n in range(N)])
    return [rois[index == n, 1:] for n in range(N)], order


def value_and_grad(op, x, boxes, *args, seed=0):
    x = x.detach().requires_grad_()
    out = op(x, boxes, *args)
    upstream = torch.randn(
        out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype
    ).to(out.device)  # drawn on the CPU so that CPU and CUDA runs get the same upstream gradient
    (grad,) = torch.autograd.grad(out, x, upstream)
    return out, grad


def feature_map(seed, dtype=torch.float64, integer=False):
    g = torch.Generator().manual_seed(seed)
    if integer:  # few distinct values: many ties inside every max-pooling bin
        return torch.randint(0, 3, (N, C, H, W), generator=g).to(dtype)
    return torch.randn(N, C, H, W, generator=g, dtype=torch.float64).to(dtype)


# --------------------------------------------------------------------- against torchvision


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 3, 4])
def test_roi_align_matches_torchvision(spatial_scale, aligned, sampling_ratio):
    x, rois = feature_map(1), random_rois(40, 2, spatial_scale)
    args = (OUT, spatial_scale, sampling_ratio, aligned)
    expected, expected_grad = value_and_grad(tv.roi_align, x, rois, *args)
    out, grad = value_and_grad(roi_align, x, rois, *args)
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(grad, expected_grad, **TOL)


@pytest.mark.parametrize("spatial_scale", [1.0, 0.5, 0.25])
@pytest.mark.parametrize("integer", [False, True], ids=["distinct", "ties"])
def test_roi_pool_matches_torchvision(spatial_scale, integer):
    x, rois = feature_map(3, integer=integer), random_rois(60, 4, spatial_scale)
    expected, expected_grad = value_and_grad(tv.roi_pool, x, rois, OUT, spatial_scale)
    out, grad = value_and_grad(roi_pool, x, rois, OUT, spatial_scale)
    torch.testing.assert_close(out, expected, **TOL)  # the max itself
    torch.testing.assert_close(grad, expected_grad, **TOL)  # gradients at the same argmax, ties too


@pytest.mark.parametrize(
    "op, args",
    [(roi_pool, (OUT, 0.5)), (roi_align, (OUT, 0.5, -1, False)), (roi_align, (OUT, 0.25, 2, True))],
    ids=["pool", "align", "align-aligned"],
)
def test_list_of_boxes_per_image_matches_torchvision(op, args):
    x, rois = feature_map(13), random_rois(40, 14, args[1])
    boxes, order = as_list(rois)  # the same boxes, one tensor per image, ordered by image
    out, grad = value_and_grad(op, x, boxes, *args)
    expected, expected_grad = value_and_grad(getattr(tv, op.__name__), x, rois[order], *args)
    torch.testing.assert_close(out, expected, **TOL)
    torch.testing.assert_close(grad, expected_grad, **TOL)


def test_float32_and_halfway_boxes_match_torchvision():
    x, rois = feature_map(5, torch.float32), random_rois(40, 6, 0.5, torch.float32)
    rois[:8, 1:] = torch.arange(32, dtype=torch.float32).view(8, 4) + 0.5  # x * s lands on halves
    rois[:8, 3:] += 4
    for op, args in (
        (roi_pool, (OUT, 0.5)),
        (roi_align, (OUT, 0.5, 2, True)),
        (roi_align, (7, 0.5, -1, False)),
    ):
        reference = getattr(tv, op.__name__)
        torch.testing.assert_close(
            op(x, rois, *args), reference(x, rois, *args), atol=1e-5, rtol=1e-5
        )


def test_modules_match_torchvision_and_give_boxes_no_gradient():
    x, rois = feature_map(7), random_rois(20, 8, 0.5)
    pairs = (
        (RoIPool(OUT, 0.5), tv.RoIPool(OUT, 0.5)),
        (RoIAlign(4, 0.5, 2, True), tv.RoIAlign(4, 0.5, 2, True)),
    )
    for ours, theirs in pairs:
        torch.testing.assert_close(ours(x, rois), theirs(x, rois), **TOL)
        assert "spatial_scale=0.5" in repr(ours)
    x.requires_grad_(), rois.requires_grad_()
    for op in (roi_pool, roi_align):
        assert torch.autograd.grad(op(x, rois, 2).sum(), rois, allow_unused=True) == (None,)


def test_pool_is_the_max_over_roi_pool_bins():
    """The docstring's loop, run literally on a few RoIs, gives roi_pool's values."""
    x, rois = feature_map(9), random_rois(12, 10, 0.5)
    hs, he, ws, we = roi_pool_bins(rois[:, 1:], OUT, 0.5, (H, W))
    out = roi_pool(x, rois, OUT, 0.5)
    for k in range(len(rois)):
        for i in range(OUT[0]):
            for j in range(OUT[1]):
                block = x[int(rois[k, 0]), :, hs[k, i] : he[k, i], ws[k, j] : we[k, j]]
                expected = block.amax((-2, -1)) if block.numel() else torch.zeros(C, dtype=x.dtype)
                torch.testing.assert_close(out[k, :, i, j], expected)


@pytest.mark.parametrize("op", [roi_pool, roi_align])
def test_no_boxes_give_an_empty_output(op):
    x = feature_map(0).requires_grad_()
    for boxes in (torch.zeros(0, 5, dtype=x.dtype), [torch.zeros(0, 4, dtype=x.dtype)] * N, []):
        out = op(x, boxes, OUT)
        assert out.shape == (0, C, *OUT) and out.dtype == x.dtype
    assert getattr(tv, op.__name__)(x, torch.zeros(0, 5, dtype=x.dtype), OUT).shape == (0, C, *OUT)


# ------------------------------------------------------------------- sample points, snapping


@pytest.mark.parametrize("aligned, sampling_ratio", [(False, -1), (True, 2), (True, -1)])
def test_sample_points_are_where_roi_align_reads(aligned, sampling_ratio):
    """On the map f(y, x) = x + 100 y, bilinear interpolation is exact, so each bin of
    roi_align is the mean of f over that bin's sample points (clamped into the map)."""
    ramp = (
        torch.arange(W, dtype=torch.float64) + 100 * torch.arange(H, dtype=torch.float64)[:, None]
    )
    box = torch.tensor([3.0, 2.0, 17.5, 13.0], dtype=torch.float64)  # input pixels, scale 0.5
    samples = bilinear_sample_points(box, OUT, sampling_ratio, 0.5, aligned, map_size=(H, W))
    x = samples.points[..., 0].clamp(0, W - 1)
    y = samples.points[..., 1].clamp(0, H - 1)
    expected = (x + 100 * y).mean(-1)  # (oh, ow)
    out = roi_align(ramp.expand(1, 1, H, W), [box[None]], OUT, 0.5, sampling_ratio, aligned)[0, 0]
    torch.testing.assert_close(out, expected)
    assert samples.valid.all() and samples.x_edges.shape == (OUT[1] + 1,)
    assert (
        samples.x_edges[0] == 3.0 * 0.5 - 0.5 * aligned
        and samples.y_edges[-1] == 13.0 * 0.5 - 0.5 * aligned
    )


def test_sample_points_grid_and_validity():
    samples = bilinear_sample_points(torch.tensor([0.0, 0.0, 28.0, 7.0]), (2, 7), sampling_ratio=-1)
    assert samples.points.shape == (2, 7, 4 * 4, 2)  # ceil(7 / 2) rows x ceil(28 / 7) columns
    wide = bilinear_sample_points(torch.tensor([0.0, 0.0, 24.0, 4.0]), 2, 1, map_size=(4, 10))
    assert wide.points[0, :, 0].tolist() == [[6.0, 1.0], [18.0, 1.0]]
    assert wide.valid[..., 0].tolist() == [[True, False], [True, False]]  # x = 18 is beyond 10


def test_snapping_error_known_box():
    err = roi_pool_snapping_error(torch.tensor([[10.0, 10.0, 50.0, 40.0]]), 1 / 16)
    # cells round(0.625) = 1 .. round(3.125) = 3 and 1 .. round(2.5) = 3 (half away from zero)
    assert err.pooled_boxes.tolist() == [[16.0, 16.0, 64.0, 64.0]]
    assert err.shift.tolist() == [[6.0, 6.0, 14.0, 24.0]]
    assert err.iou.item() == pytest.approx(34 * 24 / (40 * 30 + 48 * 48 - 34 * 24))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(*[st.floats(0, 200, allow_subnormal=False)] * 4), min_size=1, max_size=8),
    st.sampled_from([1.0, 0.5, 0.25, 1 / 16]),
)
def test_snapping_error_bounds_and_roi_pool_bins(corners, spatial_scale):
    xy = torch.tensor(corners, dtype=torch.float64).view(-1, 2, 2)
    boxes = torch.cat([xy.min(1).values, xy.max(1).values], dim=1)  # (K, 4) ordered corners
    err = roi_pool_snapping_error(boxes, spatial_scale)
    cell = 1 / spatial_scale
    assert (err.shift[:, :2].abs() <= cell / 2 + 1e-9).all()  # the first cell: rounded corner
    assert (err.shift[:, 2:] >= cell / 2 - 1e-9).all() and (
        err.shift[:, 2:] <= 1.5 * cell + 1e-9
    ).all()
    assert ((err.iou >= 0) & (err.iou <= 1)).all()
    # Boxes over half a cell wide and high keep some overlap; smaller ones can be missed
    # entirely (y in [136, 137] at stride 16 reads cell 9, pixels [144, 160)).
    assert (err.iou[(boxes[:, 2:] - boxes[:, :2] > cell / 2).all(1)] > 0).all()
    # The region RoI Pool reads is the union of its bins, on a map large enough to hold it.
    big = int(300 * spatial_scale) + 2
    hs, he, ws, we = roi_pool_bins(boxes, 3, spatial_scale, (big, big))
    region = torch.stack([ws[:, 0], hs[:, 0], we[:, -1], he[:, -1]], dim=1) * cell
    torch.testing.assert_close(region.double(), err.pooled_boxes)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "boxes, message",
    [
        (torch.zeros(2, 4), "Tensor\\[K, 5\\]"),
        ([torch.zeros(2, 5)], "boxes\\[0\\]"),
        ("boxes", "got str"),
        ([torch.zeros(1, 4)] * (N + 1), "one Tensor per image"),
        (torch.tensor([[3.0, 0, 0, 1, 1]]), "batch index in \\[0, 3\\)"),
        (torch.tensor([[0.5, 0, 0, 1, 1]]), "batch index"),
        (torch.tensor([[0.0, 0, 0, 1, 1], [1.0, 5, 0, 4, 1]]), "x2 >= x1.*RoI 1"),
        (torch.tensor([[0.0, 0, 3, 1, 2]]), "y2 >= y1"),
        (torch.tensor([[0.0, 0, 0, float("nan"), 1]]), "finite"),
        (torch.zeros(1, 5, dtype=torch.long), "floating point"),
    ],
)
@pytest.mark.parametrize("op", [roi_pool, roi_align])
def test_bad_boxes_raise(op, boxes, message):
    with pytest.raises(ValueError, match="boxes.*" + message):
        op(torch.zeros(N, C, H, W), boxes, 2)


@pytest.mark.parametrize("op", [roi_pool, roi_align])
def test_bad_arguments_raise(op):
    boxes = torch.tensor([[0.0, 0, 0, 4, 4]])
    with pytest.raises(ValueError, match="input must be a floating point Tensor\\[N, C, H, W\\]"):
        op(torch.zeros(C, H, W), boxes, 2)
    with pytest.raises(ValueError, match="input"):
        op(torch.zeros(N, C, H, W, dtype=torch.long), boxes, 2)
    with pytest.raises(ValueError, match="output_size"):
        op(torch.zeros(N, C, H, W), boxes, (2, 0))
    with pytest.raises(ValueError, match="spatial_scale"):
        op(torch.zeros(N, C, H, W), boxes, 2, -1.0)


# -------------------------------------------------------------------------------- devices


@pytest.mark.gpu
@pytest.mark.parametrize("op, args", [(roi_pool, (OUT, 0.5)), (roi_align, (OUT, 0.5, -1, True))],
                         ids=["roi_pool", "roi_align"])
def test_cuda_matches_cpu(op, args):
    """Bin edges are floors and ceils of quotients: a quotient one bit off on CUDA (division by
    a Python number is a product with its reciprocal there) moved whole cells. The last two
    RoIs span 7 rows in 3 bins, where 3 * (7 * (1/3)) = 7.000000000000001."""
    exact = torch.tensor([[0, 0.0, 0, 12, 12], [1, 2, 4, 22, 16]], dtype=torch.float64)  # rows 0..6, 2..8
    x, rois = feature_map(11), torch.cat([random_rois(30, 12, 0.5), exact])
    cpu, cpu_grad = value_and_grad(op, x, rois, *args)
    cuda, cuda_grad = value_and_grad(op, x.cuda(), rois.cuda(), *args)
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, **TOL)
    torch.testing.assert_close(cuda_grad.cpu(), cpu_grad, **TOL)
