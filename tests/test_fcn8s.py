"""FCN-8s: the FCN paper's skip architecture (zero-initialised skip scores, x2 fusions)."""
import pytest
import torch
import torch.nn.functional as F

from cvcourse.models import FCN, FCN8s
from cvcourse.models.receptive_field import layers_of, receptive_field


def _images(b=2, h=32, w=32, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _shipped_config(**kw):
    return FCN8s(num_classes=4, width=16, output_stride=8, upsample="transposed", **kw)


@pytest.mark.parametrize("stride", [8, 16, 32])
@pytest.mark.parametrize("upsample", ["bilinear", "transposed"])
def test_shapes_at_every_stage(stride, upsample):
    torch.manual_seed(0)
    model = FCN8s(width=8, output_stride=stride, upsample=upsample).eval()
    x = _images(2, 2 * stride, 3 * stride)
    with torch.no_grad():
        pool3, pool4, last = model._features(x)
        assert pool3.shape[-2:] == (8, 12)  # stride s/4
        assert pool4.shape[-2:] == (4, 6)   # stride s/2
        assert last.shape[-2:] == (2, 3)    # stride s
        assert model.coarse_scores(x).shape == (2, 4, 2, 3)
        assert model(x).shape == (2, 4, 2 * stride, 3 * stride)
        y = model(_images(1, stride + 5, 2 * stride - 3))  # padded, then cropped back
        assert y.shape == (1, 4, stride + 5, 2 * stride - 3)


def test_zero_initialised_skips_make_it_the_coarse_net_at_init():
    """Before training FCN-8s predicts what its coarse path alone (FCN-32s style) predicts."""
    torch.manual_seed(0)
    model = _shipped_config().eval()
    for score in (model.score_pool4, model.score_pool3):
        assert score.weight.abs().sum() == 0 and score.bias.abs().sum() == 0
    x = _images(2, 64, 64)
    with torch.no_grad():
        coarse_only = model.upsample(model.upscore_pool4(model.upscore2(model.coarse_scores(x))))
        torch.testing.assert_close(model(x), coarse_only, rtol=0, atol=0)
    # ... but the skips are not dead: their gradient is non-zero, so training moves them.
    target = torch.randint(0, 4, (2, 64, 64), generator=torch.Generator().manual_seed(1))
    F.cross_entropy(model.train()(x), target).backward()
    assert model.score_pool4.weight.grad.abs().sum() > 0
    assert model.score_pool3.weight.grad.abs().sum() > 0


def test_same_backbone_and_classifier_as_fcn():
    """FCN-8s = the `fcn` recipe's network + skip score layers + three smaller upsamplings."""
    fcn, fcn8s = FCN(width=16, output_stride=8, upsample="transposed"), _shipped_config()
    shared = {k: v for k, v in fcn.state_dict().items() if k != "upsample.weight"}
    result = fcn8s.load_state_dict(shared, strict=False)
    assert sorted(result.missing_keys) == sorted([
        "score_pool4.weight", "score_pool4.bias", "score_pool3.weight", "score_pool3.bias",
        "upscore2.weight", "upscore_pool4.weight", "upsample.weight"])
    assert result.unexpected_keys == []
    # fcn jumps x8 at once (kernel 16); FCN-8s ends with a x2 step (kernel 4)
    assert fcn8s.upsample.weight.shape == (4, 4, 4, 4) and fcn.upsample.weight.shape == (4, 4, 16, 16)


def test_receptive_fields_of_the_three_predictions():
    """The coarse scores see far ("what"); the stride-2 skip sees a small window ("where")."""
    model = _shipped_config()
    a, b = model.cuts
    rf = {name: receptive_field(layers_of(part)) for name, part in
          [("pool3", model.backbone[:a]), ("pool4", model.backbone[:b]), ("coarse", model.backbone)]}
    assert rf == {"pool3": 14, "pool4": 32, "coarse": 68}
    assert rf["coarse"] == receptive_field(layers_of(FCN(width=16, output_stride=8).backbone))


def test_bad_arguments_and_input():
    with pytest.raises(ValueError, match="output_stride must be 8, 16 or 32"):
        FCN8s(output_stride=4)
    with pytest.raises(ValueError, match="upsample must be"):
        FCN8s(upsample="nearest")
    with pytest.raises(ValueError, match=r"x must be a \[B, 3, H, W\] image batch, got \(1, 1, 16, 16\)"):
        FCN8s()(torch.zeros(1, 1, 16, 16))
    with pytest.raises(ValueError, match="input size 30x37 is not divisible by the total stride 8"):
        FCN8s(pad_mode="error")(_images(1, 30, 37))
