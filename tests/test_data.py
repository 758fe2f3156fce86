"""Tests for cvcourse.data.shapes: the procedural shapes scenes."""
import hashlib
import time

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from torch.utils.data import DataLoader
from torchvision.ops import masks_to_boxes

from cvcourse.data import (
    CLASSES,
    NUM_CLASSES,
    SPLITS,
    ShapesDataset,
    detection_collate,
    make_scene,
    masks_to_boxes_xyxy,
    object_size_range,
    shapes,
)


@pytest.fixture(scope="module")
def colour_sample():
    """Per-object (mean colour, class, contrast to the background ring) over 300 scenes."""
    colours, labels, contrast = [], [], []
    for i in range(300):
        s = make_scene(i, size=64)
        image, background = s["image"].numpy(), (s["semantic"] == 0).numpy()
        for mask, label in zip(s["masks"].numpy(), s["labels"].tolist()):
            colour = image[:, mask].mean(axis=1)
            colours.append(colour)
            labels.append(label)
            ring = ndimage.binary_dilation(mask, iterations=2) & ~mask & background
            if ring.sum() > 5:
                contrast.append(np.linalg.norm(image[:, ring].mean(axis=1) - colour))
    return np.array(colours), np.array(labels), np.array(contrast)


def test_constants():
    assert CLASSES == ("background", "circle", "square", "triangle")
    assert NUM_CLASSES == 4
    assert SPLITS == ("train", "val", "test")
    assert object_size_range(128) == (10, 48)
    assert object_size_range(64) == (6, 24)


def test_scene_types_and_ranges():
    s = make_scene(3)
    n = len(s["labels"])
    assert s["image"].shape == (3, 128, 128) and s["image"].dtype == torch.float32
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["semantic"].shape == (128, 128) and s["semantic"].dtype == torch.int64
    assert s["boxes"].shape == (n, 4) and s["boxes"].dtype == torch.float32
    assert s["labels"].dtype == torch.int64
    assert s["masks"].shape == (n, 128, 128) and s["masks"].dtype == torch.bool


def test_deterministic_and_distinct():
    a, b = make_scene(7, "val", 64, seed=3), make_scene(7, "val", 64, seed=3)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for other in (make_scene(8, "val", 64, seed=3), make_scene(7, "test", 64, seed=3),
                  make_scene(7, "val", 64, seed=4)):
        assert not torch.equal(a["image"], other["image"])


def test_splits_never_share_a_scene():
    hashes = {
        split: {hashlib.sha1(make_scene(i, split, 64)["image"].numpy().tobytes()).hexdigest()
                for i in range(200)}
        for split in SPLITS
    }
    assert all(len(h) == 200 for h in hashes.values())  # no repeats inside a split either
    assert not hashes["train"] & hashes["val"]
    assert not hashes["train"] & hashes["test"]
    assert not hashes["val"] & hashes["test"]


def check_targets(s, size, lo, hi):
    masks, labels, boxes, semantic = s["masks"], s["labels"], s["boxes"], s["semantic"]
    assert lo <= len(labels) <= hi
    assert ((labels >= 1) & (labels < NUM_CLASSES)).all()
    # visible masks are disjoint and every instance keeps enough pixels
    assert masks.sum(0).max() <= 1
    assert (masks.sum((1, 2)) >= shapes.MIN_VISIBLE_PIXELS).all()
    # semantic = union of instance masks, each labelled by its class
    expected = (masks.long() * labels[:, None, None]).sum(0)
    assert torch.equal(semantic, expected)
    # boxes are the tight bounds of the visible pixels, x2 = max column + 1
    if len(labels):
        assert torch.equal(boxes, masks_to_boxes(masks) + torch.tensor([0.0, 0, 1, 1]))
    assert ((boxes[:, 2:] - boxes[:, :2]) <= object_size_range(size)[1] + 1).all()


@settings(max_examples=25, deadline=None, database=None)
@given(index=st.integers(0, 10**6), split=st.sampled_from(SPLITS), size=st.sampled_from([32, 48, 64, 128]),
       lo=st.integers(0, 4), extra=st.integers(0, 4), seed=st.integers(0, 1000))
def test_scene_invariants(index, split, size, lo, extra, seed):
    s = make_scene(index, split, size, lo, lo + extra, seed)
    assert s["image"].shape == (3, size, size)
    check_targets(s, size, lo, lo + extra)


def test_object_count_covers_range():
    counts = [len(make_scene(i, size=32)["labels"]) for i in range(100)]
    assert set(counts) == {1, 2, 3, 4}


def test_empty_and_crowded_scenes():
    s = make_scene(0, min_objects=0, max_objects=0)
    assert s["boxes"].shape == (0, 4) and s["masks"].shape == (0, 128, 128)
    assert s["labels"].shape == (0,) and (s["semantic"] == 0).all()
    for i in range(5):  # the most crowded setting still places every object
        check_targets(make_scene(i, size=32, min_objects=8, max_objects=8), 32, 8, 8)


def full_objects(n_scenes, size):
    """(label, full unoccluded mask, visible mask) for every object of n_scenes layouts."""
    xx, yy = shapes._pixel_centres(size)
    out = []
    for i in range(n_scenes):
        rng = np.random.default_rng(i)
        labels, visible, pieces = shapes._layout(rng, 4, size, xx, yy, shapes.object_size_range(size))
        for label, vis, (win, mask) in zip(labels, visible, pieces):
            full = np.zeros((size, size), bool)
            full[win] = mask
            out.append((label, full, vis))
    return out


@pytest.mark.parametrize("size", [64, 128])
def test_sizes_and_visibility(size):
    lo, hi = object_size_range(size)
    objects = full_objects(40, size)
    extents = []
    for _, full, vis in objects:
        x1, y1, x2, y2 = masks_to_boxes_xyxy(full[None])[0].tolist()
        extents.append(max(x2 - x1, y2 - y1))
        assert vis.sum() >= max(shapes.MIN_VISIBLE_PIXELS, 0.4 * full.sum())
        assert not (vis & ~full).any()
    extents = np.array(extents)
    assert extents.min() >= lo - 1 and extents.max() <= hi + 1
    assert extents.min() <= lo + 0.2 * (hi - lo) and extents.max() >= hi - 0.2 * (hi - lo)


def test_shapes_have_their_fill_ratio():
    # area / box area of the full shape: circle pi/4, rotated square 1/(|cos|+|sin|)^2 in
    # [0.5, 1], any triangle <= 1/2. Loose bounds absorb the rasterization at small sizes.
    ratios = {1: [], 2: [], 3: []}
    for label, full, _ in full_objects(40, 128):
        x1, y1, x2, y2 = masks_to_boxes_xyxy(full[None])[0].tolist()
        ratios[int(label)].append(full.sum() / ((x2 - x1) * (y2 - y1)))
    circle, square, triangle = (np.array(ratios[k]) for k in (1, 2, 3))
    assert np.all(np.abs(circle - np.pi / 4) < 0.08)
    assert np.all((square > 0.45) & (square <= 1.0)) and square.max() > 0.85
    assert np.all(triangle < 0.6)


def test_colour_does_not_reveal_class(colour_sample):
    colours, labels, _ = colour_sample
    counts = np.bincount(labels, minlength=4)[1:]
    assert counts.min() > 0.25 * len(labels)  # classes are balanced
    # class means of the object colour agree within 3.5 standard errors
    for a in (1, 2, 3):
        for b in range(a + 1, 4):
            A, B = colours[labels == a], colours[labels == b]
            z = np.abs(A.mean(0) - B.mean(0)) / np.sqrt(A.var(0) / len(A) + B.var(0) / len(B))
            assert z.max() < 3.5, (a, b, z)
    # a nearest-class-mean classifier on colour alone is at chance on held-out objects
    half = len(labels) // 2
    centroids = np.stack([colours[:half][labels[:half] == k].mean(0) for k in (1, 2, 3)])
    predicted = 1 + np.argmin(((colours[half:, None] - centroids) ** 2).sum(-1), axis=1)
    assert (predicted == labels[half:]).mean() < 0.42


def test_objects_contrast_with_background(colour_sample):
    contrast = colour_sample[2]
    assert len(contrast) > 500
    assert np.percentile(contrast, 1) > 0.35 and contrast.min() > 0.15


def test_backgrounds_vary():
    stds, means = [], []
    for i in range(60):
        s = make_scene(i, size=64, min_objects=0, max_objects=0)
        stds.append(s["image"].std(dim=(1, 2)).max().item())
        means.append(s["image"].mean(dim=(1, 2)).numpy())
    assert np.median(stds) > 0.05  # not flat: gradients, noise, textures
    assert np.std(np.array(means), axis=0).min() > 0.15  # many colours


def test_masks_to_boxes_convention():
    masks = torch.zeros(2, 10, 12, dtype=torch.bool)
    masks[0, 4, 5] = True  # one pixel: width and height 1
    masks[1, 2:6, 3:9] = True
    boxes = masks_to_boxes_xyxy(masks)
    assert boxes.tolist() == [[5, 4, 6, 5], [3, 2, 9, 6]]
    assert torch.equal(boxes, masks_to_boxes(masks) + torch.tensor([0.0, 0, 1, 1]))
    with pytest.raises(ValueError, match="non-empty"):
        masks_to_boxes_xyxy(torch.zeros(1, 4, 4, dtype=torch.bool))


def test_views():
    scene = ShapesDataset("val", length=5, size=64)
    image, target = scene[2]
    full = make_scene(2, "val", 64)
    assert torch.equal(image, full["image"])
    assert set(target) == {"boxes", "labels", "masks", "semantic"}
    for key in target:
        assert torch.equal(target[key], full[key])
    assert len(scene) == 5 and torch.equal(scene.scene(2)["masks"], full["masks"])

    single = ShapesDataset("train", length=20, size=64, view="single")
    for i in range(20):
        image, target = single[i]
        assert image.shape == (3, 64, 64)
        assert target["boxes"].shape == (1, 4) and target["boxes"].dtype == torch.float32
        assert target["labels"].shape == (1,) and target["labels"].dtype == torch.int64

    cls = ShapesDataset("train", length=20, size=64, view="classification")
    labels = []
    for i in range(20):
        image, label = cls[i]
        assert label.shape == () and label.dtype == torch.int64
        assert torch.equal(label, single[i][1]["labels"][0])  # same scenes as "single"
        assert torch.equal(image, single[i][0])
        labels.append(int(label))
    assert set(labels) == {1, 2, 3}

    seg = ShapesDataset("test", length=3, size=32, view="segmentation")
    image, semantic = seg[1]
    assert semantic.shape == (32, 32) and semantic.dtype == torch.int64
    assert torch.equal(semantic, seg.scene(1)["semantic"])

    with pytest.raises(IndexError):
        seg[3]


def test_classification_batches_with_default_collate():
    loader = DataLoader(ShapesDataset(length=6, size=32, view="classification"), batch_size=3)
    images, labels = next(iter(loader))
    assert images.shape == (3, 3, 32, 32) and labels.shape == (3,) and labels.dtype == torch.int64


def test_detection_collate():
    ds = ShapesDataset(length=8, size=32)
    images, targets = next(iter(DataLoader(ds, batch_size=4, collate_fn=detection_collate)))
    assert images.shape == (4, 3, 32, 32)
    assert isinstance(targets, list) and len(targets) == 4
    for i, t in enumerate(targets):
        assert torch.equal(t["boxes"], ds[i][1]["boxes"])
    with pytest.raises(ValueError, match="empty"):
        detection_collate([])
    with pytest.raises(ValueError, match="shape"):
        detection_collate([ds[0], ShapesDataset(length=1, size=48)[0]])


@pytest.mark.parametrize("kwargs, match", [
    (dict(split="training"), "split"),
    (dict(size=16), "size"),
    (dict(min_objects=3, max_objects=2), "min_objects"),
    (dict(max_objects=20), "max_objects"),
    (dict(index=-1), "index"),
    (dict(seed=-1), "seed"),
])
def test_make_scene_validation(kwargs, match):
    args = dict(index=0) | kwargs
    with pytest.raises(ValueError, match=match):
        make_scene(**args)


def test_make_scene_rejects_non_integers():
    with pytest.raises(TypeError, match="index"):
        make_scene(1.5)


def test_dataset_validation():
    with pytest.raises(ValueError, match="view.*scene"):
        ShapesDataset(view="boxes")
    with pytest.raises(ValueError, match="split"):
        ShapesDataset(split="dev")
    with pytest.raises(ValueError, match="max_objects"):
        ShapesDataset(view="single", max_objects=3)
    with pytest.raises(ValueError, match="size"):
        ShapesDataset(size=8)
    with pytest.raises(ValueError, match="length"):
        ShapesDataset(length=-1)


def test_generation_is_fast():
    # a guard against per-pixel Python loops (~1-2 ms per scene on one core; loose bound)
    start = time.perf_counter()
    for i in range(100):
        make_scene(i)
    assert (time.perf_counter() - start) / 100 < 0.02


def test_object_size_range_can_be_chosen_and_is_validated():
    from cvcourse.data import ShapesDataset, make_scene

    for i in range(20):
        s = make_scene(i, split="val", size=64, object_size=(20, 30))
        for box in s["boxes"]:
            side = float(max(box[2] - box[0], box[3] - box[1]))
            assert side <= 30 + 1  # visible part of a 20..30 px object
        assert make_scene(i, split="val", size=64, object_size=None)["image"].equal(
            make_scene(i, split="val", size=64)["image"])
    ds = ShapesDataset("val", 4, size=64, view="classification", object_size=(12, 32))
    assert ds.object_size == (12, 32) and ds[0][0].shape == (3, 64, 64)
    with pytest.raises(ValueError, match="object_size"):
        make_scene(0, size=64, object_size=(4, 10))
    with pytest.raises(ValueError, match="object_size"):
        make_scene(0, size=64, object_size=(20, 40))
    with pytest.raises(TypeError, match="object_size"):
        make_scene(0, size=64, object_size=(10,))
