"""Data for the course: procedural shapes scenes (the default) and real-data loaders."""
from .real import VOC_CLASSES, coco_detection, voc_detection, voc_segmentation
from .shapes import (
    CLASSES,
    NUM_CLASSES,
    SPLITS,
    ShapesDataset,
    detection_collate,
    make_scene,
    masks_to_boxes_xyxy,
    object_size_range,
)

__all__ = [
    "CLASSES", "NUM_CLASSES", "SPLITS", "make_scene", "ShapesDataset", "detection_collate",
    "masks_to_boxes_xyxy", "object_size_range",
    "VOC_CLASSES", "voc_segmentation", "voc_detection", "coco_detection",
]
