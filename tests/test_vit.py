"""Vision Transformer: our attention vs torch's, patch embedding, rollout vs numpy, the checkpoint."""
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cvcourse import exercises, pretrained, recipes
from cvcourse.exercises.vit import random_attentions
from cvcourse.interpret.attention import attention_maps, attention_rollout, cls_attention, upsample_to_image
from cvcourse.models import VisionTransformer
from cvcourse.models.vit import Attention, patchify

pytestmark = pytest.mark.usefixtures("one_thread")


def _tokens(b=2, t=17, dim=32, seed=0, dtype=torch.float64):
    return torch.randn(b, t, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ---------------------------------------------------------------------------- attention
@pytest.mark.parametrize("heads", [1, 4])
def test_attention_equals_torch_multihead_attention(heads):
    torch.manual_seed(0)
    ours = Attention(32, heads).double()
    ref = nn.MultiheadAttention(32, heads, batch_first=True).double()
    with torch.no_grad():  # identical layout: q, k, v stacked in one projection, then out_proj
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.in_proj_bias.copy_(ours.qkv.bias)
        ref.out_proj.weight.copy_(ours.proj.weight)
        ref.out_proj.bias.copy_(ours.proj.bias)
    x = _tokens().requires_grad_()
    out, attn = ours(x, return_attention=True)
    out_ref, attn_ref = ref(x, x, x, need_weights=True, average_attn_weights=False)
    assert out.shape == (2, 17, 32) and attn.shape == (2, heads, 17, 17)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn, attn_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, heads, 17, dtype=attn.dtype))
    # gradients agree too
    g = torch.randn_like(out)
    (gx,) = torch.autograd.grad((out * g).sum(), x)
    (gx_ref,) = torch.autograd.grad((out_ref * g).sum(), x)
    torch.testing.assert_close(gx, gx_ref, rtol=1e-5, atol=1e-5)


def test_attention_fast_path_equals_scaled_dot_product_attention():
    torch.manual_seed(1)
    att = Attention(32, 4).double()
    x = _tokens(seed=2)
    fast = att(x)                                   # F.scaled_dot_product_attention inside
    slow, _ = att(x, return_attention=True)         # explicit softmax(q kᵀ / √d) v
    q, k, v = att.qkv(x).view(2, 17, 3, 4, 8).permute(2, 0, 3, 1, 4)
    ref = att.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(2, 17, 32))
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(slow, ref, rtol=1e-5, atol=1e-5)


def test_attention_rejects_bad_inputs():
    with pytest.raises(ValueError, match="divisible by heads"):
        Attention(30, 4)
    with pytest.raises(ValueError, match=r"\[B, T, 32\]"):
        Attention(32, 4)(torch.zeros(2, 5, 16))


# -------------------------------------------------------------------------------- model
def test_patch_embedding_is_patchify_then_linear():
    torch.manual_seed(0)
    model = VisionTransformer(dim=16, depth=1, heads=2).double()
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    conv = model.patch_embed
    ref = patchify(x, 8) @ conv.weight.reshape(16, -1).T + conv.bias       # (2, 64, 16)
    torch.testing.assert_close(conv(x).flatten(2).transpose(1, 2), ref, rtol=1e-10, atol=1e-10)
    # patch k (row-major) is the pixel block at row k // 8, column k % 8
    k = 19
    torch.testing.assert_close(patchify(x, 8)[:, k], x[:, :, 16:24, 24:32].reshape(2, -1))


def test_vit_shapes_and_attentions():
    torch.manual_seed(0)
    model = VisionTransformer(dim=32, depth=3, heads=4).eval()
    x = torch.rand(5, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
        logits2, attns = model(x, return_attention=True)
    assert logits.shape == (5, 3)
    torch.testing.assert_close(logits, logits2, rtol=1e-5, atol=1e-5)  # fused and explicit paths agree
    assert len(attns) == 3 and all(a.shape == (5, 4, 65, 65) for a in attns)
    assert model.num_tokens == 65 and model.grid == 8


def test_conv_stem_gives_one_token_per_patch_cell():
    torch.manual_seed(0)
    model = VisionTransformer(dim=32, depth=2, heads=4, stem="conv").eval()
    x = torch.rand(2, 3, 64, 64)
    cells = model.stem(model.standardize(x))
    assert cells.shape == (2, 16, 8, 8)                         # 3 stride-2 convs: 64 -> 8, dim/2 channels
    assert [m.stride for m in model.stem if isinstance(m, torch.nn.Conv2d)] == [(2, 2)] * 3
    assert model.tokens(x).shape == (2, 65, 32) and model(x).shape == (2, 3)
    # a cell's vector depends on its own 8x8 cell and a margin, not on far-away pixels
    # (the stem alone, in eval mode; the per-image standardization before it is global)
    y = x.clone()
    y[:, :, 48:, 48:] = 0.0                                    # change the bottom-right corner only
    with torch.no_grad():
        a, b = model.stem(x), model.stem(y)
    assert torch.equal(a[..., :5, :5], b[..., :5, :5]) and not torch.equal(a, b)
    with pytest.raises(ValueError, match="power-of-two"):
        VisionTransformer(image_size=60, patch_size=6, stem="conv")
    with pytest.raises(ValueError, match="stem must be"):
        VisionTransformer(stem="resnet")


def test_vit_rejects_bad_inputs():
    with pytest.raises(ValueError, match="multiple of patch_size"):
        VisionTransformer(image_size=60, patch_size=8)
    with pytest.raises(ValueError, match="num_classes"):
        VisionTransformer(num_classes=1)
    with pytest.raises(ValueError, match="dim must be divisible"):
        VisionTransformer(dim=30, heads=4)
    model = VisionTransformer(dim=16, depth=1, heads=2)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="64x64"):
        model(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="multiples of patch_size"):
        patchify(torch.zeros(1, 3, 10, 16), 8)


# ------------------------------------------------------------------------ interpretation
def _numpy_rollout(a):
    """Abnar & Zuidema's rollout written directly: a is [L, heads, T, T] for one image."""
    L, _, T, _ = a.shape
    r = np.eye(T)
    for layer in range(L):
        m = 0.5 * a[layer].mean(0) + 0.5 * np.eye(T)
        m = m / m.sum(1, keepdims=True)
        r = m @ r
    g = int(round(np.sqrt(T - 1)))
    return r[0, 1:].reshape(g, g)


def test_rollout_equals_numpy():
    a = random_attentions(4, 3, 2, 3, generator=torch.Generator().manual_seed(0))   # (4, 3, 2, 10, 10)
    ours = attention_rollout(a)
    assert ours.shape == (3, 3, 3)
    for b in range(3):
        np.testing.assert_allclose(ours[b].numpy(), _numpy_rollout(a[:, b].numpy()), rtol=1e-10, atol=1e-12)
    # a list of per-layer tensors works the same; float32 agrees to 1e-5
    torch.testing.assert_close(attention_rollout(list(a.float())), ours.float(), rtol=1e-5, atol=1e-6)


def test_rollout_variants():
    a = random_attentions(3, 2, 4, 2, generator=torch.Generator().manual_seed(1))
    # one layer, no residual: rollout is the CLS row of the head-mean attention
    torch.testing.assert_close(attention_rollout(a[:1], residual=False), a[0, :, :, 0, 1:].mean(1).reshape(2, 2, 2))
    for fusion in ("mean", "max", "min"):
        r = attention_rollout(a, head_fusion=fusion, discard_ratio=0.5)
        assert r.shape == (2, 2, 2) and (r >= 0).all() and (r.sum((1, 2)) <= 1 + 1e-12).all()
    # discarding keeps the CLS→CLS weight and zeros the smallest: compare one layer by hand
    fused = a[0].mean(1)                                                  # (2, 5, 5)
    flat = fused.reshape(2, 25)
    thr = flat.sort(-1).values[:, 12:13]                                  # 12 = int(25 * 0.5) discarded
    kept = torch.where(flat >= thr, flat, 0.0)
    kept[:, 0] = flat[:, 0]
    m = 0.5 * kept.reshape(2, 5, 5) + 0.5 * torch.eye(5, dtype=a.dtype)
    m = m / m.sum(-1, keepdim=True)
    torch.testing.assert_close(attention_rollout(a[:1], discard_ratio=0.5), m[:, 0, 1:].reshape(2, 2, 2))
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout(a, head_fusion="sum")
    with pytest.raises(ValueError, match="discard_ratio"):
        attention_rollout(a, discard_ratio=1.0)
    with pytest.raises(ValueError, match=r"\[L, B, heads, T, T\]"):
        attention_rollout(a[0])
    with pytest.raises(ValueError, match="square grid"):
        attention_rollout(random_attentions(1, 1, 1, 2)[..., :4, :4])


def test_cls_attention_and_upsample():
    a = random_attentions(2, 3, 4, 3, generator=torch.Generator().manual_seed(2))
    m = cls_attention(a, layer=-1, head=2)
    torch.testing.assert_close(m, a[1, :, 2, 0, 1:].reshape(3, 3, 3))
    torch.testing.assert_close(cls_attention(a, 0), a[0, :, :, 0, 1:].mean(1).reshape(3, 3, 3))
    with pytest.raises(ValueError, match="layer"):
        cls_attention(a, 2)
    with pytest.raises(ValueError, match="head"):
        cls_attention(a, 0, head=4)
    up = upsample_to_image(m, 24)
    assert up.shape == (3, 24, 24) and upsample_to_image(m[0], (24, 24)).shape == (24, 24)
    # each patch's value sits at its patch centre: a constant map stays constant
    torch.testing.assert_close(upsample_to_image(torch.ones(2, 3, 3), 12), torch.ones(2, 12, 12))
    with pytest.raises(ValueError, match="maps"):
        upsample_to_image(torch.zeros(3), 8)


def test_attention_maps_leaves_model_unchanged():
    torch.manual_seed(0)
    model = VisionTransformer(dim=16, depth=2, heads=2).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(5, 3, 64, 64)
    a = attention_maps(model, x, batch_size=2)                 # three chunks
    assert a.shape == (2, 5, 2, 65, 65)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    model.eval()
    with torch.no_grad():
        _, ref = model(x, return_attention=True)
    torch.testing.assert_close(a, torch.stack(ref))
    torch.testing.assert_close(attention_maps(model, x[0]), torch.stack(ref)[:, :1])
    with pytest.raises(ValueError, match="images"):
        attention_maps(model, torch.zeros(64, 64))


def test_exercise_checkers():
    from cvcourse.models.vit import patchify as reference

    assert exercises.check_patchify(reference)
    assert not exercises.check_patchify(lambda x, p: x.reshape(x.shape[0], -1, x.shape[1] * p * p))
    assert exercises.check_attention_rollout(attention_rollout)
    assert not exercises.check_attention_rollout(lambda a: attention_rollout(a, residual=False))

    def stub(a):
        raise NotImplementedError

    assert not exercises.check_attention_rollout(stub)


# ------------------------------------------------------------------------------ widgets
def test_widget_figures():
    from cvcourse.widgets import time_figure
    from cvcourse.widgets.vit import (
        attention_heads_figure,
        cls_vs_rollout_figure,
        map_for,
        patch_tokens_figure,
        vit_attention_figure,
        vit_attention_widget,
    )

    torch.manual_seed(0)
    model = VisionTransformer(dim=16, depth=2, heads=2)
    images = torch.rand(4, 3, 64, 64)
    masks = torch.zeros(4, 64, 64, dtype=torch.bool)
    masks[:, 20:40, 20:40] = True
    a = attention_maps(model, images)
    for fig in (patch_tokens_figure(images[0]), attention_heads_figure(images[0], a[:, 0], masks[0]),
                cls_vs_rollout_figure(images, a, masks, indices=(0, 1))):
        assert len(fig.axes) >= 2
    torch.testing.assert_close(map_for(a, 1, 1, "mean", "rollout"), attention_rollout(a[:, 1:2])[0])
    torch.testing.assert_close(map_for(a, 1, 0, 1, "CLS attention"), cls_attention(a, 0, 1)[1])
    settings = [dict(images=images, attentions=a, masks=masks, index=i % 4, layer=i % 2, head=h, view=v)
                for i, (h, v) in enumerate([("mean", "rollout"), (0, "CLS attention"), ("max", "rollout"),
                                            (1, "rollout"), ("max", "CLS attention")])]
    cpu = []  # CPU seconds per redraw (figure + PNG): what wall time is on an idle machine
    for s in settings:
        t = time.process_time()
        time_figure(vit_attention_figure, [s])
        cpu.append(time.process_time() - t)
    assert np.median(cpu) < 0.15, cpu      # the widget budget: 150 ms per callback
    with pytest.raises(ValueError, match="view"):
        vit_attention_figure(images, a, view="gradients")
    box = vit_attention_widget(images, a, masks)
    assert set(box.controls) >= {"index", "layer", "head", "view"}


# --------------------------------------------------------------------------- checkpoint
needs_checkpoint = pytest.mark.skipif("vit" not in pretrained.available(),
                                      reason="vit checkpoint not installed (python -m cvcourse.train vit)")


@needs_checkpoint
def test_vit_checkpoint_meets_its_bar_on_the_test_split():
    recipe = recipes.get("vit")
    model = pretrained.load("vit", device="cpu")
    metrics = recipe.evaluate(model, split="test")
    for k, bar in recipe.bar.items():
        assert metrics[k] >= bar, (k, metrics[k], bar)
