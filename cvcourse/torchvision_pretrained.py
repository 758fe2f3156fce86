"""Torchvision models pretrained on real data, run on the course's photographs with its own tools.

The chapters train small models on shapes scenes. This module connects them to real vision:
`load_torchvision` builds a torchvision model pretrained on ImageNet or COCO (downloaded once
into torch hub's cache, ``$TORCH_HOME/hub/checkpoints``), and the functions below run it on
the photographs of `cvcourse.data.photos`: detections scored with `cvcourse.metrics`,
drawings made with `cvcourse.viz`, explanations computed with `cvcourse.interpret`.

Where the weights cannot be downloaded (no internet, or ``CVCOURSE_DOWNLOADS=0`` in the
environment), `load_torchvision` raises `WeightsUnavailable`, whose message is the one
sentence a chapter prints before it skips the section; nothing is written to stderr.
``weights=None`` builds the same architecture with random weights (the tests use it).

Inputs: torchvision's classification and segmentation models expect images normalised with
ImageNet's mean and standard deviation; `pixel_input` wraps one so that it takes [0, 1]
pixels, and gradients are then taken with respect to the pixels. Detection models take
[0, 1] images and normalise (and resize) them inside, in their ``transform``.

Taught in book/seg_fcn.ipynb, book/ss_tradeoffs.ipynb, book/inst_mask_rcnn.ipynb,
book/int_filters.ipynb, book/int_guided_backprop.ipynb, book/int_cam.ipynb and book/int_vit.ipynb.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import socket
import time
from collections.abc import Sequence
from http.client import HTTPException
from urllib.parse import urlparse

import torch
import torch.nn.functional as F
import torchvision
from matplotlib.figure import Figure
from torch import Tensor, nn

from . import metrics, viz
from .data import photos
from .inference import detect, evaluating
from .interpret._common import model_device

# The models the chapters run, with the builder arguments that pretrained weights imply (so
# that weights=None gives exactly the architecture the weights are loaded into).
MODELS = {
    "fcn_resnet50": {"aux_loss": True},
    "deeplabv3_resnet50": {"aux_loss": True},
    "fasterrcnn_resnet50_fpn_v2": {},
    "retinanet_resnet50_fpn_v2": {},
    "ssd300_vgg16": {},
    "maskrcnn_resnet50_fpn_v2": {},
    "resnet50": {},
    "alexnet": {},
    "vit_b_16": {},
}
# Builder arguments that keep CPU inference to about a second a photo. The published models
# resize images to 800 px (shorter side) and keep 1000 region proposals; objects in our
# photos are large, so a smaller input and fewer proposals are enough to show the models.
CPU_KWARGS = {
    "fasterrcnn_resnet50_fpn_v2": {"min_size": 384, "max_size": 640, "rpn_post_nms_top_n_test": 100},
    "retinanet_resnet50_fpn_v2": {"min_size": 384, "max_size": 640},
    "ssd300_vgg16": {},
    "maskrcnn_resnet50_fpn_v2": {"min_size": 384, "max_size": 640, "rpn_post_nms_top_n_test": 100,
                                 "box_detections_per_img": 20},
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OFFLINE = ("The pretrained weights could not be downloaded here (no internet), so this section is "
           "skipped; run it in Colab to see the output.")
DISABLED = ("Downloads of pretrained weights are turned off here (CVCOURSE_DOWNLOADS=0), so this "
            "section is skipped; run it in Colab to see the output.")


class WeightsUnavailable(RuntimeError):
    """The pretrained weights could not be downloaded; ``str(error)`` is one plain sentence."""


def _check_name(name) -> str:
    if not isinstance(name, str) or name not in MODELS:
        raise ValueError(f"name must be one of {sorted(MODELS)}, got {name!r}")
    return name


def weights_enum(name: str, weights="DEFAULT"):
    """The torchvision weights entry `weights` ("DEFAULT" or a name such as "COCO_V1") of model `name`."""
    enum = torchvision.models.get_model_weights(_check_name(name))
    try:
        return enum.verify(weights)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"weights must be None, 'DEFAULT' or one of {[w.name for w in enum]} for "
                         f"{name}, got {weights!r}") from None


def categories(name: str) -> list[str]:
    """The class names of model `name`'s default weights, by output index (known offline)."""
    return list(weights_enum(name).meta["categories"])


def downloads_enabled() -> bool:
    """False when the environment sets ``CVCOURSE_DOWNLOADS=0`` (the sections then skip)."""
    return os.environ.get("CVCOURSE_DOWNLOADS", "1").strip() != "0"


def cached_file(weights) -> str:
    """Where torch hub keeps the file of a weights entry: ``$TORCH_HOME/hub/checkpoints/...``."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(weights.url).path))


def reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether the host of `url` accepts a connection within `timeout` seconds (True behind a
    proxy, which urllib uses and a plain socket cannot)."""
    if any(os.environ.get(v) for v in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")):
        return True
    try:
        socket.create_connection((urlparse(url).hostname, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_torchvision(name: str, weights="DEFAULT", **kwargs) -> nn.Module:
    """A torchvision model, pretrained on real data, in eval mode.

    Args:
        name: one of `MODELS`.
        weights: "DEFAULT" (or a weights name of that model) downloads the pretrained weights
            into torch hub's cache (once) and loads them; None gives random weights.
        **kwargs: passed to the torchvision builder (e.g. `CPU_KWARGS[name]`).

    Raises:
        ValueError: unknown `name` or `weights`.
        WeightsUnavailable: the weights are not cached and cannot be downloaded here.
    """
    builder = torchvision.models.get_model_builder(_check_name(name))
    kwargs = {**MODELS[name], **kwargs}
    if weights is None:
        if "weights_backbone" in inspect.signature(builder).parameters:
            kwargs["weights_backbone"] = None        # no download for the backbone either
        return builder(weights=None, **kwargs).eval()
    entry = weights_enum(name, weights)
    if not os.path.exists(cached_file(entry)):
        if not downloads_enabled():
            raise WeightsUnavailable(DISABLED)
        if not reachable(entry.url):
            raise WeightsUnavailable(OFFLINE)
    quiet = io.StringIO()   # torch hub announces "Downloading: ..." on stdout or stderr
    try:
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            return builder(weights=entry, progress=False, **kwargs).eval()
    except (OSError, HTTPException) as error:   # URLError, socket errors and timeouts are OSErrors
        raise WeightsUnavailable(OFFLINE) from error


class ImageNetInput(nn.Module):
    """`net` on [0, 1] pixels: normalises with ImageNet's mean and std, then runs `net`."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor):
        return self.net((x - self.mean) / self.std)                     # x: (B, 3, H, W) in [0, 1]


class ViTWithAttention(ImageNetInput):
    """A torchvision ``VisionTransformer`` on [0, 1] pixels that can return its attention weights,
    as `cvcourse.interpret.attention_maps` expects: ``forward(x, return_attention=True)`` gives
    ``(logits, [L tensors (B, heads, T, T)])``. Torchvision's encoder blocks call their
    ``nn.MultiheadAttention`` with ``need_weights=False``; a pre-hook asks for the weights of
    every head and a hook keeps them (the output is unchanged)."""

    def forward(self, x: Tensor, return_attention: bool = False):
        if not return_attention:
            return super().forward(x)
        kept: list[Tensor] = []

        def ask(module, args, kwargs):
            return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

        def keep(module, args, output):
            kept.append(output[1])                                    # (B, heads, T, T)

        handles = []
        try:
            for block in self.net.encoder.layers:
                handles.append(block.self_attention.register_forward_pre_hook(ask, with_kwargs=True))
                handles.append(block.self_attention.register_forward_hook(keep))
            logits = super().forward(x)
        finally:
            for h in handles:
                h.remove()
        return logits, kept


def pixel_input(model: nn.Module) -> ImageNetInput:
    """`model` (a torchvision classifier, segmenter or ViT) wrapped to take [0, 1] pixels; its
    layers are then named ``"net.<name>"`` (``"net.layer4"``)."""
    if isinstance(model, torchvision.models.VisionTransformer):
        return ViTWithAttention(model).eval()
    return ImageNetInput(model).eval()


def resize_photo(name: str, size: int, crop: bool = False) -> tuple[Tensor, Tensor]:
    """A photo with its shorter side resized to `size` (and centre-cropped to ``size × size`` with
    `crop`), and a mask of its annotated boxes on the same pixels.

    Returns:
        image ``(3, h, w)`` in [0, 1] and box mask ``(h, w)`` bool (the union of the boxes).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ValueError(f"size must be an int >= 16 (pixels), got {size!r}")
    image = photos.load(name)                                           # (3, H, W)
    mask = torch.zeros(image.shape[1:])                                 # (H, W)
    for x1, y1, x2, y2 in photos.targets(name)["boxes"].round().long().tolist():
        mask[y1:y2, x1:x2] = 1.0
    H, W = image.shape[1:]
    h, w = (size, round(W * size / H)) if H <= W else (round(H * size / W), size)
    image = F.interpolate(image[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0]
    mask = F.interpolate(mask[None, None], size=(h, w), mode="nearest")[0, 0] > 0.5
    if crop:
        top, left = (h - size) // 2, (w - size) // 2
        image, mask = image[:, top:top + size, left:left + size], mask[top:top + size, left:left + size]
    return image.clamp(0, 1).contiguous(), mask


def photo_batch(names: Sequence[str], size: int = 224) -> tuple[Tensor, Tensor]:
    """Photos for an ImageNet classifier: shorter side resized to `size`, centre-cropped to
    ``size × size`` (torchvision's evaluation resizes a little larger first; cropping at the
    shorter side keeps more of the object). Images ``(B, 3, size, size)`` in [0, 1] and their
    box masks ``(B, size, size)`` bool."""
    pairs = [resize_photo(n, size, crop=True) for n in names]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])


def top_classes(model: nn.Module, images: Tensor, names: Sequence[str], k: int = 3) -> list[list[tuple]]:
    """The `k` most probable classes of a pixel-input classifier, per image, most probable first:
    ``[(class index, name, probability), ...]`` (an index, since ImageNet repeats two names)."""
    with evaluating(model), torch.no_grad():
        probs = model(images.to(model_device(model, images.device))).softmax(1).cpu()   # (B, classes)
    top = probs.topk(k, dim=1)
    return [[(i, names[i], p) for p, i in zip(ps.tolist(), idx.tolist())] for ps, idx in zip(*top)]


def segment_photos(model: nn.Module, names: Sequence[str], size: int = 320) -> list[dict]:
    """Per-pixel classes of a torchvision segmentation model on photos (shorter side `size`).

    Returns:
        per photo ``{"name", "image": (3, h, w), "labels": (h, w) int64 class indices}``.
    """
    net = pixel_input(model).to(model_device(model, torch.device("cpu")))
    out = []
    with evaluating(net), torch.no_grad():
        for name in names:
            image, _ = resize_photo(name, size)
            scores = net(image[None].to(net.mean.device))["out"]        # (1, classes, h, w)
            out.append({"name": name, "image": image, "labels": scores.argmax(1)[0].cpu()})
    return out


def _compact(labels: Tensor, class_names: Sequence[str], keep: int) -> tuple[Tensor, list[str]]:
    """Relabel the classes present as 0..n-1 (background first, then by area), the classes
    beyond the `keep` largest merged into "other", so that the course's colours suffice."""
    ids, counts = labels.unique(return_counts=True)
    order = [int(i) for i in ids[counts.argsort(descending=True)] if i != 0]
    present = [0] + order[:keep - 2] + ([-1] if len(order) > keep - 2 else [])
    lut = torch.full((len(class_names),), len(present) - 1, dtype=torch.long)
    for new, old in enumerate(present):
        if old >= 0:
            lut[old] = new
    return lut[labels], [class_names[i] if i >= 0 else "other" for i in present]


def segmentation_figure(results: list[dict], class_names: Sequence[str], size: float = 3.0) -> Figure:
    """Each photo beside its per-pixel classes (`segment_photos`), in the course's class colours."""
    fig, axes = viz.subplots(2, len(results), size=size)
    for j, r in enumerate(results):
        viz.show_image(r["image"], ax=axes[0, j], title=r["name"])
        labels, shown = _compact(r["labels"], class_names, keep=len(viz.CLASS_COLORS))
        viz.show_semantic(labels, shown, ax=axes[1, j], title="per-pixel classes")
    return fig


def detect_photos(model: nn.Module, names: Sequence[str]) -> tuple[list[dict], float]:
    """A torchvision detector's detections on whole photos (it resizes them itself).

    Returns:
        per photo ``{"boxes", "scores", "labels"[, "masks"]}`` on the CPU, in the photo's
        pixels, and the mean seconds per photo (the detector alone: the photos are decoded
        before the clock starts).
    """
    images = [photos.load(name) for name in names]          # sizes differ: one photo per pass
    start = time.perf_counter()
    out = [detect(model, image[None])[0] for image in images]
    return out, (time.perf_counter() - start) / max(len(names), 1)


def score_photos(preds: list[dict], names: Sequence[str]) -> dict[str, float]:
    """COCO box mAP of `preds` against the photos' hand-made boxes (`cvcourse.metrics`)."""
    targets = [{k: v for k, v in photos.targets(n).items() if k != "names"} for n in names]
    boxes = [{k: p[k] for k in ("boxes", "scores", "labels")} for p in preds]
    return metrics.mean_average_precision(boxes, targets)


def detections_figure(names: Sequence[str], preds: list[dict], class_names: Sequence[str],
                      score_threshold: float = 0.5, size: float = 3.0, masks: bool = False,
                      title: str | None = None) -> Figure:
    """Each photo with the detections scoring at least `score_threshold` (solid, with class and
    score; with `masks`, their masks too) and the hand-made boxes (dashed grey), under `title`."""
    fig, axes = viz.subplots(1, len(names), size=size)
    if title:
        fig.suptitle(title, fontsize=10)
    for ax, name, p in zip(axes[0], names, preds):
        keep = p["scores"] >= score_threshold
        image = photos.load(name)
        if masks:
            viz.overlay_masks(image, p["masks"][keep], ax=ax, title=name)
        else:
            viz.show_image(image, ax=ax, title=name)
        for box in photos.targets(name)["boxes"]:
            viz.draw_box(ax, box, "#bbbbbb", linestyle="--")
        viz.draw_boxes(None, p["boxes"][keep], labels=p["labels"][keep], scores=p["scores"][keep],
                       class_names=class_names, ax=ax)
    return fig
