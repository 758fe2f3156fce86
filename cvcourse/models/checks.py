"""Input checks and target moves shared by every detector's ``forward``.

Each detector takes torchvision's detection interface: ``images`` a ``Tensor[B, 3, H, W]``
and, in training mode, ``targets`` a list of one ``{"boxes", "labels"}`` dict per image.
Bad input fails here, early, with an error that names the argument and what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

__all__ = ["check_images", "check_targets", "check_detection_inputs", "targets_to"]


def check_images(images) -> None:
    """Raise a ValueError unless `images` is a batch of RGB images.

    Args:
        images (Tensor[B, 3, H, W]): the batch to check.
    """
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a Tensor[B, 3, H, W], got {got}")


def check_targets(targets, num_images: int) -> None:
    """Raise a ValueError unless `targets` holds one valid detection target per image.

    Args:
        targets (list[dict[str, Tensor]]): per image ``"boxes"`` ``[N, 4]`` xyxy with
            x2 > x1 and y2 > y1, and ``"labels"`` ``[N]``.
        num_images (int): the batch size the targets must match.
    """
    if targets is None:
        raise ValueError("targets must be given in training mode (a list of dicts with "
                         "'boxes' [N, 4] and 'labels' [N]); call model.eval() to predict")
    if len(targets) != num_images:
        raise ValueError(f"targets must have one dict per image, got {len(targets)} "
                         f"for {num_images} images")
    for i, t in enumerate(targets):
        boxes = t.get("boxes") if isinstance(t, dict) else None
        if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
            got = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
            raise ValueError(f"targets[{i}]['boxes'] must be a Tensor[N, 4] xyxy, got {got}")
        bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
        if bool(bad.any()):
            j = int(bad.nonzero()[0, 0])
            raise ValueError(f"targets[{i}]['boxes'] must be xyxy with x2 > x1 and y2 > y1, "
                             f"box {j} is {boxes[j].tolist()}")
        if len(t.get("labels", ())) != len(boxes):
            raise ValueError(f"targets[{i}]['labels'] must have one label per box ({len(boxes)})")


def check_detection_inputs(images, targets, training: bool) -> None:
    """Check a detector's ``forward`` arguments: the images always, the targets when training.

    Args:
        images (Tensor[B, 3, H, W]): the batch.
        targets (list[dict[str, Tensor]] or None): one target dict per image.
        training (bool): the model's mode; targets are required (and checked) only then.
    """
    check_images(images)
    if training:
        check_targets(targets, len(images))


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
