"""RetinaNet (Lin et al., 2017): dense anchors, a feature pyramid, and the focal loss.

A one-stage detector scores *every* anchor: here ``(16^2 + 8^2 + 4^2) x 9 = 3,024`` per
128 x 128 image for a handful of objects, so more than 99 % of the (anchor, class) pairs
are background and most of them are easy. Two-stage detectors escape that imbalance by
proposing ~300 regions and sampling 1:3 batches; RetinaNet keeps all anchors and changes
the loss instead:

* **focal loss** (`cvcourse.ops.sigmoid_focal_loss`, gamma 2, alpha 0.25) over all
  anchors not ignored, summed and divided by the number of positive anchors;
* **prior-probability bias**: the classifier's last bias starts at ``-log((1 - pi) / pi)``
  with ``pi = 0.01``, so every anchor starts at p = 0.01 instead of 0.5 and the easy
  negatives do not swamp the first steps;
* a small **feature pyramid** (FPN) on the backbone's strides 8, 16, 32, with 9 anchors
  per location (3 sizes x 3 aspect ratios) and two subnets shared by the levels: a
  classification subnet (C sigmoid outputs per anchor) and a box subnet (4 deltas). With
  ``head_norm`` their hidden convolutions are followed by GroupNorm, as in torchvision's
  RetinaNet v2: trained from scratch (no ImageNet backbone), the paper's 0.01-std
  initialisation otherwise leaves the heads' signals and gradients tiny.

Anchors are labelled by IoU as in torchvision's RetinaNet: >= 0.5 positive (plus each
ground truth's best anchors), < 0.4 negative, in between ignored. ``loss="bce"`` trains the
same detector with plain binary cross-entropy (gamma 0, no alpha) for comparison.
Inference: per level, scores above 0.05, top 1000, decode; then per-class NMS at 0.5 and
the best 100. Interface: torchvision's detection interface.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops.anchors import AnchorGenerator
from ..ops.boxes import BoxCoder, batched_nms, box_iou, clip_boxes_to_image, remove_small_boxes
from ..ops.focal import sigmoid_focal_loss
from ..ops.matching import Matcher
from .backbone import MultiScaleBackbone
from .checks import check_detection_inputs, targets_to

__all__ = ["RetinaNet", "FeaturePyramid", "classification_loss", "loss_shares", "prior_bias",
           "pyramid_levels"]

LOSSES = ("focal", "bce")


def prior_bias(prior: float = 0.01) -> float:
    """The bias b with sigmoid(b) = prior: ``-log((1 - prior) / prior)`` (-4.595 for 0.01)."""
    if not 0 < prior < 1:
        raise ValueError(f"prior must be in (0, 1), got {prior}")
    return -math.log((1 - prior) / prior)


def classification_loss(logits: Tensor, targets: Tensor, loss: str = "focal",
                        alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """Elementwise loss of (anchor, class) logits against 0/1 targets: focal or plain BCE."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma)


class FeaturePyramid(nn.Module):
    """FPN (Lin et al., 2017): 1x1 laterals, top-down nearest upsampling + add, 3x3 smoothing.

    Args:
        in_channels: channels of every backbone map.
        channels: channels of every pyramid map.
        levels: number of maps, finest first.
        top_down: False drops the top-down pathway (each level is its own lateral, smoothed):
            the ablation that measures what the coarse levels' context adds to the fine ones.
    """

    def __init__(self, in_channels: int, channels: int, levels: int = 3, top_down: bool = True):
        super().__init__()
        self.top_down = top_down
        self.lateral = nn.ModuleList(nn.Conv2d(in_channels, channels, 1) for _ in range(levels))
        self.smooth = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1)
                                    for _ in range(levels))

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """The pyramid: one ``[N, out_channels, h_l, w_l]`` map per input level."""
        laterals = [lat(f) for lat, f in zip(self.lateral, features)]   # (N, channels, h_l, w_l)
        for i in range(len(laterals) - 2, -1, -1) if self.top_down else ():   # coarse to fine
            laterals[i] = laterals[i] + F.interpolate(laterals[i + 1], size=laterals[i].shape[-2:],
                                                      mode="nearest")
        return [s(p) for s, p in zip(self.smooth, laterals)]


def _subnet(channels: int, depth: int, out: int, norm: bool = False) -> nn.Sequential:
    layers = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1)]
        if norm:                                                  # torchvision's RetinaNet v2
            layers += [nn.GroupNorm(min(32, channels // 4), channels)]
        layers += [nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(channels, out, 3, padding=1))
    for m in layers:                                              # RetinaNet's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.constant_(m.bias, 0.0)
    return nn.Sequential(*layers)


class RetinaNet(nn.Module):
    """RetinaNet on the small multi-scale backbone of the SSD chapter.

    Args:
        num_classes: object classes C (sigmoid per class; no background output).
        width: backbone width.
        fpn_channels: pyramid and subnet width.
        head_depth: 3x3 conv + ReLU layers in each subnet before its output conv (the paper: 4).
        head_norm: GroupNorm after each hidden subnet conv.
        fpn: False puts the subnets straight on the backbone's maps (then fpn_channels must
            equal 4 * width).
        top_down: the pyramid's top-down pathway (False: laterals and smoothing only).
        anchor_sizes: per pyramid level, the anchor sizes (px).
        aspect_ratios: for all levels.
        loss: "focal" or "bce".
        alpha: the focal loss's class weight.
        gamma: the focal loss's focusing exponent.
        prior: pi of the classification bias init.
        fg_iou_thresh: IoU at and above which an anchor is positive (0.5).
        bg_iou_thresh: IoU below which an anchor is negative (0.4).
        score_thresh: inference: drop scores at or below it.
        nms_thresh: inference: per-class NMS IoU threshold.
        detections_per_img: inference: most detections kept per image.
        topk_candidates: inference: candidates kept per level before NMS.
    """

    def __init__(self, num_classes: int = 3, width: int = 16, fpn_channels: int = 64,
                 head_depth: int = 2, head_norm: bool = False, fpn: bool = True,
                 top_down: bool = True,
                 anchor_sizes: Sequence[Sequence[float]] = ((12, 15, 19), (24, 30, 38),
                                                            (48, 60, 76)),
                 aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0), loss: str = "focal",
                 alpha: float = 0.25, gamma: float = 2.0, prior: float = 0.01,
                 fg_iou_thresh: float = 0.5, bg_iou_thresh: float = 0.4,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_img: int = 100, topk_candidates: int = 1000):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        self.backbone = MultiScaleBackbone(width)
        if len(anchor_sizes) != len(self.backbone.strides):
            raise ValueError(f"anchor_sizes needs one tuple per level "
                             f"({len(self.backbone.strides)}), got {len(anchor_sizes)}")
        if fpn:
            self.fpn = FeaturePyramid(self.backbone.out_channels, fpn_channels, top_down=top_down)
        elif fpn_channels == self.backbone.out_channels:
            self.fpn = nn.Identity()                          # heads straight on the backbone's maps
        else:
            raise ValueError(f"fpn=False needs fpn_channels == {self.backbone.out_channels}, got {fpn_channels}")
        sizes = tuple(tuple(s) for s in anchor_sizes)
        self.anchor_generator = AnchorGenerator(sizes, (tuple(aspect_ratios),) * len(sizes))
        a = self.anchor_generator.num_anchors_per_location()[0]
        self.num_classes, self.num_anchors = num_classes, a
        self.cls_subnet = _subnet(fpn_channels, head_depth, a * num_classes, head_norm)
        nn.init.constant_(self.cls_subnet[-1].bias, prior_bias(prior))     # p = prior at start
        self.box_subnet = _subnet(fpn_channels, head_depth, a * 4, head_norm)
        self.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self.matcher = Matcher(fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True)
        self.loss, self.alpha, self.gamma = loss, alpha, gamma
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img, self.topk_candidates = detections_per_img, topk_candidates

    def head(self, features: list[Tensor]):
        """Per level: logits [N, h*w*A, C] and deltas [N, h*w*A, 4] (torchvision's order)."""
        logits, deltas = [], []
        for f in features:
            n = f.shape[0]
            logits.append(self.cls_subnet(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_classes))
            deltas.append(self.box_subnet(f).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return logits, deltas

    def match(self, anchors: Tensor, targets: list[dict[str, Tensor]]):
        """The training targets of every anchor, per image.

        Returns matched gt index per anchor [N, A] (-1 negative, -2 ignored), gt boxes
        [N, A, 4] and one-hot class targets [N, A, C].
        """
        matched, boxes, onehot = [], [], []
        for t in targets:                                     # a loop over the images
            m = self.matcher(box_iou(t["boxes"], anchors))    # (A,)
            idx = m.clamp(min=0)
            oh = torch.zeros(len(anchors), self.num_classes, device=anchors.device,
                             dtype=anchors.dtype)
            if len(t["boxes"]):
                fg = torch.where(m >= 0)[0]
                oh[fg, t["labels"][idx[fg]] - 1] = 1.0
                boxes.append(t["boxes"][idx])
            else:
                boxes.append(anchors.clone())
            matched.append(m)
            onehot.append(oh)
        return torch.stack(matched), torch.stack(boxes), torch.stack(onehot)

    def compute_loss(self, logits: Tensor, deltas: Tensor, anchors: Tensor,
                     targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Focal (or BCE) classification loss and L1 box loss, each per positive anchor.

        Args:
            logits: [N, A, C] (levels concatenated).
            deltas: [N, A, 4] (levels concatenated).
            anchors: [A, 4].
            targets: per image {"boxes" [G, 4] xyxy, "labels" [G] in 1..C}.

        Returns:
            {"loss_classifier", "loss_box_reg"}.
        """
        matched, gt_boxes, onehot = self.match(anchors, targets)
        positive = matched >= 0                                       # (N, A)
        valid = matched != Matcher.BETWEEN_THRESHOLDS                 # ignored anchors drop out
        num_pos = positive.sum().clamp(min=1)
        cls = classification_loss(logits[valid], onehot[valid], self.loss, self.alpha, self.gamma)
        box_targets = self.box_coder.encode(gt_boxes[positive], anchors.expand_as(gt_boxes)[positive])
        box = F.l1_loss(deltas[positive], box_targets, reduction="sum")
        return {"loss_classifier": cls.sum() / num_pos, "loss_box_reg": box / num_pos}

    @torch.no_grad()
    def postprocess(self, logits: list[Tensor], deltas: list[Tensor], anchors: list[Tensor],
                    image_size) -> list[dict[str, Tensor]]:
        """Per image ``{"boxes", "scores", "labels"}`` from each level's logits and deltas."""
        out, c = [], self.num_classes
        for i in range(logits[0].shape[0]):                   # a loop over the images
            boxes, scores, labels = [], [], []
            for lg, dl, an in zip(logits, deltas, anchors):   # and over the 3 levels
                sc = lg[i].sigmoid().reshape(-1)              # (A_l * C,) anchor-major
                keep = torch.where(sc > self.score_thresh)[0]
                keep = keep[sc[keep].topk(min(self.topk_candidates, len(keep))).indices]
                a = keep // c
                boxes.append(self.box_coder.decode(dl[i][a], an[a]))
                scores.append(sc[keep])
                labels.append(keep % c + 1)
            b = clip_boxes_to_image(torch.cat(boxes), image_size)
            s, lab = torch.cat(scores), torch.cat(labels)
            keep = remove_small_boxes(b, 1e-2)
            keep = keep[batched_nms(b[keep], s[keep], lab[keep], self.nms_thresh)]
            keep = keep[:self.detections_per_img]
            out.append({"boxes": b[keep], "scores": s[keep], "labels": lab[keep]})
        return out

    @torch.no_grad()
    def anchor_logits(self, images: Tensor, targets: list[dict[str, Tensor]]):
        """Classification logits and one-hot targets of the anchors not ignored, [V, C] each.

        V counts the anchors of all images that are positive or negative; computed in eval mode.
        """
        modes = [(m, m.training) for m in self.modules()]
        self.eval()
        try:
            images = images.to(next(self.parameters()).device)
            features = self.fpn(self.backbone(images))
            logits = torch.cat(self.head(features)[0], 1)             # (N, A, C)
            anchors = self.anchor_generator(images, features)[0]
            targets = targets_to(images, targets)
            matched, _, onehot = self.match(anchors, targets)
        finally:
            for m, training in modes:  # each module's own mode back, not one for all
                m.training = training
        valid = matched != Matcher.BETWEEN_THRESHOLDS
        return logits[valid], onehot[valid]

    def forward(self, images: Tensor, targets: list[dict[str, Tensor]] | None = None):
        """The losses (training) or the detections (eval).

        Args:
            images: [N, 3, H, W] in [0, 1] (H, W multiples of 32).
            targets: per image {"boxes" [G, 4] xyxy, "labels" [G] in 1..C} (training only).

        Returns:
            training: {"loss_classifier", "loss_box_reg"};
            eval: per image {"boxes" [K, 4] xyxy, "scores" [K], "labels" [K] in 1..C}.
        """
        check_detection_inputs(images, targets, self.training, self.num_classes)
        if len(images) == 0:
            return []                                         # eval: no images, no detections
        features = self.fpn(self.backbone(images))
        logits, deltas = self.head(features)
        anchors = self.anchor_generator(images, features)[0]
        sizes = [lg.shape[1] for lg in logits]
        if self.training:
            targets = targets_to(images, targets)
            return self.compute_loss(torch.cat(logits, 1), torch.cat(deltas, 1), anchors, targets)
        return self.postprocess(logits, deltas, list(anchors.split(sizes)),
                                tuple(images.shape[-2:]))


@torch.no_grad()
def loss_shares(model: RetinaNet, images: Tensor, targets: list[dict[str, Tensor]],
                loss: str | None = None, alpha: float = 0.25, gamma: float = 2.0,
                easy: float = 0.9) -> dict[str, float]:
    """Where the classification loss comes from, on `images`: positives, hard and easy negatives.

    Every (anchor, class) pair not ignored is one binary example. A negative is *easy* when
    the model already gives it ``p_t = 1 - p >= easy``. The loss is `model`'s own
    (``loss=None``) or the one named, with focal parameters `alpha`, `gamma`.

    Returns:
        {"easy_negatives", "hard_negatives", "positives"}: shares of the summed loss (sum 1);
        {"n_easy_negatives", "n_hard_negatives", "n_positives"}: counts of (anchor, class) pairs.
    """
    logits, y = model.anchor_logits(images, targets)                  # (V, C) each
    per = classification_loss(logits, y, loss or model.loss, alpha, gamma)
    pos, neg = y > 0.5, y < 0.5
    easy_neg = neg & (1 - logits.sigmoid() >= easy)
    hard_neg = neg & ~easy_neg
    total = per.sum().clamp(min=1e-12)
    return {
        "easy_negatives": float(per[easy_neg].sum() / total),
        "hard_negatives": float(per[hard_neg].sum() / total),
        "positives": float(per[pos].sum() / total),
        "n_easy_negatives": int(easy_neg.sum()), "n_hard_negatives": int(hard_neg.sum()),
        "n_positives": int(pos.sum()),
    }


@torch.no_grad()
def pyramid_levels(model: RetinaNet, boxes: Tensor, image_size: int = 128) -> Tensor:
    """The pyramid level that serves each object: the level of its best-IoU anchor.

    Args:
        model: a RetinaNet (its anchor sizes and strides are used, not its weights).
        boxes: Tensor[G, 4] xyxy objects in pixels.
        image_size: side of the square image.

    Returns:
        Tensor[G] int64: 0 for stride 8 (the finest map), 1 for stride 16, 2 for stride 32.
    """
    strides = model.backbone.strides
    per_level = model.anchor_generator.grid_anchors(
        [(image_size // s, image_size // s) for s in strides], [(s, s) for s in strides])
    level = torch.cat([torch.full((len(a),), i) for i, a in enumerate(per_level)])   # (A,)
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.int64)
    return level[box_iou(boxes.float(), torch.cat(per_level)).argmax(1)]
