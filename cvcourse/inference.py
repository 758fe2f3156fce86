"""Running a trained model over many images: detections, instance masks, pixel classes.

The chapters and the recipes' evaluations call these on held-out scenes. Each runs the
model in eval mode in batches on the model's device, returns CPU tensors, and leaves the
model's train/eval mode as it found it (a notebook that trains live after a call keeps
training with BatchNorm's batch statistics).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from .timing import Timing, median_time, threads

__all__ = ["evaluating", "detect", "timed_detect", "segment", "predict"]


@contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode inside the block; restore every module's mode on exit.

    Args:
        model (nn.Module): the model to run.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def detect(model: nn.Module, images: Tensor, batch_size: int = 25) -> list[dict[str, Tensor]]:
    """Detections of `model` (run in eval mode) for every image, on the CPU.

    Args:
        model (nn.Module): a detector with torchvision's interface.
        images (Tensor[B, 3, H, W]): the images.
        batch_size (int): images per forward pass.

    Returns:
        list[dict[str, Tensor]]: per image ``"boxes"``, ``"scores"``, ``"labels"`` (and
        ``"masks"`` when the model gives them).
    """
    keep = ("boxes", "scores", "labels", "masks")
    out = []
    with evaluating(model):
        dev = _device_of(model)
        for i in range(0, len(images), batch_size):
            for det in model(images[i:i + batch_size].to(dev)):
                out.append({k: v.cpu() for k, v in det.items() if k in keep})
    return out


def timed_detect(model: nn.Module, images: Tensor, batch_size: int = 25, repeats: int = 3,
                 num_threads: int | None = 1) -> tuple[list[dict[str, Tensor]], Timing]:
    """`detect`, timed the one way the book quotes a detector's speed in every chapter.

    A warm-up on two images, then `repeats` timed passes of ``detect(model, images,
    batch_size)`` (network, decoding, score threshold and NMS), with torch on `num_threads`
    CPU threads and the GPU synchronised around each pass (`cvcourse.timing.median_time`).

    Args:
        model: a detector with the course's interface, on its own device.
        images: ``[N, 3, H, W]`` scenes.
        batch_size: images per forward pass (25 everywhere in the book).
        repeats: timed passes over all `images`, at least 1; the median is kept.
        num_threads: torch CPU threads while timing (1: figures comparable between
            machines and runs); None leaves torch's setting.

    Returns:
        The detections of the first timed pass, and the `Timing` of one pass over `images`
        (``timing.per_second(len(images))`` is the images/s the chapters print).
    """
    device = next(model.parameters()).device
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    passes: list[list[dict[str, Tensor]]] = []
    with contextlib.nullcontext() if num_threads is None else threads(num_threads):
        detect(model, images[:2], batch_size)                  # warm-up: first-call allocations
        timing = median_time(lambda: passes.append(detect(model, images, batch_size)),
                             repeats=repeats, warmup=0, sync=sync)
    return passes[0], timing


@torch.no_grad()
def segment(model: nn.Module, images: Tensor, batch_size: int = 25,
            mask_threshold: float | None = 0.5) -> list[dict[str, Tensor]]:
    """Mask R-CNN's detections for every image, on the CPU.

    Args:
        model (nn.Module): an instance segmenter (``MaskRCNN``).
        images (Tensor[B, 3, H, W]): the images.
        batch_size (int): images per forward pass.
        mask_threshold (float or None): threshold the pasted mask probabilities (the
            default 0.5: 200 scenes of float masks would take hundreds of MB); None keeps them.

    Returns:
        list[dict[str, Tensor]]: per image ``"boxes"``, ``"scores"``, ``"labels"``,
        ``"masks"`` (bool ``[D, H, W]``, or ``[D, 1, H, W]`` probabilities) and ``"roi_masks"``.
    """
    out = []
    with evaluating(model):
        dev = _device_of(model)
        for i in range(0, len(images), batch_size):
            for det in model(images[i:i + batch_size].to(dev)):
                det = {k: v.cpu() for k, v in det.items()}
                if mask_threshold is not None:
                    det["masks"] = det["masks"][:, 0] > mask_threshold          # (D, H, W) bool
                out.append(det)
    return out


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """Class of every pixel (argmax of the scores), computed in eval mode.

    Args:
        model (nn.Module): any network mapping ``[B, 3, H, W]`` to scores ``[B, C, H, W]``.
        images (Tensor[B, 3, H, W] or Tensor[3, H, W]): the images (or one image).
        batch_size (int): images per forward pass.

    Returns:
        Tensor[B, H, W]: int64 classes on the CPU (``[H, W]`` for one image).
    """
    single = images.dim() == 3
    if single:
        images = images[None]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W] or [3, H, W], got {tuple(images.shape)}")
    with evaluating(model):
        dev = _device_of(model)
        out = [model(images[i:i + batch_size].to(dev)).argmax(1).cpu()  # (b, H, W)
               for i in range(0, len(images), batch_size)]
    labels = torch.cat(out)
    return labels[0] if single else labels
