"""Evaluation metrics: semantic segmentation scores and COCO-style mean average precision.

``segmentation``: confusion matrix, pixel accuracy, per-class IoU, mIoU, boundary F1.
``detection``: `mean_average_precision`, equal to pycocotools' COCOeval (bbox and segm).
``ap``: the same AP step by step (`match_detections`, `precision_recall`,
`average_precision` with VOC2007, VOC2010+ or COCO interpolation).
"""
from .ap import AP_METHODS, average_precision, average_precision_per_class, match_detections, precision_recall
from .detection import mean_average_precision
from .segmentation import boundary_f1, confusion_matrix, mean_iou, per_class_iou, pixel_accuracy, segmentation_scores

__all__ = [
    "confusion_matrix", "pixel_accuracy", "per_class_iou", "mean_iou", "boundary_f1",
    "segmentation_scores", "mean_average_precision", "AP_METHODS", "match_detections",
    "precision_recall", "average_precision", "average_precision_per_class",
]
