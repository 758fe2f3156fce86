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
        "objects": [{"label": "cup", "box": [172, 17, 409, 305]},
                    {"label": "spoon", "box": [326, 67, 426, 324]}],
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
        "license": "Not stated in the scikit-image docstring; distributed inside "
                   "scikit-image (BSD-3-Clause) as part of the Middlebury 2014 stereo "
                   "benchmark.",
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
