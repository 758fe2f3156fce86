"""The course's recipes on real data: ``python -m cvcourse.train NAME --data voc:ROOT``.

A recipe trains on shapes scenes; `real_data` swaps in Pascal VOC or a COCO-format dataset
(`cvcourse.data.real`), resized to the recipe's image size, and gives the number of classes
the model must then predict. Detection recipes whose loss is `detection_loss` (Faster R-CNN
and its torchvision peer, YOLO, SSD, RetinaNet) take VOC or COCO detection; segmentation
recipes whose loss is `pixel_loss` (FCN, U-Net) take VOC segmentation.

Spec strings:

- ``voc:ROOT`` or ``voc:ROOT,YEAR,IMAGE_SET`` (defaults 2012, train): ROOT holds ``VOCdevkit/``;
- ``coco:IMAGES,ANNOTATIONS``: the image folder and the COCO json.
"""

from __future__ import annotations

from torch.utils.data import Dataset

from ..data.real import VOC_CLASSES, ResizeTo, coco_detection, voc_detection, voc_segmentation
from ..data.scenes import DETECTION_SIZE
from . import Recipe
from .detection import detection_loss
from .segmentation import SIZE as SEGMENTATION_SIZE
from .segmentation import pixel_loss


def task_of(recipe: Recipe) -> str:
    """'detection' or 'segmentation': which real datasets the recipe can train on."""
    if recipe.loss is detection_loss:
        return "detection"
    if recipe.loss is pixel_loss:
        return "segmentation"
    raise ValueError(f"--data: recipe {recipe.name!r} trains on shapes scenes only; real data plugs "
                     "into detection recipes with detection_loss (faster_rcnn, yolo, ssd, retinanet, ...) "
                     "and segmentation recipes with pixel_loss (fcn, unet, ...)")


def real_data(recipe: Recipe, spec: str) -> tuple[Dataset, dict]:
    """The training set named by `spec` for `recipe`, and the config changes it needs.

    Args:
        recipe: the recipe to train (its loss decides detection or segmentation).
        spec: ``"voc:ROOT[,YEAR,IMAGE_SET]"`` or ``"coco:IMAGES,ANNOTATIONS"``.

    Returns:
        the Dataset (images resized to the recipe's size) and ``{"num_classes": K}``: object
        classes for detectors (labels 1..K), classes with background for segmenters.
    """
    task = task_of(recipe)
    kind, _, rest = spec.partition(":")
    parts = [p for p in rest.split(",") if p]
    if kind == "voc" and 1 <= len(parts) <= 3:
        root, year, image_set = (parts + ["2012", "train"][len(parts) - 1:])[:3]
        if task == "detection":
            ds = voc_detection(root, year, image_set, transforms=ResizeTo(DETECTION_SIZE))
            return ds, {"num_classes": len(VOC_CLASSES) - 1}
        ds = voc_segmentation(root, year, image_set, transforms=ResizeTo(SEGMENTATION_SIZE))
        return ds, {"num_classes": len(VOC_CLASSES)}
    if kind == "coco" and len(parts) == 2:
        if task != "detection":
            raise ValueError(f"--data: COCO plugs into detection recipes; {recipe.name!r} is a {task} recipe")
        ds = coco_detection(parts[0], parts[1], transforms=ResizeTo(DETECTION_SIZE))
        return ds, {"num_classes": max(ds.coco.getCatIds())}  # labels are COCO's category ids
    raise ValueError(f"--data must be 'voc:ROOT', 'voc:ROOT,YEAR,IMAGE_SET' or 'coco:IMAGES,ANNOTATIONS', "
                     f"got {spec!r}")
