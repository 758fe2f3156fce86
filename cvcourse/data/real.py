"""Real data in the shapes scenes' target format: Pascal VOC and COCO-format datasets.

Thin wrappers around ``torchvision.datasets`` that return tensors the rest of the package
uses: images float32 (3, H, W) in [0, 1]; boxes float32 (N, 4) xyxy in the pixel-edge
convention (x1 = left edge of the first pixel, x2 = right edge of the last one); labels
int64; masks bool (N, H, W); semantic masks int64 (H, W). Nothing is ever downloaded: the
data must already be on disk, and a missing directory or file raises FileNotFoundError
that names the argument and the layout that was expected.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# torchvision.datasets is imported inside the functions: importing it costs seconds
# (it pulls in torch._dynamo), and every chapter imports cvcourse.data.

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)
VOC_IGNORE_INDEX = 255  # VOC's "void" label: object boundaries and unlabelled pixels


_INT_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535}  # mode -> full scale


def image_to_tensor(image: Image.Image, name: str = "image") -> torch.Tensor:
    """A PIL image as float32 (3, H, W) in [0, 1], each pixel type scaled by its own range.

    8-bit images (L, P, RGB, RGBA, ...) are divided by 255 and 16-bit ones (mode I;16, as
    16-bit PNGs open) by 65535, so value 1000 of a 16-bit image becomes 0.015, not white. A
    32-bit integer image (mode I) is taken as 16-bit when its values fit in 0..65535. A float
    image (mode F) already in [0, 1] is kept; otherwise it is rescaled by its minimum and
    maximum. Grey images are repeated over the three channels.

    Args:
        image: the PIL image.
        name: how to name the image in errors (e.g. its file name).

    Raises:
        ValueError: a float image with NaN/inf pixels, or an integer image outside 0..65535.
    """
    if image.mode in _INT_MODES or image.mode in ("I", "F"):
        array = np.asarray(image, dtype=np.float64)               # (H, W) one channel
        if image.mode == "F":
            if not np.isfinite(array).all():
                raise ValueError(f"{name}: a float image must have finite pixels, got NaN or inf")
            low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
            if low < 0 or high > 1:
                array = (array - low) / (high - low) if high > low else np.zeros_like(array)
        else:
            if array.size and (array.min() < 0 or array.max() > 65535):
                raise ValueError(f"{name}: a {image.mode} image must hold 0..65535 (16-bit), got "
                                 f"values in [{array.min():.0f}, {array.max():.0f}]")
            array = array / 65535
        grey = torch.from_numpy(array.astype(np.float32))         # (H, W)
        return grey[None].expand(3, -1, -1).contiguous()           # (3, H, W)
    array = np.array(image.convert("RGB"), dtype=np.uint8)        # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255)


class _NameFileErrors(torch.utils.data.Dataset):
    """Wrap a dataset so that a malformed annotation file raises a ValueError naming it."""

    def __init__(self, dataset, files, errors):
        self.dataset, self.files, self.errors = dataset, files, errors

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name):  # the wrapped dataset's attributes (images, annotations, ...)
        if name in ("dataset", "files", "errors"):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except self.errors as e:
            raise ValueError(f"{self.files[index]}: malformed annotation file ({e})") from None


class _Then:
    """Apply `(image, target)` functions in order, skipping None (picklable for workers)."""

    def __init__(self, *fns):
        self.fns = [f for f in fns if f is not None]

    def __call__(self, image, target):
        for f in self.fns:
            image, target = f(image, target)
        return image, target


class ResizeTo:
    """Resize an ``(image, target)`` pair to ``size x size`` (a transform for the loaders).

    The image is resized bilinearly (antialiased); boxes are scaled with it; instance masks
    and semantic maps are resized with nearest neighbours, so labels stay labels (and VOC's
    255 stays "ignore"). Real photos are not square: the aspect ratio is not kept.
    """

    def __init__(self, size: int):
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.size = size

    def __call__(self, image: torch.Tensor, target):
        s = self.size
        h, w = image.shape[-2:]
        image = F.interpolate(image[None], size=(s, s), mode="bilinear", align_corners=False,
                              antialias=True)[0].clamp_(0, 1)                    # (3, s, s)
        if torch.is_tensor(target):  # a semantic map (H, W)
            return image, F.interpolate(target[None, None].float(), size=(s, s), mode="nearest")[0, 0].long()
        target = dict(target)
        target["boxes"] = target["boxes"] * torch.tensor([s / w, s / h, s / w, s / h])  # (N, 4)
        if "masks" in target:
            masks = target["masks"][:, None].float()                              # (N, 1, H, W)
            target["masks"] = F.interpolate(masks, size=(s, s), mode="nearest")[:, 0].bool()
        return image, target


# ------------------------------------------------------------------------------------ VOC
def _voc_root(root, year: str, image_set: str, splits_dir: str) -> None:
    """Check that a VOC tree and its split file exist before torchvision reads them."""
    from torchvision.datasets.voc import DATASET_YEAR_DICT

    key = "2007-test" if (year, image_set) == ("2007", "test") else year
    if key not in DATASET_YEAR_DICT:
        raise ValueError(f"year must be one of '2007'..'2012', got {year!r}")
    voc_root = os.path.join(root, DATASET_YEAR_DICT[key]["base_dir"])
    if not os.path.isdir(voc_root):
        raise FileNotFoundError(
            f"root: no VOC{year} dataset at {voc_root!r}; expected root/{DATASET_YEAR_DICT[key]['base_dir']}"
            "/ with JPEGImages, Annotations, SegmentationClass and ImageSets (nothing is downloaded)"
        )
    split_file = os.path.join(voc_root, "ImageSets", splits_dir, f"{image_set}.txt")
    if not os.path.isfile(split_file):
        raise FileNotFoundError(f"image_set: no split file {split_file!r} for image_set={image_set!r}")


def _voc_segmentation_to_tensors(image, target):
    semantic = np.array(target)  # palette indices: 0..20 classes, 255 ignore
    if semantic.ndim != 2:
        raise ValueError(f"VOC segmentation masks must be palette (P) PNGs, got mode {target.mode!r}")
    if semantic.shape != (image.height, image.width):
        raise ValueError(f"VOC segmentation mask {getattr(target, 'filename', '')!r} is "
                         f"{semantic.shape[0]} x {semantic.shape[1]} but its image is "
                         f"{image.height} x {image.width}")
    return image_to_tensor(image, getattr(image, "filename", "image")), torch.from_numpy(semantic.astype(np.int64))


def _voc_detection_to_tensors(image, target, keep_difficult: bool):
    def is_difficult(obj):
        return obj.get("difficult", "0").strip() == "1"

    annotation = target.get("annotation") if isinstance(target, dict) else None
    if not isinstance(annotation, dict):
        raise ValueError(f"VOC annotation without an <annotation> root: {target!r:.200}")
    file = annotation.get("filename", "?")
    objects = annotation.get("object", [])
    objects = [o for o in objects if keep_difficult or not is_difficult(o)]
    difficult = [is_difficult(o) for o in objects]
    unknown = {o.get("name") for o in objects} - set(VOC_CLASSES[1:])
    if unknown:
        raise ValueError(f"{file}: unknown VOC class names {sorted(map(str, unknown))}; "
                         f"expected names from VOC_CLASSES")
    width, height = image.size
    corners = []
    for j, o in enumerate(objects):
        where = f"{file}, object {j} ({o.get('name')})"
        box = o.get("bndbox")
        if not isinstance(box, dict) or any(k not in box for k in ("xmin", "ymin", "xmax", "ymax")):
            raise ValueError(f"{where}: <bndbox> must have xmin, ymin, xmax, ymax, got {box!r}")
        try:
            x1, y1, x2, y2 = (float(box[k]) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError):
            raise ValueError(f"{where}: <bndbox> coordinates must be numbers, got {box!r}") from None
        if not all(np.isfinite((x1, y1, x2, y2))):
            raise ValueError(f"{where}: <bndbox> coordinates must be finite, got {box!r}")
        if x2 < x1 or y2 < y1:
            raise ValueError(f"{where}: <bndbox> must have xmax >= xmin and ymax >= ymin, got {box!r}")
        if x1 < 1 or y1 < 1 or x2 > width or y2 > height:  # 1-based, inclusive
            raise ValueError(f"{where}: <bndbox> {box!r} lies outside the {width} x {height} image "
                             f"(VOC corners run from 1 to the width / height)")
        corners.append([x1, y1, x2, y2])
    boxes = torch.tensor(corners, dtype=torch.float32).reshape(-1, 4)  # (N, 4)
    boxes[:, :2] -= 1  # VOC corners are 1-based pixel indices, inclusive: -> pixel edges
    return image_to_tensor(image, file), {
        "boxes": boxes,
        "labels": torch.tensor([VOC_CLASSES.index(o["name"]) for o in objects], dtype=torch.int64),
        "difficult": torch.tensor(difficult, dtype=torch.bool),
    }


def voc_segmentation(root, year: str = "2012", image_set: str = "train", transforms=None):
    """Pascal VOC semantic segmentation.

    Args:
        root: directory that holds ``VOCdevkit/VOC<year>/``.
        year: "2007".."2012".
        image_set: "train", "val", "trainval" (and "test" for 2007).
        transforms: optional ``(image, semantic) -> (image, semantic)`` applied after
            the conversion to tensors.
    Returns:
        a Dataset of ``(image float32 (3, H, W) in [0, 1], semantic int64 (H, W))`` with
        classes indexing ``VOC_CLASSES`` and 255 (``VOC_IGNORE_INDEX``) on boundaries.
    """
    year = str(year)
    _voc_root(root, year, image_set, "Segmentation")
    from torchvision.datasets import VOCSegmentation

    return VOCSegmentation(root, year, image_set, download=False,
                           transforms=_Then(_voc_segmentation_to_tensors, transforms))


def voc_detection(root, year: str = "2012", image_set: str = "train", keep_difficult: bool = False,
                  transforms=None):
    """Pascal VOC object detection.

    Args:
        root: directory that holds ``VOCdevkit/VOC<year>/``.
        year, image_set: as in :func:`voc_segmentation`.
        keep_difficult: keep objects marked ``<difficult>1</difficult>``.
        transforms: optional ``(image, target) -> (image, target)`` applied last.
    Returns:
        a Dataset of ``(image float32 (3, H, W), target)`` with target
        ``{"boxes": float32 (N, 4) xyxy, "labels": int64 (N,) in 1..20,
        "difficult": bool (N,)}``. VOC stores 1-based inclusive pixel indices, so
        boxes are (xmin - 1, ymin - 1, xmax, ymax): the pixel-edge convention. A box that is
        not ordered, finite and inside the image, or a malformed XML file, raises a
        ValueError naming the file (and the object).
    """
    year = str(year)
    _voc_root(root, year, image_set, "Main")
    convert = partial(_voc_detection_to_tensors, keep_difficult=keep_difficult)
    from xml.etree.ElementTree import ParseError

    from torchvision.datasets import VOCDetection

    dataset = VOCDetection(root, year, image_set, download=False, transforms=_Then(convert, transforms))
    return _NameFileErrors(dataset, dataset.annotations, (ParseError,))


# ----------------------------------------------------------------------------------- COCO
class CocoTensors(torch.utils.data.Dataset):
    """A COCO-format detection dataset returning tensors; see :func:`coco_detection`."""

    def __init__(self, root, ann_file, with_masks: bool = False, transforms=None):
        import json

        from torchvision.datasets import CocoDetection

        self.ann_file = os.fspath(ann_file)
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
                base = CocoDetection(root, ann_file)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"ann_file {self.ann_file!r} is not valid JSON: {e}") from None
        except (KeyError, TypeError, AttributeError, AssertionError) as e:
            raise ValueError(f"ann_file {self.ann_file!r} is not a COCO annotation file (a JSON object "
                             f"with 'images', 'annotations' and 'categories' lists): {e!r}") from None
        self.root, self.coco, self.ids = base.root, base.coco, base.ids
        self.with_masks = with_masks
        self.user_transforms = transforms

    def __len__(self) -> int:
        return len(self.ids)

    def _check_annotation(self, a, where: str, width: int, height: int) -> None:
        """Raise a ValueError naming `where` unless `a` has a valid bbox and category."""
        bbox = a.get("bbox")
        if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
            raise ValueError(f"{where}: 'bbox' must be 4 numbers [x, y, width, height], got {bbox!r}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) for v in bbox):
            raise ValueError(f"{where}: 'bbox' must be 4 finite numbers, got {bbox!r}")
        x, y, w, h = bbox
        if w < 0 or h < 0:
            raise ValueError(f"{where}: 'bbox' width and height must be >= 0, got {bbox!r}")
        tol = 1.0  # COCO's own files round a few boxes a fraction of a pixel past the edge
        if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
            raise ValueError(f"{where}: 'bbox' {bbox!r} lies outside the {width} x {height} image")
        label = a.get("category_id")
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise ValueError(f"{where}: 'category_id' must be an int >= 0, got {label!r}")

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        info = self.coco.loadImgs(image_id)[0]
        file = os.path.join(self.root, info["file_name"])
        image = image_to_tensor(Image.open(file), file)
        height, width = image.shape[1:]
        if (info.get("height"), info.get("width")) != (height, width):
            raise ValueError(f"{self.ann_file}: image {image_id} ({info['file_name']}) is {height} x {width} "
                             f"pixels but its entry says height {info.get('height')!r}, width "
                             f"{info.get('width')!r}; masks and boxes would not fit the image")
        anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id)) if not a.get("iscrowd", 0)]
        for a in anns:
            self._check_annotation(a, f"{self.ann_file}: annotation {a.get('id', '?')} of image {image_id}",
                                   width, height)
        anns = [a for a in anns if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)  # within the tolerance above: onto the edge
        boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
        target = {
            "boxes": boxes,  # (N, 4)
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "image_id": int(image_id),
        }
        if self.with_masks:
            h, w = height, width
            with warnings.catch_warnings():  # pycocotools' numpy-2 "__array__ copy" notice
                warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
                masks = np.stack([self.coco.annToMask(a) for a in anns]) if anns else np.zeros((0, h, w))
            target["masks"] = torch.from_numpy(masks.astype(bool))  # (N, H, W)
        if self.user_transforms is not None:
            image, target = self.user_transforms(image, target)
        return image, target


def coco_detection(root, ann_file, with_masks: bool = False, transforms=None) -> CocoTensors:
    """A COCO-format detection (and instance segmentation) dataset.

    Args:
        root: directory with the images named by ``file_name`` in the annotation file.
        ann_file: path to the COCO json.
        with_masks: also decode each instance mask with pycocotools (polygons or RLE).
        transforms: optional ``(image, target) -> (image, target)`` applied last.
    Returns:
        a Dataset of ``(image float32 (3, H, W), target)`` with target
        ``{"boxes": float32 (N, 4) xyxy, "labels": int64 (N,) COCO category ids,
        "image_id": int}`` plus ``"masks": bool (N, H, W)`` when ``with_masks``.
        Crowd annotations (``iscrowd=1``) and boxes with zero width or height are dropped.

    Raises:
        ValueError: the JSON is malformed (naming the file); on reading an image, its size
            differs from its entry, or a bbox is not 4 finite numbers inside the image (a
            pixel of slack, then clipped), naming the file and the annotation.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"root: image directory {os.fspath(root)!r} does not exist")
    if not os.path.isfile(ann_file):
        raise FileNotFoundError(f"ann_file: COCO annotation file {os.fspath(ann_file)!r} does not exist")
    return CocoTensors(root, ann_file, with_masks=with_masks, transforms=transforms)
