"""YOLO (Redmon et al., 2016): detection as one regression over an S x S grid.

The image is divided into an S x S grid (16 x 16 cells of 8 px on a 128 x 128 image). The
cell that contains an object's **centre** is *responsible* for it. Every cell predicts, in
one pass of one network:

* ``B`` boxes, each as ``(x, y, sqrt w, sqrt h)`` plus a confidence (objectness) logit:
  ``x, y`` = sigmoid offsets of the centre inside the cell, ``sqrt w, sqrt h`` = square roots
  of the size as a fraction of the image (YOLO v1's square roots make an error of a few
  pixels cost more on a small box than on a large one);
* one set of ``C`` class scores for the cell (not per box).

The loss is YOLO v1's, in a documented modern variant (the same terms, weights and
"responsible predictor" rule; sigmoid/softmax outputs with BCE and cross-entropy in place
of v1's squared errors on probabilities, and confidence biases that start at
``p = prior`` = 0.01 as in RetinaNet and YOLO v5, which train faster from scratch):

* ``loss_box_reg``: ``lambda_coord * sum [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2
  + (sqrt h - sqrt h^)^2]`` over responsible predictors (of the B boxes in the responsible
  cell, the one whose prediction has the highest IoU with the object);
* ``loss_objectness``: BCE of the responsible predictors' confidences with target 1
  (``confidence_target="one"``, the default), or with target the IoU of the predictor's box
  with the true box (``"iou"``, YOLO v1's target: "Pr(Object) x IOU"; the IoU is detached,
  a target, not a path for gradients into the box);
* ``loss_no_object``: ``lambda_noobj`` x BCE of every other predictor's confidence with 0;
* ``loss_classifier``: cross-entropy of the responsible cells' class scores;

each summed over the batch and divided by its number of images. A cell can hold one object
only: when two centres fall into the same cell the larger object wins and the other is
not learned (the grid's known limit, measured in the chapter). Detections score each box
``sigmoid(confidence) x softmax(class)`` for every class, then per-class NMS.

Interface: torchvision's detection interface (``model(images, targets)`` -> loss dict in
training, ``model(images)`` -> per image ``{"boxes", "scores", "labels"}`` in eval, labels
1..C).

Taught in book/ss_yolo.ipynb.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.boxes import batched_nms, check_boxes, clip_boxes_to_image, paired_iou, remove_small_boxes
from .backbone import conv_backbone, conv_bn_relu
from .checks import check_detection_inputs, targets_to

__all__ = ["YOLO", "GridPredictions", "assign_cells", "responsible_cells", "responsible_predictors"]


def responsible_cells(boxes: Tensor, grid_size: int, image_size: int) -> Tensor:
    """The grid cell that contains each box's centre.

    Args:
        boxes (Tensor[N, 4]): xyxy boxes in pixels.
        grid_size (int): S, the grid has S x S cells.
        image_size (int): side of the (square) image in pixels; a cell is image_size / S wide.

    Returns:
        Tensor[N, 2]: int64 ``(row, col)`` of each box's cell, in [0, S).
    """
    check_boxes(boxes, "boxes")
    if grid_size < 1 or image_size < grid_size:
        raise ValueError(f"need 1 <= grid_size <= image_size, got {grid_size} and {image_size}")
    cell = image_size / grid_size
    cx = (boxes[:, 0] + boxes[:, 2]) / 2                         # (N,)
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    rows = (cy / cell).floor().long().clamp(0, grid_size - 1)     # a centre on the far edge
    cols = (cx / cell).floor().long().clamp(0, grid_size - 1)     # belongs to the last cell
    return torch.stack([rows, cols], dim=1)


def assign_cells(boxes: Tensor, grid_size: int, image_size: int) -> Tensor:
    """Indices of the objects the grid can learn: at most one per cell, the largest wins.

    Returns:
        Tensor[K]: int64 indices into `boxes` (K <= N), one per occupied cell.
    """
    rc = responsible_cells(boxes, grid_size, image_size)          # (N, 2)
    cell = rc[:, 0] * grid_size + rc[:, 1]                        # (N,) flat cell index
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.argsort(area, descending=True, stable=True)     # largest first
    same = cell[order][:, None] == cell[order][None, :]           # (N, N)
    beaten = same.tril(diagonal=-1).any(dim=1)                    # a larger object has the cell
    return order[~beaten]


def responsible_predictors(cell_boxes: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Of the B boxes predicted by each object's responsible cell, the one that overlaps it best.

    Args:
        cell_boxes (Tensor[K, B, 4]): the B predicted xyxy boxes of each object's cell.
        boxes (Tensor[K, 4]): the objects' xyxy boxes.

    Returns:
        (Tensor[K] int64, Tensor[K]): the responsible predictor b in [0, B) and its IoU with
        the object (detached: a choice and a target, not a path for gradients).
    """
    ious = paired_iou(cell_boxes.detach(), boxes[:, None])       # (K, B)
    b = ious.argmax(dim=1)                                        # ties: the first predictor
    return b, ious[torch.arange(len(b), device=b.device), b]


class GridPredictions(NamedTuple):
    """The raw output of the grid, decoded: S x S cells, B boxes per cell, C classes."""
    xy: Tensor             # (N, S, S, B, 2) centre offsets inside the cell, in [0, 1]
    sqrt_wh: Tensor        # (N, S, S, B, 2) sqrt of width, height / image side
    confidence: Tensor     # (N, S, S, B) objectness logits
    class_logits: Tensor   # (N, S, S, C)
    boxes: Tensor          # (N, S, S, B, 4) xyxy boxes in pixels


class YOLO(nn.Module):
    """A YOLO v1-style detector on a small conv backbone.

    Args:
        num_classes: object classes C (background is not a class; labels are 1..C).
        width: backbone width (features have 4 * width channels).
        stride: pixels per cell, 8 (16 x 16 grid on 128 x 128) or 16 (8 x 8).
        boxes_per_cell: B.
        lambda_coord: YOLO v1's weight of the box loss (5).
        lambda_noobj: YOLO v1's weight of the confidence loss of cells without objects (0.5).
        prior: starting confidence of every predictor (its bias is log(prior / (1 - prior))).
        score_thresh: inference: drop scores at or below it.
        nms_thresh: inference: per-class NMS IoU threshold.
        detections_per_img: inference: most detections kept per image.
        neck_depth: 3x3 conv-BN-ReLU layers between the backbone and the head (the
            trade-offs chapter's depth sweep varies it).
        confidence_target: what a responsible predictor's confidence is trained towards:
            "one" (BCE to 1) or "iou" (BCE to the detached IoU of its box with the true box,
            YOLO v1's target).
    """

    CONFIDENCE_TARGETS = ("one", "iou")

    def __init__(self, num_classes: int = 3, width: int = 24, stride: int = 8,
                 boxes_per_cell: int = 2, lambda_coord: float = 5.0, lambda_noobj: float = 0.5,
                 prior: float = 0.01, score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_img: int = 100, neck_depth: int = 2,
                 confidence_target: str = "one"):
        super().__init__()
        if confidence_target not in self.CONFIDENCE_TARGETS:
            raise ValueError(f"confidence_target must be one of {self.CONFIDENCE_TARGETS}, "
                             f"got {confidence_target!r}")
        self.confidence_target = confidence_target
        if not isinstance(neck_depth, int) or neck_depth < 0:
            raise ValueError(f"neck_depth must be an int >= 0, got {neck_depth!r}")
        if boxes_per_cell < 1 or num_classes < 1:
            raise ValueError(f"boxes_per_cell and num_classes must be >= 1, got "
                             f"{boxes_per_cell} and {num_classes}")
        self.num_classes, self.stride, self.boxes_per_cell = num_classes, stride, boxes_per_cell
        self.lambda_coord, self.lambda_noobj = lambda_coord, lambda_noobj
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img = detections_per_img
        c = 4 * width
        self.backbone = conv_backbone(width, stride)                 # (N, c, H/s, W/s)
        # two more 3x3 convs (the default) widen the receptive field to ~80 px: a cell sees
        # whole objects
        self.neck = nn.Sequential(*(conv_bn_relu(c, c) for _ in range(neck_depth)))
        self.head = nn.Conv2d(c, boxes_per_cell * 5 + num_classes, 1)
        with torch.no_grad():                      # per box: x, y, sqrt w, sqrt h, confidence
            self.head.bias[4:5 * boxes_per_cell:5] = math.log(prior / (1 - prior))
            self.head.bias[2:5 * boxes_per_cell:5] = 0.4     # boxes start ~20 px wide and high
            self.head.bias[3:5 * boxes_per_cell:5] = 0.4

    # ------------------------------------------------------------------ the grid
    def grid(self, images: Tensor) -> GridPredictions:
        """Run the network and decode its output tensor into per-cell boxes and scores."""
        n, _, height, width = images.shape
        out = self.head(self.neck(self.backbone(images)))              # (N, 5B + C, S, S)
        out = out.permute(0, 2, 3, 1)                                  # (N, S, S, 5B + C)
        s_y, s_x, nb = out.shape[1], out.shape[2], self.boxes_per_cell
        per_box = out[..., :5 * nb].reshape(n, s_y, s_x, nb, 5)        # (N, S, S, B, 5)
        xy, sqrt_wh = per_box[..., :2].sigmoid(), per_box[..., 2:4]
        rows = torch.arange(s_y, device=out.device, dtype=out.dtype)
        cols = torch.arange(s_x, device=out.device, dtype=out.dtype)
        cx = (cols[None, None, :, None] + xy[..., 0]) * (width / s_x)  # (N, S, S, B) pixels
        cy = (rows[None, :, None, None] + xy[..., 1]) * (height / s_y)
        w = sqrt_wh[..., 0].clamp(min=0) ** 2 * width
        h = sqrt_wh[..., 1].clamp(min=0) ** 2 * height
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=-1)
        return GridPredictions(xy, sqrt_wh, per_box[..., 4], out[..., 5 * nb:], boxes)

    # ------------------------------------------------------------------ training
    def compute_loss(self, pred: GridPredictions, targets: list[dict[str, Tensor]],
                     image_size: int) -> dict[str, Tensor]:
        """YOLO's four loss terms for a batch (see the module docstring)."""
        n, s = pred.confidence.shape[:2]
        coord, cls = [], []
        responsible = torch.zeros_like(pred.confidence, dtype=torch.bool)  # (N, S, S, B)
        target = torch.zeros_like(pred.confidence)                         # (N, S, S, B)
        for i, t in enumerate(targets):                    # a loop over the images of the batch
            boxes, labels = t["boxes"], t["labels"]
            if len(boxes) == 0:
                continue                                   # every predictor is "no object"
            keep = assign_cells(boxes, s, image_size)      # one object per cell
            boxes, labels = boxes[keep], labels[keep]
            r, c = responsible_cells(boxes, s, image_size).unbind(1)     # (K,), (K,)
            b, iou = responsible_predictors(pred.boxes[i, r, c], boxes)    # (K,), (K,)
            responsible[i, r, c, b] = True
            target[i, r, c, b] = iou if self.confidence_target == "iou" else 1.0
            cell = image_size / s
            xy_t = torch.stack([(boxes[:, 0] + boxes[:, 2]) / 2 / cell - c,
                                (boxes[:, 1] + boxes[:, 3]) / 2 / cell - r], dim=1)   # (K, 2)
            wh_t = ((boxes[:, 2:] - boxes[:, :2]) / image_size).sqrt()                  # (K, 2)
            coord.append(((pred.xy[i, r, c, b] - xy_t) ** 2).sum()
                         + ((pred.sqrt_wh[i, r, c, b] - wh_t) ** 2).sum())
            cls.append(F.cross_entropy(pred.class_logits[i, r, c], labels - 1, reduction="sum"))
        zero = pred.confidence.sum() * 0                   # keeps the graph when there is no object
        bce = F.binary_cross_entropy_with_logits(pred.confidence, target,
                                                 reduction="none")          # (N, S, S, B)
        return {
            "loss_box_reg": self.lambda_coord * (sum(coord) + zero) / n,
            "loss_objectness": bce[responsible].sum() / n,
            "loss_no_object": self.lambda_noobj * bce[~responsible].sum() / n,
            "loss_classifier": (sum(cls) + zero) / n,
        }

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def postprocess(self, pred: GridPredictions, image_size) -> list[dict[str, Tensor]]:
        """Score every (box, class) as confidence x class probability, threshold, NMS."""
        n = pred.boxes.shape[0]
        conf = pred.confidence.sigmoid().reshape(n, -1, self.boxes_per_cell)   # (N, S*S, B)
        probs = pred.class_logits.softmax(-1).reshape(n, -1, 1, self.num_classes)
        scores = (conf[..., None] * probs).reshape(n, -1)       # (N, S*S*B*C)
        boxes = pred.boxes.reshape(n, -1, 1, 4).expand(-1, -1, self.num_classes, -1)
        boxes = clip_boxes_to_image(boxes.reshape(n, -1, 4), image_size)       # (N, S*S*B*C, 4)
        labels = torch.arange(1, self.num_classes + 1, device=boxes.device).repeat(
            scores.shape[1] // self.num_classes)
        out = []
        for b, sc in zip(boxes, scores):                       # a loop over the images
            keep = torch.where(sc > self.score_thresh)[0]
            keep = keep[sc[keep].topk(min(1000, len(keep))).indices]
            keep = keep[remove_small_boxes(b[keep], 1e-2)]
            keep = keep[batched_nms(b[keep], sc[keep], labels[keep], self.nms_thresh)]
            keep = keep[:self.detections_per_img]
            out.append({"boxes": b[keep], "scores": sc[keep], "labels": labels[keep]})
        return out

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        """The losses (training) or the detections (eval).

        Args:
            images: [N, 3, H, W] in [0, 1], H = W a multiple of the stride.
            targets: per image {"boxes" [G, 4] xyxy, "labels" [G] in 1..C} (training only).

        Returns:
            training: {"loss_box_reg", "loss_objectness", "loss_no_object", "loss_classifier"};
            eval: per image {"boxes" [D, 4] xyxy, "scores" [D], "labels" [D] in 1..C}.
        """
        check_detection_inputs(images, targets, self.training, self.num_classes)
        if images.shape[-1] != images.shape[-2] or images.shape[-1] % self.stride:
            raise ValueError(f"images must be square with a side divisible by the stride "
                             f"{self.stride}, got {tuple(images.shape[-2:])}")
        if len(images) == 0:
            return []                                            # eval: no images, no detections
        pred = self.grid(images)
        if self.training:
            targets = targets_to(images, targets)
            return self.compute_loss(pred, targets, images.shape[-1])
        return self.postprocess(pred, tuple(images.shape[-2:]))
