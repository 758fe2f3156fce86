"""Upsampling ops vs PyTorch: nearest, bed of nails, max unpooling, transposed convolution."""
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cvcourse.ops.upsample import (
    bed_of_nails,
    bilinear_padding,
    bilinear_upsample_weight,
    conv2d_matrix,
    conv_transpose2d,
    conv_transpose2d_matrix,
    max_pool2d_with_indices,
    max_unpool2d,
    nearest_upsample,
)


def _rand(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ------------------------------------------------------------------------ nearest / nails
@pytest.mark.parametrize("s", [1, 2, 3, (2, 3)])
def test_nearest_matches_interpolate(s):
    x = _rand(2, 3, 4, 5)
    ref = F.interpolate(x, scale_factor=s, mode="nearest")
    torch.testing.assert_close(nearest_upsample(x, s), ref, rtol=0, atol=0)


@pytest.mark.parametrize("s", [1, 2, 3])
def test_bed_of_nails_by_construction(s):
    x = _rand(2, 3, 4, 5)
    y = bed_of_nails(x, s)
    assert y.shape == (2, 3, 4 * s, 5 * s)
    torch.testing.assert_close(y[..., ::s, ::s], x, rtol=0, atol=0)  # the nails
    mask = torch.ones_like(y, dtype=torch.bool)
    mask[..., ::s, ::s] = False
    assert (y[mask] == 0).all()  # everything else is zero
    torch.testing.assert_close(y.sum(dim=(2, 3)), x.sum(dim=(2, 3)))  # sum preserved


@pytest.mark.parametrize("s", [2, 3])
def test_nearest_is_bed_of_nails_spread_by_a_box(s):
    """nearest = bed of nails convolved with an s x s box of ones (via transposed conv)."""
    x = _rand(2, 3, 4, 5)
    box = torch.ones(3, 1, s, s, dtype=x.dtype)  # per-channel box filter
    spread = conv_transpose2d(bed_of_nails(x, s), box, groups=3)  # full output: +s-1
    torch.testing.assert_close(spread[..., : 4 * s, : 5 * s], nearest_upsample(x, s))
    # ... and both are transposed convs of x with stride s: a box kernel and a delta kernel
    delta = torch.zeros_like(box)
    delta[..., 0, 0] = 1
    torch.testing.assert_close(conv_transpose2d(x, box, stride=s, groups=3), nearest_upsample(x, s))
    torch.testing.assert_close(conv_transpose2d(x, delta, stride=s, groups=3), bed_of_nails(x, s))


@pytest.mark.parametrize("bad", [0, -1, 1.5, 2.0, True, (2,), "2"])
def test_scale_factor_rejected(bad):
    for fn in (nearest_upsample, bed_of_nails):
        with pytest.raises(ValueError, match="scale_factor"):
            fn(torch.zeros(1, 1, 2, 2), bad)


def test_rank_rejected():
    with pytest.raises(ValueError, match=r"x must be a 4-D tensor"):
        nearest_upsample(torch.zeros(3, 4, 4), 2)
    with pytest.raises(ValueError, match=r"input must be a 4-D tensor"):
        conv_transpose2d(torch.zeros(3, 4, 4), torch.zeros(3, 1, 2, 2))


# ------------------------------------------------------------------------- max unpooling
@pytest.mark.parametrize("k,s,p", [(2, None, 0), (3, 2, 1), (2, 1, 0), (3, 3, 0)])
def test_max_unpool_matches_torch(k, s, p):
    x = _rand(2, 3, 7, 8).requires_grad_()
    pooled, idx = max_pool2d_with_indices(x, k, s, p)
    ref_pooled, ref_idx = F.max_pool2d(x, k, s, p, return_indices=True)
    assert torch.equal(idx, ref_idx)
    try:  # default output size: fails in torch too when it is smaller than x
        ref = F.max_unpool2d(ref_pooled, ref_idx, k, s, p)
    except RuntimeError:
        with pytest.raises(ValueError, match="indices must lie in"):
            max_unpool2d(pooled, idx, k, s, p)
    else:
        torch.testing.assert_close(max_unpool2d(pooled, idx, k, s, p), ref)
    # with an explicit output size: back to the original 7 x 8
    ours_sized = max_unpool2d(pooled, idx, k, s, p, output_size=x.shape)
    ref_sized = F.max_unpool2d(ref_pooled, ref_idx, k, s, p, output_size=x.shape)
    torch.testing.assert_close(ours_sized, ref_sized)
    g = _rand(*ref_sized.shape, seed=1)
    (ga,) = torch.autograd.grad((ours_sized * g).sum(), x)
    (gb,) = torch.autograd.grad((ref_sized * g).sum(), x)
    torch.testing.assert_close(ga, gb)


def test_max_unpool_keeps_maxima_in_place():
    x = _rand(1, 2, 6, 6)
    pooled, idx = max_pool2d_with_indices(x, 2)
    up = max_unpool2d(pooled, idx, 2)
    kept = up != 0
    assert kept.sum() == pooled.numel()
    torch.testing.assert_close(up[kept], x[kept])  # the maxima sit where they were


def test_max_unpool_rejects_bad_indices():
    pooled, idx = max_pool2d_with_indices(_rand(1, 1, 4, 4), 2)
    with pytest.raises(ValueError, match="indices must have the shape"):
        max_unpool2d(pooled, idx[..., :1], 2)
    with pytest.raises(ValueError, match="indices must lie in"):
        max_unpool2d(pooled, idx + 100, 2)


# ---------------------------------------------------------------- transposed convolution
def _compare_with_torch(x, weight, bias, **kw):
    x = x.clone().requires_grad_()
    weight = weight.clone().requires_grad_()
    bias = bias.clone().requires_grad_()
    ours = conv_transpose2d(x, weight, bias, **kw)
    ref = F.conv_transpose2d(x, weight, bias, **kw)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    g = _rand(*ref.shape, seed=7)
    grads_ours = torch.autograd.grad((ours * g).sum(), (x, weight, bias))
    grads_ref = torch.autograd.grad((ref * g).sum(), (x, weight, bias))
    for a, b in zip(grads_ours, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_conv_transpose_upsampling_case():
    """The usual decoder layer: k=4, s=2, p=1 doubles H and W."""
    x, w, b = _rand(2, 6, 5, 7), _rand(6, 4, 4, 4, seed=1), _rand(4, seed=2)
    assert conv_transpose2d(x, w, b, stride=2, padding=1).shape == (2, 4, 10, 14)
    _compare_with_torch(x, w, b, stride=2, padding=1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    n=st.integers(1, 2),
    groups=st.integers(1, 3),
    cin_g=st.integers(1, 2),
    cout_g=st.integers(1, 3),
    size=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    output_padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    seed=st.integers(0, 2**16),
)
def test_conv_transpose_matches_torch_property(
    n, groups, cin_g, cout_g, size, kernel, stride, dilation, padding, output_padding, seed
):
    for op, s, d in zip(output_padding, stride, dilation):
        assume(op < s or op < d)
    for h, k, s, d, p, op in zip(size, kernel, stride, dilation, padding, output_padding):
        assume((h - 1) * s - 2 * p + d * (k - 1) + op + 1 >= 1)
    x = _rand(n, groups * cin_g, *size, seed=seed)
    w = _rand(groups * cin_g, cout_g, *kernel, seed=seed + 1)
    b = _rand(groups * cout_g, seed=seed + 2)
    _compare_with_torch(
        x, w, b, stride=stride, padding=padding, output_padding=output_padding,
        groups=groups, dilation=dilation,
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(groups=4), "groups=4 must divide"),
        (dict(stride=2, output_padding=2), "output_padding must be smaller"),
        (dict(stride=1, dilation=1, output_padding=1), "output_padding must be smaller"),
        (dict(stride=0), "stride must be an int >= 1"),
        (dict(padding=-1), "padding must be an int >= 0"),
        (dict(padding=5), "padding=5 is too large"),
    ],
)
def test_conv_transpose_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        conv_transpose2d(torch.zeros(1, 6, 3, 3), torch.zeros(6, 1, 2, 2), **kwargs)


def test_conv_transpose_rejects_weight_and_bias_shapes():
    with pytest.raises(ValueError, match=r"weight must be \[Cin=6"):
        conv_transpose2d(torch.zeros(1, 6, 3, 3), torch.zeros(5, 1, 2, 2))
    with pytest.raises(ValueError, match=r"bias must be \[Cout=2\]"):
        conv_transpose2d(torch.zeros(1, 6, 3, 3), torch.zeros(6, 2, 2, 2), torch.zeros(3))


# ------------------------------------------------------ transposed conv = adjoint of conv
@pytest.mark.parametrize("k,s,p,size", [(3, 1, 1, (4, 4)), (3, 2, 1, (3, 4)), (4, 2, 1, (3, 3))])
def test_transposed_conv_matrix_is_conv_matrix_transposed(k, s, p, size):
    w = _rand(k, k)
    T = conv_transpose2d_matrix(w, size, stride=s, padding=p)  # (Ho*Wo, H*W)
    x = _rand(1, 1, *size, seed=3)
    y = conv_transpose2d(x, w[None, None], stride=s, padding=p)
    torch.testing.assert_close(T @ x.flatten(), y.flatten())
    out_size = y.shape[-2:]
    C = conv2d_matrix(w, out_size, stride=s, padding=p)  # conv maps Ho x Wo back to H x W
    torch.testing.assert_close(T, C.T)
    # adjointness without matrices: <conv(u), v> == <u, convT(v)>
    u = _rand(1, 1, *out_size, seed=4)
    v = _rand(1, 1, *size, seed=5)
    lhs = (F.conv2d(u, w[None, None], stride=s, padding=p) * v).sum()
    rhs = (u * conv_transpose2d(v, w[None, None], stride=s, padding=p)).sum()
    torch.testing.assert_close(lhs, rhs)


# ------------------------------------------------------------- bilinear as a transposed conv
@pytest.mark.parametrize("s", [2, 3, 4])
def test_bilinear_weight_matches_interpolate_inside(s):
    x = _rand(1, 2, 6, 6)
    w = bilinear_upsample_weight(2, s).to(x.dtype)
    y = conv_transpose2d(x, w, stride=s, padding=bilinear_padding(s))
    ref = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
    assert y.shape == ref.shape
    m = s  # the outermost block differs: zero padding vs torch's clamping at the border
    torch.testing.assert_close(y[..., m:-m, m:-m], ref[..., m:-m, m:-m])
