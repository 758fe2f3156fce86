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


def image_to_tensor(image: Image.Image) -> torch.Tensor:
    """A PIL image as float32 (3, H, W) in [0, 1]."""
    array = np.array(image.convert("RGB"), dtype=np.uint8)        # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(255)


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
    return image_to_tensor(image), torch.from_numpy(semantic.astype(np.int64))


def _voc_detection_to_tensors(image, target, keep_difficult: bool):
    def is_difficult(obj):
        return obj.get("difficult", "0").strip() == "1"

    objects = [o for o in target["annotation"].get("object", []) if keep_difficult or not is_difficult(o)]
    difficult = [is_difficult(o) for o in objects]
    unknown = {o["name"] for o in objects} - set(VOC_CLASSES[1:])
    if unknown:
        raise ValueError(f"unknown VOC class names {sorted(unknown)}; expected names from VOC_CLASSES")
    corners = [[float(o["bndbox"][k]) for k in ("xmin", "ymin", "xmax", "ymax")] for o in objects]
    boxes = torch.tensor(corners, dtype=torch.float32).reshape(-1, 4)  # (N, 4)
    boxes[:, :2] -= 1  # VOC corners are 1-based pixel indices, inclusive: -> pixel edges
    return image_to_tensor(image), {
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
        boxes are (xmin - 1, ymin - 1, xmax, ymax): the pixel-edge convention.
    """
    year = str(year)
    _voc_root(root, year, image_set, "Main")
    convert = partial(_voc_detection_to_tensors, keep_difficult=keep_difficult)
    from torchvision.datasets import VOCDetection

    return VOCDetection(root, year, image_set, download=False, transforms=_Then(convert, transforms))


# ----------------------------------------------------------------------------------- COCO
class CocoTensors(torch.utils.data.Dataset):
    """A COCO-format detection dataset returning tensors; see :func:`coco_detection`."""

    def __init__(self, root, ann_file, with_masks: bool = False, transforms=None):
        from torchvision.datasets import CocoDetection

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            base = CocoDetection(root, ann_file)
        self.root, self.coco, self.ids = base.root, base.coco, base.ids
        self.with_masks = with_masks
        self.user_transforms = transforms

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        info = self.coco.loadImgs(image_id)[0]
        image = image_to_tensor(Image.open(os.path.join(self.root, info["file_name"])))
        anns = [a for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=image_id))
                if not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
        target = {
            "boxes": boxes,  # (N, 4)
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "image_id": int(image_id),
        }
        if self.with_masks:
            h, w = info["height"], info["width"]
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
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"root: image directory {os.fspath(root)!r} does not exist")
    if not os.path.isfile(ann_file):
        raise FileNotFoundError(f"ann_file: COCO annotation file {os.fspath(ann_file)!r} does not exist")
    return CocoTensors(root, ann_file, with_masks=with_masks, transforms=transforms)
