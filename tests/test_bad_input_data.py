"""Bad input to the data loaders: errors that name the file (and object), and pixel types
scaled by their own range. Every test writes its own small fixture."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cvcourse.data import ShapesDataset, coco_detection, detection_collate, make_scene, voc_detection
from cvcourse.data.real import image_to_tensor

VOC_XML = """<annotation>
  <filename>{name}.jpg</filename>
  <size><width>{w}</width><height>{h}</height><depth>3</depth></size>
  {objects}
</annotation>"""
VOC_OBJECT = ("<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin>"
              "<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def voc_tree(tmp_path, objects=(), xml=None, w=20, h=16):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / d).mkdir(parents=True)
    Image.new("RGB", (w, h), (200, 40, 40)).save(base / "JPEGImages" / "im.jpg")
    objs = "\n".join(VOC_OBJECT.format(**{"name": "dog", **o}) for o in objects)
    (base / "Annotations" / "im.xml").write_text(xml if xml is not None else
                                                  VOC_XML.format(name="im", w=w, h=h, objects=objs))
    (base / "ImageSets" / "Main" / "train.txt").write_text("im\n")
    return voc_detection(tmp_path)


def test_a_good_voc_box_loads(tmp_path):
    _, target = voc_tree(tmp_path, [dict(x1=1, y1=1, x2=20, y2=16)])[0]
    assert target["boxes"].tolist() == [[0.0, 0.0, 20.0, 16.0]]


VOC_CASES = [  # (objects, message)
    ([dict(x1=10, y1=3, x2=4, y2=8)], r"im.jpg, object 0 \(dog\): <bndbox> must have xmax >= xmin"),
    ([dict(x1=4, y1=9, x2=10, y2=3)], "ymax >= ymin"),
    ([dict(x1="nan", y1=3, x2=10, y2=8)], "must be finite"),
    ([dict(x1=4, y1=3, x2="inf", y2=8)], "must be finite"),
    ([dict(x1="four", y1=3, x2=10, y2=8)], "coordinates must be numbers"),
    ([dict(x1=4, y1=3, x2=21, y2=8)], "outside the 20 x 16 image"),
    ([dict(x1=4, y1=3, x2=10, y2=17)], "outside the 20 x 16 image"),
    ([dict(x1=0, y1=3, x2=10, y2=8)], "outside the 20 x 16 image"),
    ([dict(x1=-5, y1=3, x2=10, y2=8)], "outside"),
    ([dict(x1=2, y1=3, x2=10, y2=8), dict(x1=5, y1=5, x2=4, y2=8)], r"object 1 \(dog\)"),
    ([dict(name="unicorn", x1=2, y1=3, x2=10, y2=8)], r"im.jpg: unknown VOC class names \['unicorn'\]"),
]


@pytest.mark.parametrize("objects, match", VOC_CASES)
def test_voc_bad_boxes_name_the_file_and_object(tmp_path, objects, match):
    ds = voc_tree(tmp_path, objects)
    with pytest.raises(ValueError, match=match):
        ds[0]


@pytest.mark.parametrize("xml", [
    "<annotation><filename>im.jpg</filename><object><name>dog</name>",   # truncated
    "not xml at all",
    "",
])
def test_voc_malformed_xml_names_the_file(tmp_path, xml):
    ds = voc_tree(tmp_path, xml=xml)
    with pytest.raises(ValueError, match=r"im\.xml: malformed annotation file"):
        ds[0]


def test_voc_bndbox_without_a_corner(tmp_path):
    xml = VOC_XML.format(name="im", w=20, h=16, objects="<object><name>dog</name><bndbox><xmin>1</xmin>"
                                                         "<ymin>1</ymin><xmax>4</xmax></bndbox></object>")
    ds = voc_tree(tmp_path, xml=xml)
    with pytest.raises(ValueError, match="<bndbox> must have xmin, ymin, xmax, ymax"):
        ds[0]


def coco_tree(tmp_path, annotations=(), image_size=(20, 30), entry_size=None, text=None):
    (tmp_path / "img").mkdir()
    Image.new("RGB", image_size[::-1], (10, 20, 30)).save(tmp_path / "img" / "a.png")
    h, w = entry_size or image_size
    anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1.0,
             "segmentation": [[2, 3, 12, 3, 12, 10, 2, 10]], **a} for i, a in enumerate(annotations)]
    doc = {"images": [{"id": 1, "file_name": "a.png", "height": h, "width": w}], "annotations": anns,
           "categories": [{"id": 1, "name": "circle"}]}
    ann_file = tmp_path / "ann.json"
    ann_file.write_text(text if text is not None else json.dumps(doc))
    return tmp_path / "img", ann_file


def test_a_good_coco_box_loads_and_is_clipped_within_a_pixel(tmp_path):
    ds = coco_detection(*coco_tree(tmp_path, [dict(bbox=[2, 3, 10, 7]), dict(bbox=[-0.4, 0, 30.6, 20.3])]))
    assert ds[0][1]["boxes"].tolist() == [[2.0, 3.0, 12.0, 10.0], [0.0, 0.0, 30.0, 20.0]]


COCO_CASES = [  # (annotations, message)
    ([dict(bbox=[2, 3, 10, 7, 1])], r"ann.json: annotation 1 of image 1: 'bbox' must be 4 numbers"),
    ([dict(bbox=[2, 3, 10])], "'bbox' must be 4 numbers"),
    ([dict(bbox="2 3 10 7")], "'bbox' must be 4 numbers"),
    ([dict(bbox=[2, 3, 10, None])], "'bbox' must be 4 finite numbers"),
    ([dict(bbox=[2, 3, 1e400, 7])], "'bbox' must be 4 finite numbers"),
    ([dict(bbox=[2, 3, -10, 7])], "width and height must be >= 0"),
    ([dict(bbox=[25, 3, 10, 7])], "outside the 30 x 20 image"),
    ([dict(bbox=[2, -5, 10, 7])], "outside the 30 x 20 image"),
    ([dict(bbox=[2, 3, 10, 7]), dict(bbox=[2, 3, 10, 70])], r"annotation 2 of image 1: 'bbox' \[2, 3, 10, 70\] lies"),
    ([dict(bbox=[2, 3, 10, 7], category_id="cat")], "'category_id' must be an int"),
]


@pytest.mark.parametrize("annotations, match", COCO_CASES)
def test_coco_bad_boxes_name_the_file_and_annotation(tmp_path, annotations, match):
    ds = coco_detection(*coco_tree(tmp_path, annotations))
    with pytest.raises(ValueError, match=match):
        ds[0]


def test_coco_entry_size_must_match_the_image(tmp_path):
    ds = coco_detection(*coco_tree(tmp_path, [dict(bbox=[2, 3, 10, 7])], entry_size=(40, 30)), with_masks=True)
    with pytest.raises(ValueError, match=r"ann.json: image 1 \(a.png\) is 20 x 30 pixels but its entry says height 40"):
        ds[0]


@pytest.mark.parametrize("text, match", [
    ('{"images": [', "is not valid JSON"),
    ("", "is not valid JSON"),
    ("[1, 2, 3]", "is not a COCO annotation file"),
    ('{"annotations": [{"id": 1}]}', "is not a COCO annotation file"),
])
def test_coco_malformed_json_names_the_file(tmp_path, text, match):
    with pytest.raises(ValueError, match=rf"ann_file '.*ann.json' {match}"):
        coco_detection(*coco_tree(tmp_path, text=text))


def test_16_bit_images_are_scaled_by_their_range(tmp_path):
    array = np.array([[0, 1000], [32768, 65535]], dtype=np.uint16)
    Image.fromarray(array).save(tmp_path / "a.png")
    image = Image.open(tmp_path / "a.png")
    assert image.mode.startswith("I")
    t = image_to_tensor(image)
    assert t.shape == (3, 2, 2)
    assert torch.allclose(t[0], torch.tensor([[0.0, 1000 / 65535], [32768 / 65535, 1.0]]))
    assert torch.equal(t[0], t[2])


def test_32_bit_integer_images_outside_16_bits_are_an_error():
    image = Image.fromarray(np.array([[0, 100000]], dtype=np.int32), mode="I")
    with pytest.raises(ValueError, match=r"a.tif: a I image must hold 0..65535"):
        image_to_tensor(image, "a.tif")


def test_float_images_are_scaled_by_their_range():
    inside = Image.fromarray(np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32), mode="F")
    assert torch.allclose(image_to_tensor(inside)[1], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    outside = Image.fromarray(np.array([[10.0, 20.0], [30.0, 50.0]], dtype=np.float32), mode="F")
    assert torch.allclose(image_to_tensor(outside)[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    bad = Image.fromarray(np.array([[0.0, np.nan]], dtype=np.float32), mode="F")
    with pytest.raises(ValueError, match="x.tif: a float image must have finite pixels"):
        image_to_tensor(bad, "x.tif")


def test_8_bit_images_are_unchanged():
    rgb = Image.fromarray(np.array([[[0, 128, 255]]], dtype=np.uint8))
    assert image_to_tensor(rgb)[:, 0, 0].tolist() == pytest.approx([0.0, 128 / 255, 1.0])
    grey = Image.fromarray(np.array([[51]], dtype=np.uint8))
    assert image_to_tensor(grey)[:, 0, 0].tolist() == pytest.approx([0.2, 0.2, 0.2])


SHAPES_CASES = [
    (lambda: make_scene(-1), ValueError, "index must be >= 0"),
    (lambda: make_scene(True), TypeError, "index must be an int"),
    (lambda: make_scene(0, split="training"), ValueError, "split must be one of"),
    (lambda: make_scene(0, size=8), ValueError, "size must be >="),
    (lambda: make_scene(0, min_objects=3, max_objects=2), ValueError, "min_objects <= max_objects"),
    (lambda: make_scene(0, seed=-1), ValueError, "seed must be >= 0"),
    (lambda: make_scene(0, size=64.0), TypeError, "size must be an int"),
    (lambda: ShapesDataset(length=-1), ValueError, "length must be >= 0"),
    (lambda: ShapesDataset(length=True), TypeError, "length must be an int"),
    (lambda: ShapesDataset(view="boxes"), ValueError, "view must be one of"),
    (lambda: ShapesDataset(object_size=(2, 100)), ValueError, "object_size must satisfy"),
    (lambda: ShapesDataset(object_size="big"), TypeError, "object_size must be a pair"),
    (lambda: ShapesDataset(length=2)[2], IndexError, "index 2 out of range"),
    (lambda: detection_collate([]), ValueError, "empty batch"),
]


@pytest.mark.parametrize("call, error, match", SHAPES_CASES)
def test_shapes_reject_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
