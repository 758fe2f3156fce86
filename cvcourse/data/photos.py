"""Real photographs with hand-made box annotations, from scikit-image (no download).

scikit-image ships a few photographs inside its package (``skimage.data``); each one's
source and license below are quoted from its docstring. The boxes were drawn by hand on
each image and checked by drawing them back on it. Boxes are xyxy in the pixel-edge
convention the rest of the package uses (x1 = left edge of the first pixel, x2 = right
edge of the last one), labels are COCO class names, so a detector pretrained on COCO can
be scored on them with `cvcourse.metrics.mean_average_precision`.

- `names`: the photos, in a fixed order.
- `info`: one photo's source, license, description, size and objects.
- `load`: the image as float32 (3, H, W) in [0, 1].
- `targets`: its objects in torchvision's detection target format.
- `load_resized`: a smaller copy and its scaled targets (for slow pixel-level methods).
- `masks`: instance masks rasterised from the hand-drawn polygons (photos that have them).
- `scene`: a photo with polygons as a shapes-style scene (image, boxes, labels, masks,
  semantic map), for the tasks chapter's figure.
- `faces`: annotated face boxes (not a COCO class; for the face-cascade chapter).
- `photos_figure`: every photo with its boxes.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from matplotlib.figure import Figure

# COCO category ids (the 91-id numbering that pycocotools and torchvision's COCO
# detectors use) of the classes annotated below.
COCO_IDS = {"person": 1, "bicycle": 2, "motorcycle": 4, "bench": 15, "cat": 17, "cup": 47,
            "spoon": 50, "clock": 85}

_PHOTOS = {
    "astronaut": {
        "loader": "astronaut",
        "source": "scikit-image, skimage.data.astronaut(): Eileen Collins, from the NASA Great "
                  "Images database (https://flic.kr/p/r9qvLn)",
        "license": "No known copyright restrictions, released into the public domain.",
        "description": "Portrait of the astronaut Eileen Collins in her flight suit, holding "
                       "her helmet; a flag and a space shuttle model behind her.",
        "objects": [{"label": "person", "box": [27, 21, 376, 512]}],
        # Not a COCO class: the face the cascade chapter detects, hairline to chin.
        "faces": [[171, 70, 271, 170]],
    },
    "chelsea": {
        "loader": "chelsea",
        "source": "scikit-image, skimage.data.chelsea(): Chelsea the cat, photographed by "
                  "Stefan van der Walt",
        "license": "No copyright restrictions.  CC0 by the photographer (Stefan van der Walt).",
        "description": "Close-up of a tabby cat's face that fills most of the frame.",
        "objects": [{"label": "cat", "box": [0, 0, 400, 300]}],
    },
    "coffee": {
        "loader": "coffee",
        "source": "scikit-image, skimage.data.coffee(): courtesy of Pikolo Espresso Bar, "
                  "photographed by Rachel Michetti",
        "license": "No copyright restrictions.  CC0 by the photographer (Rachel Michetti).",
        "description": "An espresso cup on a saucer with a spoon, on a wooden table.",
        # Polygons (x, y) in pixels, drawn by hand; the spoon lies in front of the cup.
        "objects": [{"label": "cup", "box": [172, 17, 409, 305],
                     "polygon": [[172, 85], [180, 50], [205, 30], [250, 18], [300, 17],
                                 [350, 24], [385, 40], [405, 65], [409, 95], [400, 140],
                                 [385, 180], [370, 215], [350, 240], [320, 255], [285, 262],
                                 [265, 262], [258, 290], [240, 300], [215, 305], [205, 290],
                                 [210, 260], [225, 238], [240, 232], [212, 222], [195, 195],
                                 [185, 160], [176, 120]]},
                    {"label": "spoon", "box": [326, 67, 426, 324],
                     "polygon": [[405, 72], [415, 67], [422, 72], [420, 90], [400, 150],
                                 [388, 200], [385, 235], [398, 255], [405, 280], [400, 305],
                                 [385, 320], [360, 324], [340, 315], [328, 295], [330, 265],
                                 [345, 245], [368, 235], [375, 200], [385, 150], [398, 95]]}],
    },
    "camera": {
        "loader": "camera",
        "source": "scikit-image, skimage.data.camera(): the 'cameraman' image, photographed "
                  "by Lav Varshney",
        "license": "No copyright restrictions. CC0 by the photographer (Lav Varshney).",
        "description": "Grey-level photograph of a man filming with a camera on a tripod, "
                       "on a lawn in front of buildings.",
        "objects": [{"label": "person", "box": [0, 63, 332, 512]}],
    },
    "clock": {
        "loader": "clock",
        "source": "scikit-image, skimage.data.clock(): photographed by Stefan van der Walt",
        "license": "Released into the public domain by the photographer (Stefan van der Walt).",
        "description": "Grey-level photograph of a wall clock, blurred by a horizontal "
                       "motion of the camera.",
        "objects": [{"label": "clock", "box": [142, 93, 284, 214]}],
    },
    "motorcycle": {
        "loader": "stereo_motorcycle",
        "source": "scikit-image, skimage.data.stereo_motorcycle() (left image): Middlebury "
                  "2014 stereo benchmark, Scharstein et al., GCPR 2014, down-sampled by 4 "
                  "(http://vision.middlebury.edu/stereo/data/scenes2014/)",
        # Looked for in scikit-image 0.26: the stereo_motorcycle docstring names the
        # dataset's authors and paper only; skimage/data/README.txt says nothing on
        # licenses; the package's LICENSE.txt (BSD-3-Clause) lists no data files.
        "license": "Not stated: the scikit-image docstring credits the Middlebury 2014 "
                   "stereo benchmark (Nera Nesic, Porter Westling, Xi Wang, York Kitajima, "
                   "Greg Krathwohl and Daniel Scharstein, Middlebury College) but gives no "
                   "license, and neither skimage/data/README.txt nor scikit-image's "
                   "LICENSE.txt (BSD-3-Clause, for its code) covers the image.",
        "description": "A red motorcycle in a garage, with a wooden bench behind it and part "
                       "of a bicycle, mostly hidden behind the bench, at the left edge.",
        "objects": [{"label": "motorcycle", "box": [92, 38, 685, 449]},
                    {"label": "bench", "box": [43, 104, 283, 313]},
                    {"label": "bicycle", "box": [0, 112, 116, 229]}],
    },
}
# (height, width) of each photo, as scikit-image 0.26 ships it.
_SIZES = {"astronaut": (512, 512), "chelsea": (300, 451), "coffee": (400, 600),
          "camera": (512, 512), "clock": (300, 400), "motorcycle": (500, 741)}


def names() -> list[str]:
    """The names of the photos, in a fixed order."""
    return list(_PHOTOS)


def _check_name(name) -> str:
    if not isinstance(name, str) or name not in _PHOTOS:
        raise ValueError(f"name must be one of {names()}, got {name!r}")
    return name


def info(name: str) -> dict:
    """Source, license, description, size and objects of one photo (a copy).

    Args:
        name: one of `names()`.

    Returns:
        dict with "name", "source", "license" (quoted from the scikit-image docstring),
        "description", "size" ``(height, width)`` and "objects": a list of
        ``{"label": COCO class name, "box": [x1, y1, x2, y2]}`` in pixels.

    Raises:
        ValueError: `name` is not one of `names()`.
    """
    entry = _PHOTOS[_check_name(name)]
    out = {k: copy.deepcopy(v) for k, v in entry.items() if k != "loader"}
    return {"name": name, **out, "size": _SIZES[name]}


def _array(name: str) -> np.ndarray:
    import skimage.data  # imported here: it takes a moment

    loader = getattr(skimage.data, _PHOTOS[name]["loader"])
    image = loader()
    return image[0] if isinstance(image, tuple) else image   # stereo pair: the left image


def load(name: str) -> torch.Tensor:
    """One photo as float32 (3, H, W) in [0, 1]; grey photos are repeated over 3 channels.

    Args:
        name: one of `names()`.

    Raises:
        ValueError: `name` is not one of `names()`.
    """
    array = _array(_check_name(name))                          # (H, W) or (H, W, 3) uint8
    image = torch.from_numpy(np.ascontiguousarray(array)).float() / 255.0
    if image.ndim == 2:
        image = image.unsqueeze(0).expand(3, -1, -1)            # (3, H, W)
    else:
        image = image.permute(2, 0, 1)                          # (3, H, W)
    return image.contiguous()


def targets(name: str) -> dict:
    """One photo's objects in torchvision's detection target format.

    Args:
        name: one of `names()`.

    Returns:
        dict with "boxes" float32 (N, 4) xyxy, "labels" int64 (N,) COCO category ids
        (`COCO_IDS`) and "names": the N COCO class names.

    Raises:
        ValueError: `name` is not one of `names()`.
    """
    objects = _PHOTOS[_check_name(name)]["objects"]
    boxes = torch.tensor([o["box"] for o in objects], dtype=torch.float32).reshape(-1, 4)  # (N, 4)
    labels = torch.tensor([COCO_IDS[o["label"]] for o in objects], dtype=torch.int64)     # (N,)
    return {"boxes": boxes, "labels": labels, "names": [o["label"] for o in objects]}


def load_resized(name: str, max_side: int) -> tuple[torch.Tensor, dict]:
    """A photo shrunk so that its longer side is `max_side` pixels, with its targets scaled.

    Slow pixel-level methods (selective search) run on the small image in a few seconds.
    The image is resized with antialiased bilinear interpolation; the boxes are multiplied
    by the same factor per axis (new size / old size).

    Args:
        name: one of `names()`.
        max_side: the longer side of the result, in pixels (a positive int).

    Returns:
        (image float32 (3, h, w) in [0, 1], targets as `targets(name)` with scaled "boxes").
    """
    import torch.nn.functional as F

    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 1:
        raise ValueError(f"max_side must be a positive int, got {max_side!r}")
    image = load(name)                                                  # (3, H, W)
    h, w = image.shape[1:]
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.interpolate(image[None], size=size, mode="bilinear", antialias=True,
                          align_corners=False)[0].clamp(0, 1)          # (3, h, w)
    t = targets(name)
    factor = torch.tensor([size[1] / w, size[0] / h] * 2)              # x, y, x, y
    return small.contiguous(), {**t, "boxes": t["boxes"] * factor}


def has_masks(name: str) -> bool:
    """Whether every object of the photo has a hand-drawn polygon (so `masks` works)."""
    return all("polygon" in o for o in _PHOTOS[_check_name(name)]["objects"])


def masks(name: str) -> torch.Tensor:
    """Instance masks bool (N, H, W) of a photo's objects, rasterised from their polygons.

    A pixel belongs to a polygon when its centre lies inside it (vertices are in the
    pixel-edge convention of the boxes, so pixel ``j`` has its centre at ``j + 0.5``). Objects are listed back to
    front: where two polygons overlap, the pixel goes to the later object only, so the masks
    hold the *visible* pixels and never overlap (as in the shapes scenes).

    Args:
        name: one of `names()` for which `has_masks(name)` is True.

    Raises:
        ValueError: `name` is unknown or its objects have no polygons.
    """
    from skimage.draw import polygon2mask

    if not has_masks(name):
        with_masks = [n for n in names() if has_masks(n)]
        raise ValueError(f"name must be a photo with polygons {with_masks}, got {name!r}")
    h, w = _SIZES[name]
    out = []
    for obj in _PHOTOS[name]["objects"]:
        xy = np.asarray(obj["polygon"], dtype=float) - 0.5            # (P, 2) x, y; centre of
        out.append(polygon2mask((h, w), xy[:, ::-1]))                # pixel j is j + 0.5
    stack = torch.from_numpy(np.stack(out))                           # (N, H, W) bool
    for i in range(len(stack) - 1):
        stack[i] &= ~stack[i + 1:].any(0)                             # hidden behind later ones
    return stack


def scene(name: str) -> dict:
    """A photo with polygons in the format of the shapes scenes (`cvcourse.data.make_scene`).

    Args:
        name: one of `names()` for which `has_masks(name)` is True.

    Returns:
        dict with "image" float32 (3, H, W), "boxes" float32 (N, 4), "labels" int64 (N,)
        indices into "class_names" (``["background", *the photo's classes]``), "masks" bool
        (N, H, W) and "semantic" int64 (H, W) (0 = background).

    Raises:
        ValueError: `name` is unknown or its objects have no polygons.
    """
    instance_masks = masks(name)                                        # (N, H, W) bool
    t = targets(name)
    class_names = ["background", *dict.fromkeys(t["names"])]           # in order, unique
    labels = torch.tensor([class_names.index(n) for n in t["names"]], dtype=torch.int64)
    semantic = torch.zeros(instance_masks.shape[1:], dtype=torch.int64)   # (H, W)
    for mask, label in zip(instance_masks, labels):
        semantic[mask] = label                                          # masks are disjoint
    return {"image": load(name), "boxes": t["boxes"], "labels": labels, "masks": instance_masks,
            "semantic": semantic, "class_names": class_names}


def faces(name: str) -> torch.Tensor:
    """Annotated face boxes float32 (F, 4) xyxy of a photo (F = 0 when it has none).

    Args:
        name: one of `names()`.
    """
    boxes = _PHOTOS[_check_name(name)].get("faces", [])
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


def photos_figure(ncols: int = 3, size: float = 3.0) -> Figure:
    """Every photo with its hand-made boxes and COCO class names, `ncols` per row.

    Args:
        ncols: photos per row (a positive int).
        size: width of one panel in inches (positive).
    """
    from .. import viz

    if isinstance(ncols, bool) or not isinstance(ncols, int) or ncols < 1:
        raise ValueError(f"ncols must be a positive int, got {ncols!r}")
    if isinstance(size, bool) or not isinstance(size, (int, float)) or not size > 0:
        raise ValueError(f"size must be a positive number, got {size!r}")
    all_names = names()
    nrows = -(-len(all_names) // ncols)
    fig, axes = viz.subplots(nrows, ncols, size=size)
    axes = np.asarray(axes).reshape(-1)
    id_to_name = {v: k for k, v in COCO_IDS.items()}
    for ax, name in zip(axes, all_names):
        t = targets(name)
        viz.draw_boxes(load(name), t["boxes"], labels=t["labels"], class_names=id_to_name,
                       ax=ax, title=name)
    for ax in axes[len(all_names):]:
        ax.axis("off")
    return fig
