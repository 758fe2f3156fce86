"""The pretrained-model sections, offline: every code path with random weights (same
architecture, small inputs), the skip sentence when the download fails, and bad input."""

import os
import urllib.error

import pytest
import torch
from matplotlib.figure import Figure

from cvcourse import torchvision_pretrained as tp
from cvcourse.data import photos
from cvcourse.interpret import (
    attention_maps,
    attention_rollout,
    cls_attention,
    filter_images,
    grad_cam,
    guided_backprop,
    input_gradient,
    saliency,
)
from cvcourse.interpret.attention import upsample_to_image
from cvcourse.widgets.interpret import maps_figure

pytestmark = [pytest.mark.filterwarnings("error"), pytest.mark.usefixtures("one_thread")]
SMALL = {"min_size": 96, "max_size": 160}                    # R-CNN / RetinaNet input, pixels


@pytest.fixture(autouse=True)
def _no_download(monkeypatch):
    """No test may reach the network: a download attempt fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download weights")
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture()
def empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return tp.pixel_input(tp.load_torchvision("resnet50", weights=None))


# ---------------------------------------------------------------- loading and the skip path
def test_offline_gives_the_skip_sentence_and_writes_nothing(empty_cache, monkeypatch, capsys):
    monkeypatch.setattr(tp, "reachable", lambda url, timeout=3.0: False)
    with pytest.raises(tp.WeightsUnavailable) as error:
        tp.load_torchvision("resnet50")
    assert str(error.value) == tp.OFFLINE
    assert str(error.value).count(".") == 1 and "Colab" in str(error.value)   # one sentence
    assert capsys.readouterr() == ("", "")


def test_failed_download_gives_the_skip_sentence_and_silences_torch_hub(empty_cache, monkeypatch, capsys):
    """The host answers but the download fails (as torch hub does it: announced, then URLError)."""
    import sys

    from torchvision.models._api import WeightsEnum

    def failing(self, *args, **kwargs):
        sys.stdout.write(f'Downloading: "{self.url}"\n')
        sys.stderr.write("  0%|          | 0.00/97.8M\n")
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(tp, "reachable", lambda url, timeout=3.0: True)
    monkeypatch.setattr(WeightsEnum, "get_state_dict", failing)
    for name in ("resnet50", "fcn_resnet50", "fasterrcnn_resnet50_fpn_v2"):
        with pytest.raises(tp.WeightsUnavailable, match="could not be downloaded"):
            tp.load_torchvision(name)
    assert capsys.readouterr() == ("", "")


def test_the_environment_can_turn_downloads_off(empty_cache, monkeypatch, capsys):
    monkeypatch.setenv("CVCOURSE_DOWNLOADS", "0")
    monkeypatch.setattr(tp, "reachable", lambda url, timeout=3.0: pytest.fail("no check when turned off"))
    assert not tp.downloads_enabled()
    with pytest.raises(tp.WeightsUnavailable) as error:
        tp.load_torchvision("vit_b_16")
    assert str(error.value) == tp.DISABLED and capsys.readouterr() == ("", "")


def test_cached_weights_load_without_the_network(empty_cache, monkeypatch, resnet):
    """The online path after the download: the file in torch hub's cache is what is loaded."""
    monkeypatch.setattr(tp, "reachable", lambda url, timeout=3.0: pytest.fail("cached: no network check"))
    saved = resnet.net
    path = tp.cached_file(tp.weights_enum("resnet50"))
    assert path.startswith(str(empty_cache))
    os.makedirs(os.path.dirname(path))
    torch.save(saved.state_dict(), path)
    loaded = tp.load_torchvision("resnet50")
    assert not loaded.training
    assert torch.equal(loaded.conv1.weight, saved.conv1.weight) and torch.equal(loaded.fc.bias, saved.fc.bias)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="name must be one of"):
        tp.load_torchvision("resnet51", weights=None)
    with pytest.raises(ValueError, match="weights must be None, 'DEFAULT' or one of .*IMAGENET1K_V2"):
        tp.load_torchvision("resnet50", weights="COCO_V1")
    with pytest.raises(ValueError, match="name must be one of"):
        tp.photo_batch(["chelsea", "dog"])
    with pytest.raises(ValueError, match="size must be an int"):
        tp.resize_photo("chelsea", 8)
    with pytest.raises(ValueError, match="name must be one of"):
        tp.categories("yolo")


def test_categories_are_known_offline():
    assert tp.categories("fasterrcnn_resnet50_fpn_v2")[photos.COCO_IDS["motorcycle"]] == "motorcycle"
    assert all(tp.categories("maskrcnn_resnet50_fpn_v2")[i] == name for name, i in photos.COCO_IDS.items())
    assert len(tp.categories("resnet50")) == 1000 and tp.categories("fcn_resnet50")[8] == "cat"


def test_reachable_fails_fast_for_an_unroutable_host(monkeypatch):
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    assert not tp.reachable("https://nonexistent.invalid/x.pth", timeout=0.5)


# ---------------------------------------------------------------- inputs
def test_photo_batch_crops_like_imagenet_and_keeps_the_boxes():
    images, masks = tp.photo_batch(["chelsea", "coffee"], size=64)
    assert images.shape == (2, 3, 64, 64) and masks.shape == (2, 64, 64) and masks.dtype == torch.bool
    assert 0 <= images.min() and images.max() <= 1
    assert masks[0].all()                                     # the cat's box is the whole photo
    assert 0.3 < masks[1].float().mean() < 0.9                # cup and spoon: part of the crop
    image, mask = tp.resize_photo("motorcycle", 100)          # (500, 741): shorter side -> 100
    assert image.shape == (3, 100, 148) and mask.shape == (100, 148)


def test_pixel_input_normalises_with_imagenet_statistics(resnet):
    images, _ = tp.photo_batch(["coffee"], size=64)
    mean, std = torch.tensor(tp.IMAGENET_MEAN)[:, None, None], torch.tensor(tp.IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        assert torch.allclose(resnet(images), resnet.net((images - mean) / std), atol=1e-6)
    x = ((images - mean) / std).requires_grad_(True)
    (g,) = torch.autograd.grad(resnet.net(x)[:, 3].sum(), x)
    assert torch.allclose(input_gradient(resnet, images, 3), g / std, rtol=1e-4, atol=1e-7)   # chain rule


# ---------------------------------------------------------------- the chapters' code paths
@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_segmentation_on_photos(name, capfd):
    torch.manual_seed(0)
    model = tp.load_torchvision(name, weights=None)
    assert model.aux_classifier is not None                  # as built with the pretrained weights
    results = tp.segment_photos(model, ["chelsea", "motorcycle"], size=48)
    assert results[1]["image"].shape == (3, 48, 71) and results[1]["labels"].shape == (48, 71)
    assert all(0 <= r["labels"].min() and r["labels"].max() < 21 for r in results)
    fig = tp.segmentation_figure(results, tp.categories(name))
    assert isinstance(fig, Figure) and len(fig.axes) == 4
    assert capfd.readouterr().err == ""


def test_compact_classes_fit_the_course_colours():
    names = [f"c{i}" for i in range(21)]
    labels = torch.arange(21).repeat_interleave(torch.arange(1, 22))    # class i covers i + 1 pixels
    compact, shown = tp._compact(labels, names, keep=12)
    assert len(shown) == 12 and shown[0] == "c0" and shown[1] == "c20" and shown[-1] == "other"
    assert int(compact.max()) == 11 and (compact[labels == 20] == 1).all() and (compact[labels == 1] == 11).all()


@pytest.mark.parametrize("name", ["fasterrcnn_resnet50_fpn_v2", "retinanet_resnet50_fpn_v2", "ssd300_vgg16"])
def test_detectors_on_photos_are_scored_against_the_annotations(name, capfd):
    torch.manual_seed(0)
    kwargs = {**tp.CPU_KWARGS[name], **(SMALL if name != "ssd300_vgg16" else {})}
    model = tp.load_torchvision(name, weights=None, **kwargs)
    names = ["coffee", "motorcycle"]
    preds, seconds = tp.detect_photos(model, names)
    assert seconds > 0 and len(preds) == 2
    for p, n in zip(preds, names):
        h, w = photos.info(n)["size"]
        assert p["boxes"].shape[1:] == (4,) and len(p["scores"]) == len(p["labels"]) == len(p["boxes"])
        if len(p["boxes"]):                                   # in the photo's own pixels
            assert p["boxes"][:, 2].max() <= w + 1e-3 and p["boxes"][:, 3].max() <= h + 1e-3
            assert int(p["labels"].max()) < 91
    scores = tp.score_photos(preds, names)
    assert -1 <= scores["map"] <= 1 and -1 <= scores["map_50"] <= 1
    fig = tp.detections_figure(names, preds, tp.categories(name), score_threshold=0.0, title=name)
    assert isinstance(fig, Figure) and fig._suptitle.get_text() == name
    assert capfd.readouterr().err == ""


def test_scoring_the_annotations_themselves_gives_map_one():
    names = photos.names()
    perfect = [{**photos.targets(n), "scores": torch.ones(len(photos.targets(n)["boxes"]))} for n in names]
    assert tp.score_photos(perfect, names)["map"] == pytest.approx(1.0)
    shifted = [{**p, "boxes": p["boxes"] + 1000} for p in perfect]
    assert tp.score_photos(shifted, names)["map"] == pytest.approx(0.0)


def test_instance_segmentation_on_photos(capfd):
    torch.manual_seed(0)
    model = tp.load_torchvision("maskrcnn_resnet50_fpn_v2", weights=None,
                                **{**tp.CPU_KWARGS["maskrcnn_resnet50_fpn_v2"], **SMALL})
    preds, _ = tp.detect_photos(model, ["coffee"])
    h, w = photos.info("coffee")["size"]
    assert preds[0]["masks"].shape[1:] == (1, h, w) and len(preds[0]["masks"]) <= 20
    fig = tp.detections_figure(["coffee"], preds, tp.categories("maskrcnn_resnet50_fpn_v2"), 0.0, masks=True)
    assert isinstance(fig, Figure) and capfd.readouterr().err == ""


def test_resnet_explanations_on_photos(resnet, capfd):
    images, masks = tp.photo_batch(["chelsea", "coffee"], size=64)
    top = tp.top_classes(resnet, images, tp.categories("resnet50"), k=3)
    assert len(top) == 2 and all(len(t) == 3 and t[0][2] >= t[1][2] >= t[2][2] for t in top)
    with torch.no_grad():
        assert [t[0][0] for t in top] == resnet(images).argmax(1).tolist()
    assert all(tp.categories("resnet50")[i] == name for t in top for i, name, _ in t)
    classes = [t[0][0] for t in top]
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    maps = {"saliency": saliency(resnet, images, classes),
            "guided": guided_backprop(resnet, images, classes).abs().amax(1),
            "Grad-CAM layer4": grad_cam(resnet, "net.layer4", images, classes),
            "Grad-CAM layer2": grad_cam(resnet, "net.layer2", images, classes)}
    for m in maps.values():
        assert m.shape == (2, 64, 64) and torch.isfinite(m).all() and (m >= 0).all()
    assert all(torch.equal(v, resnet.state_dict()[k]) for k, v in before.items())
    assert isinstance(maps_figure(images, maps, masks, titles=["a", "b"], overlay=True), Figure)
    assert capfd.readouterr().err == ""


def test_alexnet_first_layer_filters():
    model = tp.load_torchvision("alexnet", weights=None)
    w = model.features[0].weight                                   # the 64 first-layer filters
    assert w.shape == (64, 3, 11, 11)
    from cvcourse import viz

    fig = viz.image_grid(list(filter_images(w).numpy()), ncols=16, size=0.5)
    assert len([ax for ax in fig.axes if ax.images]) == 64


def test_vit_adapter_returns_torchvision_vits_attention():
    torch.manual_seed(0)
    vit = tp.pixel_input(tp.load_torchvision("vit_b_16", weights=None))
    assert isinstance(vit, tp.ViTWithAttention)
    images, _ = tp.photo_batch(["chelsea", "astronaut"], size=224)
    with torch.no_grad():
        plain = vit(images)
        logits, kept = vit(images, return_attention=True)
    assert torch.allclose(logits, plain, atol=1e-4)                 # asking for the weights changes nothing
    assert all(not b.self_attention._forward_pre_hooks and not b.self_attention._forward_hooks
               for b in vit.net.encoder.layers)                     # hooks removed
    attn = attention_maps(vit, images)
    assert attn.shape == (12, 2, 12, 197, 197)
    assert torch.allclose(attn.sum(-1), torch.ones(()), atol=1e-5)
    # layer 0 by hand: softmax(q kᵀ / √d) from the block's own projections
    net = vit.net
    with torch.no_grad():
        x = net._process_input((images - vit.mean) / vit.std)
        x = torch.cat([net.class_token.expand(2, -1, -1), x], 1) + net.encoder.pos_embedding
        mha = net.encoder.layers[0].self_attention
        q, k, _ = torch.nn.functional.linear(net.encoder.layers[0].ln_1(x), mha.in_proj_weight,
                                             mha.in_proj_bias).chunk(3, -1)       # (B, T, 768) each
        q, k = (t.reshape(2, 197, 12, 64).transpose(1, 2) for t in (q, k))        # (B, heads, T, 64)
        manual = (q @ k.transpose(-1, -2) / 8.0).softmax(-1)
    assert torch.allclose(attn[0], manual, atol=1e-5)
    rollout, last = attention_rollout(attn), cls_attention(attn, -1)
    assert rollout.shape == last.shape == (2, 14, 14)
    assert upsample_to_image(rollout, 224).shape == (2, 224, 224)


def test_pages_workflow_builds_with_downloads_and_caches_the_weights():
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    jobs = yaml.safe_load((root / ".github" / "workflows" / "book.yml").read_text())["jobs"]
    build = jobs["build"]
    assert build["env"]["CVCOURSE_DOWNLOADS"] != "0" and build["env"]["TORCH_HOME"]
    caches = [s for s in build["steps"] if str(s.get("uses", "")).startswith("actions/cache@")]
    assert caches and caches[0]["with"]["path"] == "${{ env.TORCH_HOME }}/hub/checkpoints"
    names = [s.get("name", "") for s in build["steps"]]
    assert names.index(caches[0]["name"]) < next(i for i, n in enumerate(names) if n.startswith("Build the book"))
    tests = next(s for s in jobs["tests"]["steps"] if "pytest" in s.get("run", ""))
    assert tests["env"]["CVCOURSE_DOWNLOADS"] == "0"
    assert "CVCOURSE_DOWNLOADS=0" in (root / "README.md").read_text()
