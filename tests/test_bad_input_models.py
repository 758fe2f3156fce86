"""Bad input to the models: images must be float RGB in [0, 1], detector targets need
labels in 1..C and finite ordered boxes, and an empty batch gives the empty answer."""

from functools import cache

import pytest
import torch

from cvcourse import recipes
from cvcourse.models.checks import check_images, check_targets

MODELS = ["classifier", "detr", "faster_rcnn", "fcn", "localizer", "mask_rcnn", "patch", "rcnn",
          "retinanet", "ssd", "unet", "vit", "yolo"]
DETECTORS = ["detr", "faster_rcnn", "mask_rcnn", "retinanet", "ssd", "yolo"]
SMALL = {"classifier", "vit", "patch", "localizer"}  # 64 x 64 inputs; the rest 128 x 128


@cache
def model(name):
    torch.manual_seed(0)
    return recipes.get(name).build().eval()


def run(name, images):
    m = model(name).eval()
    with torch.no_grad():
        if name == "rcnn":
            return m.predict(images, [torch.tensor([[0.0, 0, 10, 10]])] * len(images))
        return m(images)


def size(name):
    return 64 if name in SMALL else 128


BAD_IMAGES = {  # label -> (make images from the side, message)
    "0-255 floats": (lambda s: torch.rand(1, 3, s, s) * 255, r"values in \[0, 1\].*divide by 255"),
    "uint8": (lambda s: (torch.rand(1, 3, s, s) * 255).to(torch.uint8), "floating point.*divide 0-255 images by 255"),
    "int64": (lambda s: torch.zeros(1, 3, s, s, dtype=torch.long), "floating point"),
    "negative": (lambda s: torch.rand(1, 3, s, s) - 0.5, r"values in \[0, 1\]"),
    "ImageNet-normalised": (lambda s: (torch.rand(1, 3, s, s) - 0.485) / 0.229, r"values in \[0, 1\]"),
    "NaN": (lambda s: torch.full((1, 3, s, s), float("nan")), "finite"),
    "inf": (lambda s: torch.full((1, 3, s, s), float("inf")), "finite"),
    "one channel": (lambda s: torch.rand(1, 1, s, s), r"must be a (Tensor)?\[B, 3, H, W\]"),
    "four channels": (lambda s: torch.rand(1, 4, s, s), r"must be a (Tensor)?\[B, 3, H, W\]"),
    "no batch axis": (lambda s: torch.rand(3, s, s), r"must be a (Tensor)?\[B, 3, H, W\]"),
    "a list": (lambda s: [torch.rand(3, s, s)], r"must be a (Tensor)?\[B, 3, H, W\]"),
}


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("bad", BAD_IMAGES)
def test_models_reject_bad_images(name, bad):
    make, match = BAD_IMAGES[bad]
    with pytest.raises(ValueError, match=match):
        run(name, make(size(name)))


@pytest.mark.parametrize("name", MODELS)
def test_an_empty_batch_gives_the_empty_answer(name):
    s = size(name)
    out = run(name, torch.zeros(0, 3, s, s))
    if name in DETECTORS or name == "rcnn":
        assert out == []
    elif name == "localizer":
        assert out[0].shape == (0, 3) and out[1].shape == (0, 4)
    else:
        assert out.shape[0] == 0 and out.shape[1:] == run(name, torch.rand(1, 3, s, s)).shape[1:]


def test_images_at_the_range_ends_and_slightly_noisy_pass():
    check_images(torch.zeros(1, 3, 4, 4))
    check_images(torch.ones(1, 3, 4, 4))
    check_images(torch.zeros(0, 3, 4, 4))
    check_images(torch.rand(1, 3, 4, 4) + 0.2)  # small noise, as a gradient probe adds
    with pytest.raises(ValueError, match=r"values in \[0, 1\] \(within 0.25\), got values in \[0, 1.3\]"):
        check_images(torch.tensor([0.0, 1.3]).repeat(1, 3, 1, 1))  # (1, 3, 1, 2)


def _target(boxes=((10.0, 10, 40, 40),), labels=(1,)):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels), "masks": torch.zeros(len(labels), 128, 128, dtype=torch.bool)}


BAD_TARGETS = {  # label -> (targets, message)
    "label 0 (background)": ([_target(labels=(0,))], r"labels'\] must be in 1..3 \(0 is the background"),
    "label C + 1": ([_target(labels=(4,))], r"must be in 1..3"),
    "label -1": ([_target(labels=(-1,))], r"must be in 1..3"),
    "float labels": ([{**_target(), "labels": torch.tensor([1.0])}], "integer class indices"),
    "a label too many": ([{**_target(), "labels": torch.tensor([1, 2])}], "one label per box"),
    "labels missing": ([{"boxes": _target()["boxes"]}], "one label per box"),
    "NaN box": ([_target(boxes=((10.0, 10, float("nan"), 40),))], "must be finite"),
    "inf box": ([_target(boxes=((10.0, 10, float("inf"), 40),))], "must be finite"),
    "x2 < x1": ([_target(boxes=((40.0, 10, 10, 40),))], "x2 > x1"),
    "5-number box": ([{**_target(), "boxes": torch.tensor([[10.0, 10, 40, 40, 1]])}], r"Tensor\[N, 4\]"),
    "int boxes": ([{**_target(), "boxes": torch.tensor([[10, 10, 40, 40]])}], "floating point"),
    "one target for two images": ([_target()], "one dict per image"),
    "no targets": (None, "targets must be given in training mode"),
    "a dict, not a list": (_target(), "list of dicts"),
}


@pytest.mark.parametrize("name", DETECTORS)
@pytest.mark.parametrize("bad", BAD_TARGETS)
def test_detectors_reject_bad_targets_in_training(name, bad):
    targets, match = BAD_TARGETS[bad]
    images = torch.rand(2 if bad == "one target for two images" else 1, 3, 128, 128)
    m = model(name)
    m.train()
    try:
        with pytest.raises(ValueError, match=match):
            m(images, targets)
    finally:
        m.eval()


@pytest.mark.parametrize("name", DETECTORS)
def test_detectors_refuse_an_empty_training_batch(name):
    m = model(name)
    m.train()
    try:
        with pytest.raises(ValueError, match="at least one image in training mode"):
            m(torch.zeros(0, 3, 128, 128), [])
    finally:
        m.eval()


def test_check_targets_without_num_classes_still_rejects_background():
    with pytest.raises(ValueError, match=r"must be in 1..C \(0 is the background"):
        check_targets([_target(labels=(0,))], 1)
    check_targets([_target(labels=(7,))], 1)  # no upper bound known


def test_good_targets_still_train():
    m = model("faster_rcnn")
    m.train()
    try:
        losses = m(torch.rand(1, 3, 128, 128), [_target(labels=(3,))])
        assert all(torch.isfinite(v) for v in losses.values())
    finally:
        m.eval()
