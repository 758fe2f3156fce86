"""Input checks and target moves shared by every detector's ``forward``.

Each detector takes torchvision's detection interface: ``images`` a ``Tensor[B, 3, H, W]``
and, in training mode, ``targets`` a list of one ``{"boxes", "labels"}`` dict per image.
Bad input fails here, early, with an error that names the argument and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["check_images", "check_targets", "check_detection_inputs", "targets_to"]


# Slack on the [0, 1] range: interpolation overshoots it a little, and a chapter adds small
# noise to images to probe a gradient. 0-255 images and mean/std-normalised ones (ImageNet's
# reach -2.1 and 2.6) lie far outside it.
RANGE_SLACK = 0.25


def check_images(images, name: str = "images") -> None:
    """Raise unless `images` is a batch of RGB float images with values in [0, 1].

    Every model standardises its input itself, so it expects plain [0, 1] pixels: a 0-255
    image would be standardised too, but the trained weights never saw such values and
    predict nonsense without any error (a U-Net's pixel accuracy falls from 0.997 to 0.634).
    An empty batch (B = 0) passes; each model returns the empty answer for it.

    Args:
        images (Tensor[B, 3, H, W]): the batch to check, floating point, values in [0, 1].
        name (str): the argument's name in the message.

    Raises:
        ValueError: wrong shape, integer dtype, NaN/inf or values outside [0, 1].
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"{name} must be a Tensor[B, 3, H, W], got {got}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be floating point with values in [0, 1], got dtype {images.dtype}"
                         + (" (divide 0-255 images by 255)" if images.dtype == torch.uint8 else ""))
    if images.numel() == 0:
        return
    with torch.no_grad():
        low, high = torch.aminmax(images.detach())
        low, high = float(low), float(high)
    if low != low or high != high or abs(low) == float("inf") or abs(high) == float("inf"):
        raise ValueError(f"{name} must be finite, got NaN or inf pixels")
    if low < -RANGE_SLACK or high > 1 + RANGE_SLACK:
        hint = " (0-255 images: divide by 255)" if high > 1.5 and low >= 0 else ""
        raise ValueError(f"{name} must hold values in [0, 1] (within {RANGE_SLACK}), got values in "
                         f"[{low:.4g}, {high:.4g}]{hint}")


def check_targets(targets, num_images: int, num_classes: int | None = None) -> None:
    """Raise a ValueError unless `targets` holds one valid detection target per image.

    Args:
        targets (list[dict[str, Tensor]]): per image ``"boxes"`` ``[N, 4]`` float xyxy,
            finite, with x2 > x1 and y2 > y1, and ``"labels"`` ``[N]`` integers in
            1..num_classes (0 is the background, never an object's label).
        num_images (int): the batch size the targets must match.
        num_classes (int or None): the number of object classes C, when known.
    """
    if targets is None:
        raise ValueError("targets must be given in training mode (a list of dicts with "
                         "'boxes' [N, 4] and 'labels' [N]); call model.eval() to predict")
    if not isinstance(targets, (list, tuple)):
        raise ValueError(f"targets must be a list of dicts, one per image, got {type(targets).__name__}")
    if len(targets) != num_images:
        raise ValueError(f"targets must have one dict per image, got {len(targets)} "
                         f"for {num_images} images")
    for i, t in enumerate(targets):
        boxes = t.get("boxes") if isinstance(t, dict) else None
        if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
            got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
            raise ValueError(f"targets[{i}]['boxes'] must be a Tensor[N, 4] xyxy, got {got}")
        if not boxes.is_floating_point():
            raise ValueError(f"targets[{i}]['boxes'] must be floating point, got {boxes.dtype}")
        finite = torch.isfinite(boxes).all(1)
        if not bool(finite.all()):
            j = int((~finite).nonzero()[0, 0])
            raise ValueError(f"targets[{i}]['boxes'] must be finite, box {j} is {boxes[j].tolist()}")
        bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if bool(bad.any()):
            j = int(bad.nonzero()[0, 0])
            raise ValueError(f"targets[{i}]['boxes'] must be xyxy with x2 > x1 and y2 > y1, "
                             f"box {j} is {boxes[j].tolist()}")
        labels = t.get("labels")
        if not isinstance(labels, Tensor) or labels.dim() != 1 or len(labels) != len(boxes):
            got = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
            raise ValueError(f"targets[{i}]['labels'] must be a Tensor[N] with one label per box "
                             f"({len(boxes)}), got {got}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise ValueError(f"targets[{i}]['labels'] must be integer class indices, got {labels.dtype}")
        if len(labels):
            low, high = int(labels.min()), int(labels.max())
            top = num_classes if num_classes is not None else high
            if low < 1 or high > top:
                raise ValueError(f"targets[{i}]['labels'] must be in 1..{num_classes or 'C'} (0 is the "
                                 f"background, not an object), got values in [{low}, {high}]")


def check_detection_inputs(images, targets, training: bool, num_classes: int | None = None) -> None:
    """Check a detector's ``forward`` arguments: the images always, the targets when training.

    Args:
        images (Tensor[B, 3, H, W]): the batch, values in [0, 1].
        targets (list[dict[str, Tensor]] or None): one target dict per image.
        training (bool): the model's mode; targets are required (and checked) only then.
        num_classes (int or None): object classes C; labels must lie in 1..C.

    Raises:
        ValueError: bad images or targets, or an empty batch in training mode (in eval mode
        an empty batch is fine: the detector returns an empty list).
    """
    check_images(images)
    if training:
        if len(images) == 0:
            raise ValueError("images must hold at least one image in training mode (an empty "
                             "batch has no loss); in eval mode it gives an empty list")
        check_targets(targets, len(images), num_classes)


def targets_to(images: Tensor, targets: Sequence[dict[str, Tensor]],
               keys: Sequence[str] = ("boxes", "labels")) -> list[dict[str, Tensor]]:
    """The targets' `keys` on the images' device, as every detector needs before its loss.

    Args:
        images (Tensor[B, 3, H, W]): the batch whose device (and dtype, for boxes) to follow.
        targets (list[dict[str, Tensor]]): one target dict per image.
        keys (Sequence[str]): the entries to keep.

    Returns:
        list[dict[str, Tensor]]: boxes in the images' dtype and device; the rest (labels,
        masks) on the images' device in their own dtype.
    """
    return [{k: t[k].to(images) if k == "boxes" else t[k].to(images.device) for k in keys}
            for t in targets]
