"""Shapes scenes: the procedural, deterministic default data of the course.

One generator, :func:`make_scene`, paints 1..N shapes (circle, square, triangle) on a
varied background and returns every target the course needs: boxes, labels, instance
masks and a semantic mask. :class:`ShapesDataset` presents the same scenes through
several *views* (detection, single object, classification, segmentation).

Two design choices matter for what a network can learn from these scenes:

* **Class is readable from shape only.** Object colours are drawn independently of the
  class, and backgrounds vary (gradients, low-frequency noise, faint stripes or checks),
  so neither colour nor background tells a circle from a square.
* **Every instance is clearly visible.** Objects are painted in order (later ones occlude
  earlier ones); an object is redrawn whenever it would hide too much of an earlier one,
  and its colour is redrawn until it contrasts with what lies under it (the mean of the
  background and earlier objects there) and with the other objects' colours.

Everything is vectorized numpy on pixel-centre coordinate grids: a circle is one
inequality, a (rotated) square or a triangle is an intersection of half-planes.

Taught in book/tasks.ipynb.
"""
from __future__ import annotations

import operator
from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

CLASSES = ("background", "circle", "square", "triangle")
NUM_CLASSES = len(CLASSES)
SPLITS = ("train", "val", "test")
SPLIT_ID = {name: i for i, name in enumerate(SPLITS)}
VIEWS = ("scene", "single", "classification", "segmentation")

MIN_SIZE = 32  # smallest image side make_scene accepts
MAX_OBJECTS = 8  # more would not fit at S = 32 with the visibility rule below
MIN_VISIBLE_FRACTION = 0.4  # of an object's full (unoccluded) area
MIN_VISIBLE_PIXELS = 12
MIN_BACKGROUND_CONTRAST = 0.5  # RGB distance, object colour vs the mean colour under it
MIN_OBJECT_CONTRAST = 0.3  # RGB distance between the colours of any two objects
PIXEL_NOISE = 0.02  # std of the uniform noise added to the finished image
_OBJECT_TRIES, _LAYOUT_TRIES, _COLOUR_TRIES = 50, 20, 30


def object_size_range(size: int) -> tuple[int, int]:
    """Range of object sizes (longest side of the unoccluded box) for an image side.

    10..48 px at 128, scaled with the image side, never below 6 px so that shapes stay
    recognisable (64 -> 6..24, 32 -> 6..12).
    """
    return max(6, round(10 * size / 128)), max(6, round(48 * size / 128))


# ----------------------------------------------------------------------------- background
@lru_cache(maxsize=8)
def _pixel_centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(S, S) x and y coordinates of pixel centres (pixel-edge convention: 0.5, 1.5, ...)."""
    xx, yy = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    xx.flags.writeable = yy.flags.writeable = False  # cached: shared by every call
    return xx, yy


@lru_cache(maxsize=32)
def _upsample_matrix(size: int, grid: int) -> np.ndarray:
    """(size, grid) weights that smoothly interpolate a grid to `size` pixel centres."""
    x = (np.arange(size) + 0.5) * grid / size - 0.5  # pixel centres in grid units
    x = np.clip(x, 0, grid - 1)
    i0 = np.minimum(np.floor(x).astype(int), grid - 2)
    w = x - i0
    w = w * w * (3 - 2 * w)  # smoothstep: no visible kinks at grid lines
    m = np.zeros((size, grid), np.float32)
    m[np.arange(size), i0] = 1 - w
    m[np.arange(size), i0 + 1] = w
    return m


def _wave(kx: float, ky: float, size: int) -> np.ndarray:
    """sin(kx * x + ky * y) at the pixel centres, (S, S) float32.

    A plane wave is separable, exp(i(kx x + ky y)) = exp(i kx x) exp(i ky y), so it is an
    outer product of two length-S vectors: 2S exponentials instead of S^2 sines.
    """
    c = np.arange(size) + 0.5
    return np.outer(np.exp(1j * ky * c), np.exp(1j * kx * c)).imag.astype(np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random background (3, S, S) float32: gradient or low-frequency noise, maybe + texture."""
    base = rng.uniform(0.0, 1.0, 3).astype(np.float32)
    if rng.random() < 0.5:  # linear gradient between two nearby colours
        other = np.clip(base + rng.uniform(-0.4, 0.4, 3), 0, 1).astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        tx, ty = np.cos(angle) * np.arange(size), np.sin(angle) * np.arange(size)  # (S,), (S,)
        t = ty[:, None] + tx[None, :]  # (S, S) projection on the gradient direction
        t = ((t - t.min()) / (t.max() - t.min())).astype(np.float32)  # 0..1
        bg = base[:, None, None] + (other - base)[:, None, None] * t  # (3, S, S)
    else:  # low-frequency noise: a small random grid, smoothly upsampled
        g = int(rng.integers(3, 7))
        grid = np.clip(base[:, None, None] + rng.uniform(-0.3, 0.3, (3, g, g)), 0, 1)  # (3, g, g)
        up = _upsample_matrix(size, g)  # (S, g)
        bg = (up @ grid.astype(np.float32) @ up.T)  # (3, S, S)
    if rng.random() < 0.5:  # low-contrast texture: stripes or checks
        period = max(4.0, rng.uniform(6, 16) * size / 128)  # px; >= 4 keeps it from aliasing
        k = 2 * np.pi / period  # angular frequency
        angle = rng.uniform(0, np.pi)
        kx, ky = k * np.cos(angle), k * np.sin(angle)
        if rng.random() < 0.5:  # stripes: one plane wave
            pattern = _wave(kx, ky, size)
        else:  # checks: the signs of two perpendicular waves
            pattern = np.sign(_wave(kx / 2, ky / 2, size) * _wave(-ky / 2, kx / 2, size))
        amplitude = rng.uniform(0.02, 0.07) * rng.choice([-1.0, 1.0], 3)  # (3,) per channel
        bg += amplitude.astype(np.float32)[:, None, None] * pattern
    return bg


# ------------------------------------------------------------------------------- shapes
def _polygon_mask(vertices: np.ndarray, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Pixels whose centres lie inside a convex polygon: an intersection of half-planes.

    Args:
        vertices: (V, 2) xy in pixel-edge coordinates, in either winding order.
        xx, yy: (S, S) pixel-centre coordinates.
    Returns:
        (S, S) bool mask.
    """
    p = vertices
    e = np.concatenate([p[1:], p[:1]]) - p  # (V, 2) edge vectors
    sign = np.sign(e[0, 0] * e[1, 1] - e[0, 1] * e[1, 0])  # winding: make "inside" one side
    cross = e[:, 0, None, None] * (yy - p[:, 1, None, None]) - e[:, 1, None, None] * (
        xx - p[:, 0, None, None]
    )  # (V, S, S)
    return np.all(sign * cross >= 0, axis=0)


def _shape_outline(rng: np.random.Generator, label: int, d: float) -> np.ndarray | float:
    """A random circle radius, or polygon vertices (V, 2) centred on their box, of extent d."""
    if CLASSES[label] == "circle":
        return d / 2
    if CLASSES[label] == "square":
        angles, radii = np.arange(4) * np.pi / 2, np.ones(4)
    else:  # triangle: an equilateral template with jittered vertex angles and radii
        angles, radii = np.arange(3) * 2 * np.pi / 3, rng.uniform(0.7, 1.0, 3)
        angles = angles + rng.uniform(-0.35, 0.35, 3)
    angles = angles + rng.uniform(0, 2 * np.pi)
    v = radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (V, 2)
    v = v - (v.min(0) + v.max(0)) / 2  # centre the box on the origin
    return v * d / np.max(v.max(0) - v.min(0))  # longest side of its box = d


def _sample_object(rng, size, xx, yy, size_range):
    """Draw one shape, its size uniform in `size_range`, at a random place fully inside the image.

    Returns:
        label, the object's window (a pair of slices: its box rounded outwards) and
        its full (unoccluded) mask inside that window, (h, w) bool.
    """
    label = int(rng.integers(1, NUM_CLASSES))
    d = rng.uniform(*size_range)
    outline = _shape_outline(rng, label, d)
    c = rng.uniform(d / 2, size - d / 2, 2)  # box centre, keeps the box inside the image
    (x0, y0), (x1, y1) = np.floor(c - d / 2).astype(int), np.ceil(c + d / 2).astype(int)
    win = np.s_[y0:y1, x0:x1]  # rasterize only here: about d x d pixels, not S x S
    if np.isscalar(outline):
        mask = (xx[win] - c[0]) ** 2 + (yy[win] - c[1]) ** 2 <= outline**2
    else:
        mask = _polygon_mask(outline + c, xx[win], yy[win])
    return label, win, mask


def _layout(rng, n, size, xx, yy, size_range):
    """Place n objects so that every one keeps enough visible pixels.

    Object k is painted over objects 0..k-1; it is redrawn if it would leave any of them
    with fewer than max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * full area) pixels.

    Returns:
        labels (n,), visible masks (n, S, S), and per object its window and full mask
        inside the window (see :func:`_sample_object`), all in painting order.
    """
    for _ in range(_LAYOUT_TRIES):
        labels, pieces = [], []
        visible = np.zeros((n, size, size), bool)  # what is left of each placed object
        left, need = np.zeros(n, int), np.zeros(n)  # visible pixels now / to keep
        for k in range(n):
            for _ in range(_OBJECT_TRIES):
                label, win, mask = _sample_object(rng, size, xx, yy, size_range)
                area = np.count_nonzero(mask)
                hidden = np.count_nonzero(visible[:k][:, win[0], win[1]] & mask, axis=(1, 2))  # (k,)
                if area >= MIN_VISIBLE_PIXELS and np.all(left[:k] - hidden >= need[:k]):
                    break
            else:
                break  # this object does not fit: start the layout again
            visible[:k][:, win[0], win[1]] &= ~mask
            visible[k][win] = mask
            left[:k] -= hidden
            left[k], need[k] = area, max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * area)
            labels.append(label)
            pieces.append((win, mask))
        if len(labels) == n:
            return np.array(labels, dtype=np.int64), visible, pieces
    raise RuntimeError(f"could not place {n} visible objects in a {size}x{size} image")


def _colour(rng, under, others):
    """An object colour far enough from `under` (3,) and from every row of `others` (k, 3)."""
    best, best_margin = None, -np.inf
    for _ in range(_COLOUR_TRIES):
        colour = rng.uniform(0.0, 1.0, 3)
        margin = np.linalg.norm(colour - under) - MIN_BACKGROUND_CONTRAST
        if len(others):
            margin = min(margin, np.linalg.norm(others - colour, axis=1).min() - MIN_OBJECT_CONTRAST)
        if margin >= 0:
            return colour
        if margin > best_margin:  # keep the best try in case none passes
            best, best_margin = colour, margin
    return best


# -------------------------------------------------------------------------------- scene
def _as_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got bool")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None


def _check_scene_args(index, split, size, min_objects, max_objects, seed):
    if split not in SPLIT_ID:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for name, value in (("index", index), ("size", size), ("min_objects", min_objects),
                        ("max_objects", max_objects), ("seed", seed)):
        _as_int(name, value)
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE}, got {size}")
    if not 0 <= min_objects <= max_objects <= MAX_OBJECTS:
        raise ValueError(
            "need 0 <= min_objects <= max_objects <= "
            f"{MAX_OBJECTS}, got min_objects={min_objects}, max_objects={max_objects}"
        )


def _check_object_size(object_size, size: int) -> tuple[int, int]:
    if object_size is None:
        return object_size_range(size)
    try:
        lo, hi = (_as_int("object_size", v) for v in object_size)
    except (TypeError, ValueError):
        raise TypeError(f"object_size must be a pair of ints (lo, hi), got {object_size!r}") from None
    if not 6 <= lo <= hi <= size // 2:
        raise ValueError(f"object_size must satisfy 6 <= lo <= hi <= size // 2 = {size // 2}, got {object_size!r}")
    return lo, hi


def masks_to_boxes_xyxy(masks) -> torch.Tensor:
    """Tight boxes of boolean masks in the pixel-edge convention.

    Args:
        masks: (N, H, W) bool tensor (any device) or numpy array, every mask non-empty.
    Returns:
        (N, 4) float32 tensor, on the masks' device, xyxy with x1 = min column, x2 = max column + 1 (same for y): a
        one-pixel object has width 1. ``torchvision.ops.masks_to_boxes`` returns the max
        column itself (x2 = max column), i.e. ours = theirs + [0, 0, 1, 1].
    """
    device = masks.device if isinstance(masks, torch.Tensor) else None
    if device is not None:
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if masks.shape[0] and not masks.any(axis=(1, 2)).all():
        raise ValueError("masks must all be non-empty to have a box")
    _, h, w = masks.shape
    cols, rows = masks.any(1), masks.any(2)  # (N, W), (N, H)
    x1, x2 = cols.argmax(1), w - cols[:, ::-1].argmax(1)
    y1, y2 = rows.argmax(1), h - rows[:, ::-1].argmax(1)
    boxes = torch.from_numpy(np.stack([x1, y1, x2, y2], axis=1).astype(np.float32))  # (N, 4)
    return boxes if device is None else boxes.to(device)


def make_scene(index: int, split: str = "train", size: int = 128, min_objects: int = 1,
               max_objects: int = 4, seed: int = 0, object_size: tuple[int, int] | None = None) -> dict:
    """Generate one shapes scene, deterministically from (split, seed, index).

    The random stream is ``np.random.default_rng((SPLIT_ID[split], seed, index))``, so the
    same arguments give a bit-identical scene and the splits never share one.

    Args:
        index: scene number, >= 0.
        split: one of ``SPLITS`` ("train", "val", "test").
        size: image side S in pixels, >= 32.
        min_objects, max_objects: the object count is uniform in this range (0..8).
        seed: >= 0, selects another family of scenes.
        object_size: (lo, hi) range of object sizes in pixels (longest side of the
          unoccluded box); None means :func:`object_size_range` of `size`.
    Returns:
        dict with
          ``"image"``: float32 (3, S, S) in [0, 1];
          ``"semantic"``: int64 (S, S), 0 = background, else the class of the visible object;
          ``"boxes"``: float32 (N, 4) xyxy, tight on the visible pixels, pixel-edge
          convention (x1 = min column, x2 = max column + 1, same for y; note that
          ``torchvision.ops.masks_to_boxes`` returns x2 = max column instead);
          ``"labels"``: int64 (N,) in 1..3 (index into ``CLASSES``);
          ``"masks"``: bool (N, S, S), visible pixels of each instance after occlusion.
        Instances are in painting order (the last one is on top).
    """
    _check_scene_args(index, split, size, min_objects, max_objects, seed)
    size_range = _check_object_size(object_size, size)
    rng = np.random.default_rng((SPLIT_ID[split], seed, index))
    xx, yy = _pixel_centres(size)  # (S, S) each
    image = _background(rng, size)  # (3, S, S) float32
    n = int(rng.integers(min_objects, max_objects + 1))
    labels, masks, pieces = _layout(rng, n, size, xx, yy, size_range)  # (N,), (N, S, S), N x (window, mask)
    semantic = np.zeros((size, size), np.int64)
    colours = np.zeros((n, 3))
    for k, (label, (win, mask)) in enumerate(zip(labels, pieces)):  # later objects occlude
        patch = image[:, win[0], win[1]]  # (3, h, w) view into the image
        colours[k] = _colour(rng, patch[:, mask].mean(axis=1), colours[:k])
        np.copyto(patch, colours[k][:, None, None], where=mask)
        semantic[win][mask] = label
    noise = rng.random(image.shape, dtype=np.float32) - 0.5  # uniform, std 1/sqrt(12)
    image += (PIXEL_NOISE * 12**0.5) * noise
    return {
        "image": torch.from_numpy(np.clip(image, 0, 1, out=image)),
        "semantic": torch.from_numpy(semantic),
        "boxes": masks_to_boxes_xyxy(masks),
        "labels": torch.from_numpy(labels),
        "masks": torch.from_numpy(masks),
    }


# ------------------------------------------------------------------------------ dataset
class ShapesDataset(Dataset):
    """Shapes scenes as a ``torch.utils.data.Dataset``; item i is ``make_scene(i, ...)``.

    Args:
        split: one of ``SPLITS``.
        length: number of items.
        size: image side S.
        view: how an item is presented:
          ``"scene"``: ``(image, {"boxes", "labels", "masks", "semantic"})``, torchvision's
          detection target format plus the semantic mask;
          ``"single"``: ``(image, {"boxes": (1, 4), "labels": (1,)})``, one object per scene;
          ``"classification"``: ``(image, label)`` with label an int64 scalar tensor, one object;
          ``"segmentation"``: ``(image, semantic)`` with semantic int64 (S, S).
        min_objects, max_objects: object-count range; ``max_objects=None`` means 4 for the
          "scene"/"segmentation" views and 1 for "single"/"classification", which require
          exactly one object.
        seed: scene family, see :func:`make_scene`.
        object_size: object size range, see :func:`make_scene`.
    """

    def __init__(self, split: str = "train", length: int = 1000, size: int = 128,
                 view: str = "scene", min_objects: int = 1, max_objects: int | None = None,
                 seed: int = 0, object_size: tuple[int, int] | None = None):
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        one_object = view in ("single", "classification")
        if max_objects is None:
            max_objects = 1 if one_object else 4
        if one_object and (min_objects, max_objects) != (1, 1):
            raise ValueError(
                f"view={view!r} needs exactly one object per scene (min_objects=max_objects=1), "
                f"got min_objects={min_objects}, max_objects={max_objects}"
            )
        if _as_int("length", length) < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        _check_scene_args(0, split, size, min_objects, max_objects, seed)
        self.object_size = _check_object_size(object_size, size)
        self.split, self.length, self.size, self.view = split, length, size, view
        self.min_objects, self.max_objects, self.seed = min_objects, max_objects, seed

    def __len__(self) -> int:
        return self.length

    def scene(self, i: int) -> dict:
        """The full :func:`make_scene` dict behind item i, whatever the view."""
        i = operator.index(i)
        if not 0 <= i < self.length:
            raise IndexError(f"index {i} out of range for a ShapesDataset of length {self.length}")
        return make_scene(i, self.split, self.size, self.min_objects, self.max_objects, self.seed,
                          self.object_size)

    def __getitem__(self, i: int):
        s = self.scene(i)
        if self.view == "scene":
            return s["image"], {k: s[k] for k in ("boxes", "labels", "masks", "semantic")}
        if self.view == "single":
            return s["image"], {"boxes": s["boxes"], "labels": s["labels"]}
        if self.view == "classification":
            return s["image"], s["labels"][0]  # int64 scalar tensor
        return s["image"], s["semantic"]

    def __repr__(self) -> str:
        return (f"ShapesDataset(split={self.split!r}, length={self.length}, size={self.size}, "
                f"view={self.view!r}, objects={self.min_objects}..{self.max_objects}, seed={self.seed})")


def detection_collate(batch):
    """Collate ``(image, target)`` pairs for detection: stack images, keep targets a list.

    Args:
        batch: sequence of ``(image (3, S, S), target dict)``, e.g. from the "scene" or
          "single" views, where targets differ in their number of objects.
    Returns:
        images (B, 3, S, S) and the list of B target dicts.
    """
    if len(batch) == 0:
        raise ValueError("batch must contain at least one (image, target) pair, got an empty batch")
    images, targets = zip(*batch)
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise ValueError(f"images in a batch must share one shape to be stacked, got {sorted(shapes)}")
    return torch.stack(images), list(targets)
