"""R-CNN (Girshick et al., 2014): classify warped region proposals, one CNN pass each.

The pipeline of the chapter: selective-search proposals (``cvcourse.proposals``) ->
*warp* each proposal to a fixed size (here ``roi_align`` on the image itself, aligned=True:
a bilinear resize of the crop, vectorized over all proposals) -> a small CNN on every
warped crop -> C + 1 class scores (0 = background) and class-specific box deltas
(``BoxCoder``) that refine the proposal. Training labels proposals by IoU with the ground
truth (>= 0.5: that object's class, else background) with ``Matcher``.

The cost is the point: the CNN's batch dimension is the *proposals*, so 200 proposals per
image mean 200 forward passes of the whole network; Fast R-CNN shares them.

Taught in book/det_rcnn.ipynb.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..ops.boxes import BoxCoder
from ..ops.matching import BalancedPositiveNegativeSampler, Matcher
from ..ops.roi import roi_align
from .backbone import Standardize, conv_bn_relu
from .checks import check_images
from .roi_heads import fastrcnn_loss, postprocess_detections, proposal_targets

__all__ = ["RCNN", "rcnn_targets", "rcnn_loss", "warp_proposals"]

BOX_CODER = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))


def warp_proposals(images: Tensor, proposals: list[Tensor], size: int = 32,
                   sampling_ratio: int = 2) -> Tensor:
    """Crop every proposal out of its image and resize it to ``size x size``: [K, 3, s, s].

    R-CNN warps each region anisotropically to the CNN's input size; bilinear RoI Align on
    the pixels (2 x 2 samples per output pixel) does exactly that for all regions at once.
    """
    return roi_align(images, proposals, size, spatial_scale=1.0, sampling_ratio=sampling_ratio,
                     aligned=True)


def rcnn_targets(proposals: list[Tensor], targets: list[dict[str, Tensor]],
                 iou_threshold: float = 0.5) -> tuple[list[Tensor], list[Tensor]]:
    """Per image: labels [K] (the matched object's class if IoU >= 0.5, else 0), deltas [K, 4]."""
    matcher = Matcher(iou_threshold, iou_threshold, allow_low_quality_matches=False)
    return proposal_targets(proposals, targets, matcher, BOX_CODER)


class RCNN(nn.Module):
    """A small CNN run on each warped proposal: class scores [K, C+1], deltas [K, 4(C+1)].

    Args:
        num_classes: object classes (3); the classifier has num_classes + 1 outputs.
        crop_size: side of the warped crops (32).
        width: channels of the first stage (stages w, 2w, 4w; stride 8, then 4x4 grid).
    """

    def __init__(self, num_classes: int = 3, crop_size: int = 32, width: int = 16,
                 score_thresh: float = 0.05, nms_thresh: float = 0.5,
                 detections_per_img: int = 100):
        super().__init__()
        w, self.crop_size = width, crop_size
        self.cnn = nn.Sequential(
            Standardize(),                                                    # per crop
            conv_bn_relu(3, w), nn.MaxPool2d(2),                              # (K, w, s/2, s/2)
            conv_bn_relu(w, 2 * w), nn.MaxPool2d(2),                          # (K, 2w, s/4, s/4)
            conv_bn_relu(2 * w, 4 * w), nn.MaxPool2d(2),                      # (K, 4w, s/8, s/8)
            nn.AdaptiveAvgPool2d(4), nn.Flatten(),                            # (K, 64w)
            nn.Linear(64 * w, 128), nn.ReLU(inplace=True),                    # (K, 128)
        )
        self.cls_score = nn.Linear(128, num_classes + 1)
        self.bbox_pred = nn.Linear(128, 4 * (num_classes + 1))
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img = detections_per_img

    def forward(self, crops: Tensor) -> tuple[Tensor, Tensor]:
        """Classify and regress warped proposal crops.

        Args:
            crops: [K, 3, s, s], one per proposal.

        Returns:
            logits [K, C+1] and deltas [K, 4(C+1)].
        """
        if not isinstance(crops, Tensor) or crops.dim() != 4 or crops.shape[1] != 3:
            got = tuple(crops.shape) if isinstance(crops, Tensor) else type(crops).__name__
            raise ValueError(f"crops must be a Tensor[K, 3, s, s] of warped proposals, got {got}")
        f = self.cnn(crops)                        # one CNN pass per proposal: K passes
        return self.cls_score(f), self.bbox_pred(f)

    def classify(self, images: Tensor, proposals: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Warp the proposals of each image and run the CNN on every crop."""
        _check_images(images, proposals)
        return self(warp_proposals(images, proposals, self.crop_size))

    @torch.no_grad()
    def predict(self, images: Tensor, proposals: list[Tensor] | None = None,
                max_proposals: int = 200) -> list[dict[str, Tensor]]:
        """Detections per image ``{"boxes", "scores", "labels"}`` after per-class NMS.

        Args:
            images (Tensor[B, 3, H, W]): images in [0, 1].
            proposals (list[Tensor[K, 4]] or None): per image the regions to classify, or
                None to run selective search (``cvcourse.proposals.propose``) here.
            max_proposals (int): regions kept per image when searching here.
        """
        check_images(images)
        if len(images) == 0:
            return []                                      # no images, no detections
        if proposals is None:
            from ..proposals import propose
            proposals = [propose(im, max_proposals) for im in images]
        logits, deltas = self.classify(images, proposals)
        return postprocess_detections(logits, deltas, proposals, tuple(images.shape[-2:]),
                                      BOX_CODER, self.score_thresh, self.nms_thresh,
                                      self.detections_per_img)


def _check_images(images, proposals) -> None:
    check_images(images)
    if not isinstance(proposals, (list, tuple)) or len(proposals) != len(images):
        raise ValueError(f"proposals must be a list with one Tensor[K, 4] per image "
                         f"({len(images)}), got {type(proposals).__name__}")


def rcnn_loss(model: RCNN, batch, batch_size_per_image: int = 64,
              positive_fraction: float = 0.25) -> dict[str, Tensor]:
    """R-CNN's training loss on ``(images, targets, proposals)``: CE + smooth-L1 (beta 1/9).

    The ground-truth boxes are added to the proposals (a perfect positive each), proposals
    are labelled by `rcnn_targets`, and `batch_size_per_image` of them are sampled per image
    with at most `positive_fraction` positives, as in Fast R-CNN's training.

    Returns:
        ``{"loss_classifier", "loss_box_reg"}``.
    """
    images, targets, proposals = batch
    _check_images(images, proposals)
    proposals = [torch.cat([p.to(images), t["boxes"].to(images)])
                 for p, t in zip(proposals, targets)]
    labels, deltas = rcnn_targets(proposals, targets)
    pos, neg = BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)(labels)
    keep = [torch.where(p.bool() | n.bool())[0] for p, n in zip(pos, neg)]
    proposals = [p[k] for p, k in zip(proposals, keep)]
    logits, box_deltas = model.classify(images, proposals)
    labels = torch.cat([lab[k] for lab, k in zip(labels, keep)])           # (K,)
    deltas = torch.cat([d[k] for d, k in zip(deltas, keep)])                # (K, 4)
    cls, box = fastrcnn_loss(logits, box_deltas, labels, deltas)
    return {"loss_classifier": cls, "loss_box_reg": box}
