"""Mask R-CNN, our own: Faster R-CNN plus a mask branch.

Faster R-CNN (``faster_rcnn.py``) finds each object's box and class. Mask R-CNN adds a
third output per RoI: a small fully convolutional network reads the RoI's features
(RoI Align, 14x14) and predicts a 28x28 mask *for every class*; only the channel of the
RoI's class is trained and used, so classes never compete for a pixel (per-pixel sigmoid,
not softmax). Three pieces, each mirroring torchvision's:

- `mask_targets` (torchvision's ``project_masks_on_boxes``): the training target of a
  positive RoI is its matched ground-truth mask cut out *along the RoI* with RoI Align
  into 28x28 (soft values at the edges);
- `maskrcnn_loss`: per-pixel binary cross-entropy on the ground-truth class's channel;
- `paste_masks_in_image`: at inference the 28x28 probabilities of the predicted class are
  resized into the detected box and written into an empty H x W image (threshold 0.5 later).

The mask branch's pooler is ``"align"`` or ``"pool"`` (``mask_pooler``) to measure why
alignment matters: RoI Pool snaps the box to whole feature cells (8 px at stride 8), a
shift a box may survive but a pixel-accurate mask does not.

Interface: ``model(images, targets)`` with targets ``{"boxes", "labels", "masks" [N,H,W]}``
returns the Faster R-CNN losses plus ``loss_mask``; in eval mode ``model(images)`` returns
per image ``{"boxes", "scores", "labels", "masks" [D,1,H,W] float probabilities,
"roi_masks" [D,1,28,28]}`` ("masks" as torchvision's Mask R-CNN; "roi_masks" are the raw
28x28 masks before pasting).

Taught in book/inst_mask_rcnn.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.boxes import box_iou
from ..ops.roi import roi_align, roi_pool
from .checks import check_detection_inputs, targets_to
from .faster_rcnn import FasterRCNN
from .roi_heads import RoIHeads, fastrcnn_loss

__all__ = ["MaskHead", "MaskRCNN", "MaskRoIHeads", "mask_targets", "maskrcnn_loss",
           "paste_masks_in_image"]


class MaskHead(nn.Module):
    """The mask branch's FCN: 3x3 convs at 14x14, a 2x transposed conv to 28x28, 1x1 scores.

    Args:
        in_channels: channels of the pooled RoI features.
        channels: channels of the hidden layers.
        layers: number of 3x3 convs.
        num_classes: object classes (background excluded).

    Input [K, in_channels, 14, 14] -> logits [K, num_classes + 1, 28, 28] (channel 0,
    background, is never trained or used).
    """

    def __init__(self, in_channels: int, channels: int = 32, layers: int = 4, num_classes: int = 3):
        super().__init__()
        convs = []
        for i in range(layers):
            convs += [nn.Conv2d(in_channels if i == 0 else channels, channels, 3, padding=1),
                      nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*convs)
        self.upsample = nn.ConvTranspose2d(channels, channels, 2, stride=2)
        self.logits = nn.Conv2d(channels, num_classes + 1, 1)
        for m in self.modules():  # as torchvision's MaskRCNNHeads / MaskRCNNPredictor
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Per-class mask logits ``[K, C, 28, 28]`` of RoI features ``[K, c, 14, 14]``."""
        x = self.convs(x)                                   # (K, c, 14, 14)
        x = F.relu(self.upsample(x))                        # (K, c, 28, 28)
        return self.logits(x)                               # (K, C+1, 28, 28)


# ----------------------------------------------------------------------------- targets, loss
def mask_targets(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, size: int = 28) -> Tensor:
    """The ground-truth mask of each RoI's object, seen through the RoI: [K, size, size].

    As torchvision's ``project_masks_on_boxes``: RoI Align (``sampling_ratio=-1``,
    ``aligned=False``) of mask ``matched_idxs[k]`` over box ``boxes[k]``; values in [0, 1].

    Args:
        gt_masks: [G, H, W] (bool or float) of one image.
        boxes: [K, 4] xyxy in pixels.
        matched_idxs: [K] int in [0, G).
        size: M, the side of the targets.
    """
    if not isinstance(gt_masks, Tensor) or gt_masks.dim() != 3:
        raise ValueError(f"gt_masks must be a Tensor[G, H, W], got "
                         f"{tuple(gt_masks.shape) if isinstance(gt_masks, Tensor) else type(gt_masks).__name__}")
    if boxes.dim() != 2 or boxes.shape[1] != 4 or matched_idxs.shape != (len(boxes),):
        raise ValueError(f"boxes must be [K, 4] and matched_idxs [K], got {tuple(boxes.shape)} "
                         f"and {tuple(matched_idxs.shape)}")
    if len(boxes) == 0:
        return boxes.new_zeros(0, size, size)
    if len(gt_masks) == 0 or int(matched_idxs.min()) < 0 or int(matched_idxs.max()) >= len(gt_masks):
        raise ValueError(f"matched_idxs must index gt_masks' {len(gt_masks)} masks, got "
                         f"values in [{int(matched_idxs.min())}, {int(matched_idxs.max())}]")
    rois = torch.cat([matched_idxs[:, None].to(boxes), boxes], dim=1)   # (K, 5)
    with torch.autocast(boxes.device.type, enabled=False):              # targets: exact float32
        return roi_align(gt_masks[:, None].float(), rois.float(), (size, size), 1.0)[:, 0]


def maskrcnn_loss(mask_logits: Tensor, boxes: list[Tensor], gt_masks: list[Tensor],
                  labels: list[Tensor], matched_idxs: list[Tensor]) -> Tensor:
    """Binary cross-entropy per pixel, on the channel of each RoI's ground-truth class only.

    Args:
        mask_logits: [K, C+1, M, M] for the positive RoIs of all images, in order.
        boxes: per image the positive RoIs [K_i, 4].
        gt_masks: per image the ground-truth masks [G_i, H, W].
        labels: per image the positive RoIs' classes [K_i] (1..C).
        matched_idxs: per image the positive RoIs' matched ground-truth indices [K_i].

    Returns:
        A scalar; 0 (still connected to the graph) when there is no positive RoI.
    """
    m = mask_logits.shape[-1]
    targets = [mask_targets(g, b, i, m) for g, b, i in zip(gt_masks, boxes, matched_idxs)]
    labels, targets = torch.cat(labels), torch.cat(targets)          # (K,), (K, M, M)
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    picked = mask_logits[torch.arange(len(labels), device=labels.device), labels]  # (K, M, M)
    return F.binary_cross_entropy_with_logits(picked, targets)


# ----------------------------------------------------------------------------- pasting
def _paste_weights(start: Tensor, length: Tensor, m: int, size: int) -> Tensor:
    """Bilinear weights (align_corners=False) that resize m cells to `length` pixels.

    The resized cells are placed at integer `start` and read at image pixels 0..size-1:
    the result is [K, size, m]; rows outside are 0.
    """
    pixel = torch.arange(size, device=start.device)                  # (size,)
    j = pixel[None, :] - start[:, None]                              # (K, size) index in the box
    inside = (j >= 0) & (j < length[:, None])
    ratio = (m / length.to(torch.float32))[:, None]                  # (K, 1) input / output size
    src = ((j + 0.5) * ratio - 0.5).clamp(min=0)                     # torch's source index rule
    low = src.floor().long().clamp(max=m - 1)
    frac = (src - low).clamp(0, 1)
    high = (low + 1).clamp(max=m - 1)
    w = torch.zeros(len(start), size, m, device=start.device)
    w.scatter_add_(2, low[..., None], ((1 - frac) * inside)[..., None])
    w.scatter_add_(2, high[..., None], (frac * inside)[..., None])
    return w


def paste_masks_in_image(masks: Tensor, boxes: Tensor, img_shape: tuple[int, int],
                         padding: int = 1) -> Tensor:
    """Paste each M x M mask into its box of an H x W image, as torchvision's function.

    torchvision's rules, reproduced exactly: pad the mask by `padding` zero cells and grow
    the box by the same factor ``(M + 2 padding) / M`` about its centre (so the mask's edge
    can fade out), truncate the box to integers, resize the mask to the box's
    ``x2 - x1 + 1`` by ``y2 - y1 + 1`` pixels (bilinear, ``align_corners=False``) and write
    the part inside the image. Bilinear resizing is separable, so every mask is pasted at
    once as ``Wy[k] @ mask[k] @ Wx[k].T`` (no loop over masks).

    Args:
        masks: [N, 1, M, M] float (probabilities or logits).
        boxes: [N, 4] xyxy in pixels.
        img_shape: (H, W).
        padding: cells of zeros around each mask (torchvision: 1).

    Returns:
        [N, 1, H, W] of masks' dtype; [0, 1, H, W] for no masks.
    """
    if not isinstance(masks, Tensor) or masks.dim() != 4 or masks.shape[1] != 1 \
            or masks.shape[2] != masks.shape[3]:
        got = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
        raise ValueError(f"masks must be a Tensor[N, 1, M, M] of square masks, got {got}")
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4 \
            or len(boxes) != len(masks):
        got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"boxes must be a Tensor[N, 4] xyxy with N = {len(masks)} (one per "
                         f"mask), got {got}")
    h, w = (int(s) for s in img_shape)
    if h < 1 or w < 1:
        raise ValueError(f"img_shape must be (H, W) with H, W >= 1, got {tuple(img_shape)}")
    if len(masks) == 0:
        return masks.new_zeros(0, 1, h, w)
    m = masks.shape[-1] + 2 * padding
    padded = F.pad(masks[:, 0].float(), (padding,) * 4)                 # (N, m, m)
    scale = m / masks.shape[-1]
    centre = (boxes[:, :2] + boxes[:, 2:]) * 0.5                         # (N, 2) x, y
    half = (boxes[:, 2:] - boxes[:, :2]) * 0.5 * scale
    grown = torch.cat([centre - half, centre + half], dim=1).to(torch.int64)  # trunc to 0
    x1, y1, x2, y2 = grown.unbind(1)
    wx = _paste_weights(x1, (x2 - x1 + 1).clamp(min=1), m, w)           # (N, W, m)
    wy = _paste_weights(y1, (y2 - y1 + 1).clamp(min=1), m, h)           # (N, H, m)
    out = wy @ padded @ wx.transpose(1, 2)                                # (N, H, W)
    return out[:, None].to(masks.dtype)


# ----------------------------------------------------------------------------- heads, model
class MaskRoIHeads(RoIHeads):
    """`RoIHeads` (box branch) plus the mask branch: pooler, `MaskHead`, loss, pasting.

    Args:
        in_channels: as in `RoIHeads`.
        stride: as in `RoIHeads`.
        num_classes: as in `RoIHeads`.
        pooler: the box branch's, as in `RoIHeads`.
        mask_pooler: ``"align"`` (RoI Align, aligned, sampling ratio 2) or ``"pool"`` (RoI Pool).
        mask_pool_size: the pooled grid (14; the masks are twice that).
        mask_channels: the FCN's width.
        mask_layers: the FCN's number of 3x3 convs.
        mask_batch_size_per_image: train the mask branch on at most this many of each
            image's sampled positive RoIs (None: all, as torchvision) to bound its cost.
        **box_kwargs: the other settings of `RoIHeads`.
    """

    def __init__(self, in_channels: int, stride: int, num_classes: int = 3, pooler: str = "align",
                 mask_pooler: str = "align", mask_pool_size: int = 14, mask_channels: int = 32,
                 mask_layers: int = 4, mask_batch_size_per_image: int | None = None, **box_kwargs):
        super().__init__(in_channels, stride, num_classes, pooler, **box_kwargs)
        if mask_pooler not in ("align", "pool"):
            raise ValueError(f"mask_pooler must be 'align' or 'pool', got {mask_pooler!r}")
        self.mask_pooler, self.mask_pool_size = mask_pooler, mask_pool_size
        self.mask_batch_size_per_image = mask_batch_size_per_image
        self.mask_head = MaskHead(in_channels, mask_channels, mask_layers, num_classes)

    def mask_pool(self, features: Tensor, boxes: list[Tensor]) -> Tensor:
        """Fixed-size features for the mask branch: [sum K_i, C, 14, 14]."""
        if self.mask_pooler == "align":
            return roi_align(features, boxes, self.mask_pool_size, self.spatial_scale,
                             sampling_ratio=2, aligned=True)
        return roi_pool(features, boxes, self.mask_pool_size, self.spatial_scale)

    def positive_samples(self, proposals: list[Tensor], labels: list[Tensor],
                         targets: list[dict[str, Tensor]]):
        """The sampled positive RoIs, their classes and the index of the box each matched."""
        boxes, classes, matched = [], [], []
        for p, lab, t in zip(proposals, labels, targets):
            pos = torch.where(lab > 0)[0]
            if self.mask_batch_size_per_image is not None:  # a random subset
                pos = pos[torch.randperm(len(pos), device=pos.device)[:self.mask_batch_size_per_image]]
            boxes.append(p[pos])
            classes.append(lab[pos])
            gt = t["boxes"].to(p)                           # the matcher's choice is the argmax
            matched.append(box_iou(gt, p[pos]).argmax(0) if len(pos) else pos)
        return boxes, classes, matched

    def forward(self, features: Tensor, proposals: list[Tensor], image_size: tuple[int, int],
                targets: list[dict[str, Tensor]] | None = None):
        """Returns (detections, losses): detections with masks in eval mode, losses in training."""
        if self.training:
            proposals, labels, regression_targets = self.select_training_samples(proposals, targets)
        x = self.box_head(self.pool(features, proposals))                 # (K, R)
        class_logits, box_deltas = self.cls_score(x), self.bbox_pred(x)
        if self.training:
            cls, box = fastrcnn_loss(class_logits, box_deltas, torch.cat(labels),
                                     torch.cat(regression_targets))
            boxes, classes, matched = self.positive_samples(proposals, labels, targets)
            mask_logits = self.mask_head(self.mask_pool(features, boxes))  # (P, C+1, 28, 28)
            loss_mask = maskrcnn_loss(mask_logits, boxes, [t["masks"] for t in targets],
                                      classes, matched)
            return [], {"loss_classifier": cls, "loss_box_reg": box, "loss_mask": loss_mask}
        detections = self.postprocess(class_logits, box_deltas, proposals, image_size)
        boxes = [d["boxes"] for d in detections]
        mask_logits = self.mask_head(self.mask_pool(features, boxes))      # (D, C+1, 28, 28)
        labels = torch.cat([d["labels"] for d in detections])
        probs = mask_logits[torch.arange(len(labels), device=labels.device), labels]
        probs = probs.sigmoid()[:, None]                                   # (D, 1, 28, 28)
        for d, p in zip(detections, probs.split([len(b) for b in boxes])):
            d["masks"] = paste_masks_in_image(p, d["boxes"], image_size)  # (D_i, 1, H, W)
            d["roi_masks"] = p
        return detections, {}


def _check_masks(images: Tensor, targets) -> None:
    h, w = images.shape[-2:]
    for i, t in enumerate(targets):
        masks = t.get("masks")
        n = len(t["boxes"])
        if not isinstance(masks, Tensor) or tuple(masks.shape) != (n, h, w):
            got = tuple(masks.shape) if isinstance(masks, Tensor) else type(masks).__name__
            raise ValueError(f"targets[{i}]['masks'] must be a Tensor[N, H, W] = [{n}, {h}, {w}] "
                             f"(one mask per box, the image's size), got {got}")


class MaskRCNN(FasterRCNN):
    """Faster R-CNN (same backbone, RPN and box branch) with a mask branch.

    Args:
        num_classes: as in `FasterRCNN`; so are ``width``, ``stride``, ``representation_size``,
            ``box_*`` and ``pooler`` (the box branch's).
        mask_pooler: as in `MaskRoIHeads`; so are ``mask_pool_size``, ``mask_channels``,
            ``mask_layers`` and ``mask_batch_size_per_image``.
    """

    def __init__(self, num_classes: int = 3, width: int = 24, stride: int = 8,
                 pooler: str = "align", representation_size: int = 128,
                 box_batch_size_per_image: int = 128, box_score_thresh: float = 0.05,
                 box_nms_thresh: float = 0.5, box_detections_per_img: int = 100,
                 mask_pooler: str = "align", mask_pool_size: int = 14, mask_channels: int = 32,
                 mask_layers: int = 4, mask_batch_size_per_image: int | None = None,
                 anchor_sizes: Sequence[float] = (16, 32, 64),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), **rpn_kwargs):
        box = dict(representation_size=representation_size,
                   batch_size_per_image=box_batch_size_per_image, score_thresh=box_score_thresh,
                   nms_thresh=box_nms_thresh, detections_per_img=box_detections_per_img)
        super().__init__(num_classes, width, stride, anchor_sizes, aspect_ratios, pooler,
                         representation_size, box_batch_size_per_image=box_batch_size_per_image,
                         box_score_thresh=box_score_thresh, box_nms_thresh=box_nms_thresh,
                         box_detections_per_img=box_detections_per_img, **rpn_kwargs)
        self.roi_heads = MaskRoIHeads(4 * width, stride, num_classes, pooler,
                                      mask_pooler=mask_pooler, mask_pool_size=mask_pool_size,
                                      mask_channels=mask_channels, mask_layers=mask_layers,
                                      mask_batch_size_per_image=mask_batch_size_per_image, **box)

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        """The five losses (training) or the detections with their masks (eval).

        Args:
            images: [B, 3, H, W] in [0, 1].
            targets: per image {"boxes", "labels", "masks"} (training only).

        Returns:
            training: the four Faster R-CNN losses and ``loss_mask``;
            eval: per image {"boxes" [D, 4], "scores" [D], "labels" [D], "masks" [D, 1, H, W]
            probabilities, "roi_masks" [D, 1, 28, 28]}.
        """
        check_detection_inputs(images, targets, self.training, self.roi_heads.cls_score.out_features - 1)
        if len(images) == 0:
            return []                                                      # eval: no detections
        if self.training:
            _check_masks(images, targets)
            targets = targets_to(images, targets, ("boxes", "labels", "masks"))
        features = self.backbone(images)                                   # (B, 4w, H/s, W/s)
        proposals, rpn_losses = self.rpn(images, features, targets if self.training else None)
        detections, head_losses = self.roi_heads(features, proposals, tuple(images.shape[-2:]),
                                                 targets if self.training else None)
        return {**rpn_losses, **head_losses} if self.training else detections
