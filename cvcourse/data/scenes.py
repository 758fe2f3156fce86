"""The scene sets of the detection chapters: training streams and the held-out scenes.

Detectors train on fresh 128 x 128 shapes scenes (1-4 objects, ``view="scene"``) and are
scored on the first scenes of a held-out split; the single-object localizer uses 64 x 64
one-object scenes with objects of 12-32 px.
"""

from __future__ import annotations

from .shapes import ShapesDataset, detection_collate

__all__ = ["DETECTION_SIZE", "LOCALIZER_SIZE", "LOCALIZER_OBJECT_SIZE", "detection_data",
           "held_out_scenes", "localizer_data"]

DETECTION_SIZE = 128
LOCALIZER_SIZE = 64
# One object of 12-32 px: at the default 6-24 px a one-pixel error on each side of a 6-px
# box already costs half its IoU, so a box-IoU bar would measure pixel rounding.
LOCALIZER_OBJECT_SIZE = (12, 32)


def detection_data(split: str, length: int, size: int = DETECTION_SIZE, seed: int = 0,
                   max_objects: int = 4) -> ShapesDataset:
    """Shapes scenes as ``(image [3, S, S], {"boxes", "labels", "masks", "semantic"})``."""
    return ShapesDataset(split=split, length=length, size=size, view="scene", seed=seed,
                         max_objects=max_objects)


def held_out_scenes(split: str = "test", n: int = 200, size: int = DETECTION_SIZE,
                    max_objects: int = 4):
    """The first `n` scenes of a held-out split: images ``[n, 3, S, S]`` and the target list."""
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test' (held-out), got {split!r}")
    ds = detection_data(split, n, size, max_objects=max_objects)
    return detection_collate([ds[i] for i in range(n)])


def localizer_data(split: str, length: int, size: int = LOCALIZER_SIZE, seed: int = 0) -> ShapesDataset:
    """One-object scenes ``(image [3, S, S], {"boxes" [1, 4], "labels" [1]})``, objects 12-32 px."""
    return ShapesDataset(split=split, length=length, size=size, view="single", seed=seed,
                         object_size=LOCALIZER_OBJECT_SIZE)
