"""Tests for cvcourse.data.real: VOC and COCO loaders on tiny fixture datasets."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from cvcourse.data import VOC_CLASSES, coco_detection, voc_detection, voc_segmentation

VOC_XML = """<annotation>
  <filename>{name}.jpg</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  {objects}
</annotation>"""
VOC_OBJECT = """<object><name>{name}</name><difficult>{difficult}</difficult>
  <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"""


def semantic_fixture(h, w):
    sem = np.zeros((h, w), np.uint8)
    sem[2:8, 3:10] = 12  # dog
    sem[9:14, 12:18] = 15  # person
    sem[1:9, 2] = 255  # a boundary column: ignore
    return sem


@pytest.fixture
def voc_root(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation", "ImageSets/Main"):
        (base / d).mkdir(parents=True)
    images = {"2012_000001": (16, 20, (200, 40, 40)), "2012_000002": (12, 24, (30, 60, 220))}
    objects = {
        "2012_000001": [dict(name="dog", difficult=0, x1=4, y1=3, x2=10, y2=8),
                        dict(name="person", difficult=1, x1=13, y1=10, x2=18, y2=14)],
        "2012_000002": [],
    }
    for name, (h, w, colour) in images.items():
        Image.new("RGB", (w, h), colour).save(base / "JPEGImages" / f"{name}.jpg", quality=95)
        objs = "\n".join(VOC_OBJECT.format(**o) for o in objects[name])
        (base / "Annotations" / f"{name}.xml").write_text(VOC_XML.format(name=name, w=w, h=h, objects=objs))
        png = Image.fromarray(semantic_fixture(h, w)).convert("P")  # palette PNG, like VOC's
        # any palette: the loader must read palette indices, never colours
        png.putpalette(np.random.default_rng(0).integers(0, 256, 768, dtype=np.uint8).tobytes())
        png.save(base / "SegmentationClass" / f"{name}.png")
    for split_dir in ("Segmentation", "Main"):
        (base / "ImageSets" / split_dir / "train.txt").write_text("\n".join(images) + "\n")
    return tmp_path


def test_voc_classes():
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[0] == "background"
    assert VOC_CLASSES[12] == "dog" and VOC_CLASSES[15] == "person" and VOC_CLASSES[20] == "tvmonitor"


def test_voc_segmentation(voc_root):
    ds = voc_segmentation(voc_root)
    assert len(ds) == 2
    image, semantic = ds[0]
    assert image.shape == (3, 16, 20) and image.dtype == torch.float32
    assert torch.allclose(image.mean((1, 2)), torch.tensor([200, 40, 40]) / 255, atol=0.03)  # JPEG
    assert semantic.dtype == torch.int64
    assert torch.equal(semantic, torch.from_numpy(semantic_fixture(16, 20)).long())
    assert set(semantic.unique().tolist()) == {0, 12, 15, 255}
    assert (semantic == 255).sum() == 8


def test_voc_detection(voc_root):
    ds = voc_detection(voc_root)
    image, target = ds[0]
    assert image.shape == (3, 16, 20)
    # VOC (xmin=4, ymin=3, xmax=10, ymax=8), 1-based inclusive -> pixel edges (3, 2, 10, 8)
    assert target["boxes"].tolist() == [[3.0, 2.0, 10.0, 8.0]]
    assert target["boxes"].dtype == torch.float32
    assert target["labels"].tolist() == [12] and target["labels"].dtype == torch.int64
    _, target = voc_detection(voc_root, keep_difficult=True)[0]
    assert target["boxes"].tolist() == [[3.0, 2.0, 10.0, 8.0], [12.0, 9.0, 18.0, 14.0]]
    assert target["labels"].tolist() == [12, 15]
    assert target["difficult"].tolist() == [False, True]
    # the box of a VOC object matches the pixels it covers in the semantic fixture
    sem = torch.from_numpy(semantic_fixture(16, 20))
    x1, y1, x2, y2 = (int(v) for v in target["boxes"][1])
    assert (sem[y1:y2, x1:x2] == 15).all() and (sem == 15).sum() == (x2 - x1) * (y2 - y1)
    _, empty = ds[1]
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_voc_missing_data(voc_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="root.*VOCdevkit"):
        voc_segmentation(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="image_set"):
        voc_detection(voc_root, image_set="val")
    with pytest.raises(ValueError, match="year"):
        voc_segmentation(voc_root, year="2020")


@pytest.fixture
def coco(tmp_path):
    images_dir = tmp_path / "images"
    images_dir.mkdir()
    images = [dict(id=1, file_name="a.png", height=20, width=30),
              dict(id=5, file_name="b.png", height=16, width=32),
              dict(id=9, file_name="c.png", height=10, width=10)]
    rng = np.random.default_rng(0)
    for im in images:
        pixels = rng.integers(0, 256, (im["height"], im["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images_dir / im["file_name"])
    crowd = {"size": [20, 30], "counts": [100, 20, 480]}  # uncompressed RLE
    annotations = [
        dict(id=1, image_id=1, category_id=7, iscrowd=0, area=70.0, bbox=[2, 3, 10, 7],
             segmentation=[[2, 3, 12, 3, 12, 10, 2, 10]]),
        dict(id=2, image_id=1, category_id=1, iscrowd=1, area=20.0, bbox=[3, 0, 1, 20], segmentation=crowd),
        dict(id=3, image_id=1, category_id=1, iscrowd=0, area=0.0, bbox=[5, 5, 0, 4],
             segmentation=[[5, 5, 5, 9, 5, 5]]),
        dict(id=4, image_id=5, category_id=1, iscrowd=0, area=48.0, bbox=[20, 2, 8, 12],
             segmentation=[[20, 2, 28, 2, 20, 14]]),
        dict(id=5, image_id=5, category_id=7, iscrowd=0, area=4.0, bbox=[0.5, 1.5, 2.0, 2.0],
             segmentation=[[0.5, 1.5, 2.5, 1.5, 2.5, 3.5, 0.5, 3.5]]),
    ]
    categories = [dict(id=1, name="circle"), dict(id=7, name="cat")]
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps(dict(images=images, annotations=annotations, categories=categories)))
    return images_dir, ann_file


def test_coco_detection(coco):
    root, ann_file = coco
    ds = coco_detection(root, ann_file)
    assert len(ds) == 3
    image, target = ds[0]
    expected = np.asarray(Image.open(root / "a.png"), dtype=np.float32).transpose(2, 0, 1) / 255
    assert torch.allclose(image, torch.from_numpy(expected))  # PNG: lossless
    assert target["image_id"] == 1
    # the crowd annotation and the zero-width box are dropped; xywh -> xyxy
    assert target["boxes"].tolist() == [[2.0, 3.0, 12.0, 10.0]]
    assert target["labels"].tolist() == [7] and target["labels"].dtype == torch.int64
    assert "masks" not in target
    _, target = ds[1]
    assert target["image_id"] == 5 and target["labels"].tolist() == [1, 7]
    assert target["boxes"].tolist() == [[20.0, 2.0, 28.0, 14.0], [0.5, 1.5, 2.5, 3.5]]


def test_coco_masks(coco):
    root, ann_file = coco
    ds = coco_detection(root, ann_file, with_masks=True)
    image, target = ds[0]
    masks = target["masks"]
    assert masks.shape == (1, 20, 30) and masks.dtype == torch.bool
    rectangle = torch.zeros(20, 30, dtype=torch.bool)
    rectangle[3:10, 2:12] = True  # polygon (2, 3)-(12, 10): exactly the pixels of its box
    assert torch.equal(masks[0], rectangle)
    _, target = ds[1]
    triangle = target["masks"][0]
    assert triangle.sum() == 48  # area of the right triangle with legs 8 and 12
    assert not triangle[:2].any() and not triangle[:, :20].any() and triangle[2, 20:28].all()
    _, target = ds[2]  # an image without annotations
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 10, 10)


def test_coco_missing_data(coco, tmp_path):
    root, ann_file = coco
    with pytest.raises(FileNotFoundError, match="root"):
        coco_detection(tmp_path / "nowhere", ann_file)
    with pytest.raises(FileNotFoundError, match="ann_file"):
        coco_detection(root, tmp_path / "missing.json")
