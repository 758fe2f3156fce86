"""Segmentation models: sliding window vs fully convolutional, FCN, U-Net."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvcourse.models import FCN, FullyConvolutionalPatchClassifier, PatchClassifier, UNet
from cvcourse.models.sliding_window import extract_patches


def _images(b=2, h=32, w=32, seed=0, dtype=torch.float32):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _n_params(model):
    return sum(p.numel() for p in model.parameters())


def _count_multiply_adds(model, run):
    """Multiply-adds of every Conv2d / Linear call made by run(), counted with hooks."""
    total = [0]

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total[0] += output.numel() * module.in_channels // module.groups * kh * kw
        else:
            total[0] += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return total[0]


# ------------------------------------------------------------------------- sliding window
def test_fully_convolutional_equals_sliding_window():
    torch.manual_seed(0)
    model = PatchClassifier(num_classes=4, patch_size=15, width=8, hidden=32).eval()
    image = _images(1, 32, 32)
    fully_conv = model.to_fully_convolutional()
    assert isinstance(fully_conv, FullyConvolutionalPatchClassifier)
    assert not any(isinstance(m, nn.Linear) for m in fully_conv.modules())
    with torch.no_grad():
        slow = model.sliding_window(image, batch_size=300)  # strips of 9 rows: uneven last strip
        fast = fully_conv(image)
    assert slow.shape == fast.shape == (1, 4, 32, 32)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    # ... and the reshape goes back: conv kernels into FC weights
    back = fully_conv.to_patch_classifier()
    with torch.no_grad():
        torch.testing.assert_close(back.sliding_window(image), slow, rtol=1e-5, atol=1e-5)


def test_sliding_window_pixel_is_patch_classification():
    torch.manual_seed(1)
    model = PatchClassifier(patch_size=11, padding_mode="zeros").eval()
    image = _images(2, 9, 7)
    patches = extract_patches(image, 11, "zeros")  # (2*9*7, 3, 11, 11)
    assert patches.shape == (2 * 9 * 7, 3, 11, 11)
    b, y, x = 1, 4, 2  # the centre of patch b*H*W + y*W + x is pixel (y, x) of image b
    patch = patches[b * 63 + y * 7 + x]
    torch.testing.assert_close(patch[:, 5, 5], image[b, :, y, x])
    with torch.no_grad():
        torch.testing.assert_close(model(patch[None])[0], model.sliding_window(image)[b, :, y, x])


@pytest.mark.parametrize("size", [(12, 9), (17, 17)])
def test_multiply_adds_match_hook_count(size):
    h, w = size
    model = PatchClassifier(patch_size=13, width=4, hidden=8).eval()
    image = _images(1, h, w)
    macs = model.multiply_adds(h, w)
    assert _count_multiply_adds(model, lambda: model.sliding_window(image)) == macs["sliding_window"]
    assert _count_multiply_adds(model, lambda: model(extract_patches(image, 13)[:1])) == macs["per_patch"]
    fully_conv = model.to_fully_convolutional()
    assert _count_multiply_adds(fully_conv, lambda: fully_conv(image)) == macs["fully_convolutional"]
    assert macs["fully_convolutional"] < macs["sliding_window"]


def test_patch_classifier_rejects_bad_inputs():
    with pytest.raises(ValueError, match="patch_size must be an odd int >= 11"):
        PatchClassifier(patch_size=16)
    with pytest.raises(ValueError, match="padding_mode must be one of"):
        PatchClassifier(padding_mode="circular")
    model = PatchClassifier(patch_size=11)
    with pytest.raises(ValueError, match=r"patches must be \[N, 3, 11, 11\]"):
        model(torch.zeros(2, 3, 12, 12))
    with pytest.raises(ValueError, match=r"images must be a \[B, 3, H, W\]"):
        model.sliding_window(torch.zeros(3, 8, 8))


# ------------------------------------------------------------------------------ FCN, U-Net
MODELS = {
    "fcn8-bilinear": lambda **kw: FCN(width=8, output_stride=8, **kw),
    "fcn16-transposed": lambda **kw: FCN(width=8, output_stride=16, upsample="transposed", **kw),
    "unet-skip": lambda **kw: UNet(base=8, depth=3, skip=True, **kw),
    "unet-noskip": lambda **kw: UNet(base=8, depth=2, skip=False, **kw),
}


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_padding(name):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    s = model.total_stride
    with torch.no_grad():
        assert model(_images(2, 32, 48)).shape == (2, 4, 32, 48)
        x = _images(1, 2 * s + 3, s + 1)  # not divisible: reflect-padded, then cropped back
        y = model(x)
        assert y.shape == (1, 4, 2 * s + 3, s + 1)
        padded = F.pad(x, (0, s - 1, 0, s - 3), mode="reflect")
        torch.testing.assert_close(y, model(padded)[..., : 2 * s + 3, : s + 1])
        assert model(_images(1, 5, 3)).shape == (1, 4, 5, 3)  # too small to reflect: replicate
    strict = MODELS[name](pad_mode="error")
    with pytest.raises(ValueError, match=rf"input size 30x37 is not divisible by the total stride {s}"):
        strict(_images(1, 30, 37))
    strict(_images(1, s, 2 * s))  # divisible sizes are accepted


def test_model_arguments_rejected():
    with pytest.raises(ValueError, match="output_stride must be a power of two"):
        FCN(output_stride=6)
    with pytest.raises(ValueError, match="upsample must be"):
        FCN(upsample="nearest")
    with pytest.raises(ValueError, match="pad_mode must be one of"):
        UNet(pad_mode="crop")
    with pytest.raises(ValueError, match="depth must be an int >= 1"):
        UNet(depth=0)
    with pytest.raises(ValueError, match=r"x must be a \[B, 3, H, W\] image batch"):
        UNet()(torch.zeros(1, 1, 16, 16))


def test_fcn_transposed_starts_as_bilinear():
    """The learnable upsampler is initialised to bilinear interpolation (away from borders)."""
    torch.manual_seed(0)
    bilinear = FCN(width=8, output_stride=8).eval()
    transposed = FCN(width=8, output_stride=8, upsample="transposed").eval()
    missing = transposed.load_state_dict(bilinear.state_dict(), strict=False).missing_keys
    assert missing == ["upsample.weight"]
    with torch.no_grad():
        a, b = bilinear(_images(1, 48, 48)), transposed(_images(1, 48, 48))
    torch.testing.assert_close(a[..., 8:-8, 8:-8], b[..., 8:-8, 8:-8], rtol=1e-4, atol=1e-5)


def test_unet_skip_ablation_and_size():
    with_skip, without = UNet(skip=True), UNet(skip=False)
    n_skip, n_noskip = _n_params(with_skip), _n_params(without)
    assert n_noskip < n_skip <= 500_000  # small enough to train on a CPU
    # the only difference: the decoder's first conv of each level reads c_i more channels
    extra = sum(3 * 3 * 16 * 2 ** i * 16 * 2 ** i for i in range(3))
    assert n_skip - n_noskip == extra
    x = _images(1, 32, 32)
    with torch.no_grad():
        assert with_skip.eval()(x).shape == without.eval()(x).shape == (1, 4, 32, 32)


@pytest.mark.parametrize("name", ["fcn8-bilinear", "fcn16-transposed", "unet-skip", "patch-fully-conv"])
def test_a_few_steps_reduce_the_loss(name):
    torch.manual_seed(0)
    if name == "patch-fully-conv":
        model = PatchClassifier(patch_size=11, width=8, hidden=16).to_fully_convolutional()
    else:
        model = MODELS[name]()
    images = _images(2, 16, 16)
    target = torch.randint(0, 4, (2, 16, 16), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(images), target)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = F.cross_entropy(model(images), target).item()
    assert final < losses[0]
