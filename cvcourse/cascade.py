"""A boosted cascade of cheap features: the sliding window that worked (Viola and Jones, 2001).

Shown in the chapter "Many objects: why a fixed output breaks, and sliding windows".

A cascade classifies every window of an image with a sequence of *stages*. Each stage sums
the votes of a few weak classifiers (decision stumps on one cheap feature each) and rejects
the window as soon as the sum falls below the stage's threshold; only windows that pass
every stage are detections. Most windows hold no face and fail in the first stages, so the
average window costs a few features instead of all of them.

The cascade here is the multi-block LBP face detector (Liao et al., 2007) that OpenCV
trained and scikit-image ships (`skimage.data.lbp_frontal_face_cascade_filename`). An
MB-LBP feature compares the grey-level sum of the centre block of a 3 x 3 grid of
rectangles with its 8 neighbours: an 8-bit code, read with a 256-entry lookup table.

`skimage.feature.Cascade.detect_multi_scale` runs the same cascade, but only returns the
grouped detections. `run_cascade` scans exactly the same windows (same scales, steps and
float32 arithmetic), vectorized over windows, and also records at which stage each window
was rejected; the tests check that it accepts exactly the windows scikit-image accepts.

- `load_cascade`: parse an OpenCV LBP cascade (XML) into arrays.
- `cascade_windows`: the windows a multi-scale scan visits.
- `mblbp_codes`: the MB-LBP code of one feature in many windows.
- `run_cascade`: every window, the stage it was rejected at, the detections.
- `cascade_figure`: the detections on the image, and windows left after each stage.
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

__all__ = ["LBPCascade", "load_cascade", "cascade_windows", "mblbp_codes", "run_cascade",
           "cascade_figure"]

# The 8 neighbour blocks of an MB-LBP feature, clockwise from the top-left; the first one
# gives the most significant bit.
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


@dataclass
class LBPCascade:
    """An OpenCV LBP cascade as arrays.

    Attributes:
        window: (height, width) of the base window in pixels.
        features: int64 [F, 4] = (row, col, block width, block height) of each MB-LBP feature.
        stump_feature: int64 [S] the feature index of each stump.
        stump_lut: uint32 [S, 8] each stump's 256-bit lookup table (bit k: code k).
        stump_leaves: float32 [S, 2] vote when the lookup bit is 1, vote when it is 0.
        stage_first: int64 [T] index of the first stump of each stage.
        stage_size: int64 [T] stumps per stage.
        stage_threshold: float32 [T] a window passes a stage when its votes reach this.
    """

    window: tuple[int, int]
    features: np.ndarray
    stump_feature: np.ndarray
    stump_lut: np.ndarray
    stump_leaves: np.ndarray
    stage_first: np.ndarray
    stage_size: np.ndarray
    stage_threshold: np.ndarray

    @property
    def n_stages(self) -> int:
        return len(self.stage_size)


def load_cascade(path: str | None = None) -> LBPCascade:
    """Parse an OpenCV LBP cascade file.

    Args:
        path: the XML file; None loads scikit-image's frontal-face cascade.
    """
    if path is None:
        from skimage.data import lbp_frontal_face_cascade_filename
        path = lbp_frontal_face_cascade_filename()
    root = ET.parse(path).getroot()
    if root.findtext(".//featureType", "").strip() != "LBP":
        raise ValueError(f"path must be an OpenCV cascade with featureType LBP, got {path!r}")
    window = (int(root.findtext(".//height")), int(root.findtext(".//width")))
    features = np.array([[int(v) for v in f.findtext("rect").split()]
                         for f in root.find(".//features")], dtype=np.int64)   # x, y, w, h
    features = features[:, [1, 0, 2, 3]]                                       # row, col, w, h
    first, size, threshold, feature, lut, leaves = [], [], [], [], [], []
    for stage in root.find(".//stages"):
        stumps = list(stage.find("weakClassifiers"))
        first.append(len(feature))
        size.append(len(stumps))
        threshold.append(float(stage.findtext("stageThreshold")))
        for stump in stumps:
            nodes = [int(v) for v in stump.findtext("internalNodes").split()[2:]]
            feature.append(nodes[0])
            lut.append(nodes[1:9])
            leaves.append([float(v) for v in stump.findtext("leafValues").split()])
    return LBPCascade(window, features, np.array(feature, dtype=np.int64),
                      np.array(lut, dtype=np.int64).astype(np.uint32),
                      np.array(leaves, dtype=np.float32), np.array(first, dtype=np.int64),
                      np.array(size, dtype=np.int64), np.array(threshold, dtype=np.float32))


def cascade_windows(image_size: tuple[int, int], window: tuple[int, int],
                    scale_factor: float = 1.2, step_ratio: float = 1.0,
                    min_size: tuple[int, int] = (24, 24),
                    max_size: tuple[int, int] = (10_000, 10_000)) -> list[dict]:
    """The windows of a multi-scale scan, as `skimage.feature.Cascade.detect_multi_scale` visits them.

    Args:
        image_size: (height, width) of the image.
        window: (height, width) of the cascade's base window.
        scale_factor: ratio between successive window sizes (> 1).
        step_ratio: the step between windows is `step_ratio` times the scale, rounded.
        min_size: (height, width) of the smallest window.
        max_size: (height, width) of the largest window.

    Returns:
        one dict per scale that fits the image: "scale" (float32), "size" (height, width),
        "step", "rows" and "cols" (int64 arrays of the windows' top-left corners).
    """
    if not scale_factor > 1:
        raise ValueError(f"scale_factor must be > 1, got {scale_factor!r}")
    if not step_ratio > 0:
        raise ValueError(f"step_ratio must be > 0, got {step_ratio!r}")
    height, width = image_size
    wh, ww = window
    scale_factor = float(np.float32(scale_factor))      # scikit-image takes it as a C float
    low = max(math.log(min_size[0] / wh, scale_factor), math.log(min_size[1] / ww, scale_factor), 0)
    high = min(math.log(max_size[0] / wh, scale_factor), math.log(max_size[1] / ww, scale_factor))
    scales = np.power(scale_factor, np.arange(low, high), dtype=np.float32)
    out = []
    for scale in scales:
        step = int(math.floor(float(np.float32(scale) * np.float32(step_ratio)) + 0.5))
        size = (int(np.float32(wh) * scale), int(np.float32(ww) * scale))
        max_row, max_col = height - size[0], width - size[1]
        if max_row < 0 or max_col < 0:
            continue
        out.append({"scale": scale, "size": size, "step": step,
                    "rows": np.arange(0, max_row, step), "cols": np.arange(0, max_col, step)})
    return out


def _block_sums(integral: np.ndarray, r0: np.ndarray, c0: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sums of the h x w blocks with top-left corners (r0, c0), float32 as scikit-image adds them."""
    r1, c1 = r0 + h - 1, c0 + w - 1
    s = integral[r1, c1]
    s = s + np.where((r0 >= 1) & (c0 >= 1), integral[r0 - 1, c0 - 1], np.float32(0))
    s = s - np.where(r0 >= 1, integral[r0 - 1, c1], np.float32(0))
    s = s - np.where(c0 >= 1, integral[r1, c0 - 1], np.float32(0))
    return s


def mblbp_codes(integral: np.ndarray, rows: np.ndarray, cols: np.ndarray,
                width: int, height: int) -> np.ndarray:
    """The MB-LBP codes (int64 [N]) of a 3 x 3 grid of `height` x `width` blocks whose
    top-left corners are at (`rows`, `cols`) of a float32 integral image."""
    centre_r, centre_c = rows + height, cols + width
    centre = _block_sums(integral, centre_r, centre_c, height, width)     # (N,)
    code = np.zeros(len(rows), dtype=np.int64)
    for k, (dr, dc) in enumerate(_NEIGHBOURS):
        block = _block_sums(integral, centre_r + dr * height, centre_c + dc * width, height, width)
        code |= (block >= centre).astype(np.int64) << (7 - k)
    return code


def run_cascade(image: np.ndarray, cascade: LBPCascade | None = None, scale_factor: float = 1.2,
                step_ratio: float = 1.0, min_size: tuple[int, int] = (24, 24),
                max_size: tuple[int, int] = (10_000, 10_000), eps: float = 1e-5) -> dict:
    """Scan every window of a multi-scale search with the cascade, recording where each stops.

    Args:
        image: (H, W) grey or (H, W, 3) RGB array (converted with `skimage.color.rgb2gray`).
        cascade: from `load_cascade`; None loads scikit-image's frontal-face cascade.
        scale_factor, step_ratio, min_size, max_size: as in `cascade_windows`.
        eps: a window passes a stage when its votes are >= threshold - eps (scikit-image's).

    Returns:
        dict with "windows" int64 [N, 4] xyxy of every window scanned, "exit_stage" int64 [N]
        (the stage that rejected it, or `n_stages` when it passed them all), "stumps" int64
        [N] (weak classifiers evaluated), "n_stages", "n_stumps" (in the whole cascade) and
        "detections" int64 [D, 4]: the windows that passed every stage.
    """
    from skimage.color import rgb2gray
    from skimage.transform import integral_image

    cascade = load_cascade() if cascade is None else cascade
    image = np.asarray(image)
    if image.ndim == 3:
        image = rgb2gray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be (H, W) or (H, W, 3), got shape {image.shape}")
    integral = np.ascontiguousarray(integral_image(image), dtype=np.float32)
    windows, exits, stumps = [], [], []
    for level in cascade_windows(image.shape, cascade.window, scale_factor, step_ratio,
                                 min_size, max_size):
        rr, cc = np.meshgrid(level["rows"], level["cols"], indexing="ij")
        rows, cols = rr.ravel(), cc.ravel()                               # (N,) one per window
        exit_stage = np.full(len(rows), cascade.n_stages, dtype=np.int64)
        n_stumps = np.zeros(len(rows), dtype=np.int64)
        alive = np.arange(len(rows))                                      # windows still in
        feats = cascade.features.astype(np.float32) * level["scale"]
        feats = feats.astype(np.int64)                                    # truncated, as in C
        for t in range(cascade.n_stages):
            votes = np.zeros(len(alive), dtype=np.float32)
            first, size = cascade.stage_first[t], cascade.stage_size[t]
            rows_in, cols_in = rows[alive], cols[alive]                   # the windows still in
            for s in range(first, first + size):
                r, c, w, h = feats[cascade.stump_feature[s]]
                code = mblbp_codes(integral, rows_in + r, cols_in + c, w, h)
                bit = (cascade.stump_lut[s][code >> 5] >> (code & 31).astype(np.uint32)) & 1
                votes = votes + np.where(bit == 1, cascade.stump_leaves[s, 0],
                                         cascade.stump_leaves[s, 1])
            n_stumps[alive] += size
            rejected = votes < np.float32(cascade.stage_threshold[t] - np.float32(eps))
            exit_stage[alive[rejected]] = t
            alive = alive[~rejected]
            if len(alive) == 0:
                break
        h, w = level["size"]
        windows.append(np.stack([cols, rows, cols + w, rows + h], 1))
        exits.append(exit_stage)
        stumps.append(n_stumps)
    windows = np.concatenate(windows) if windows else np.zeros((0, 4), dtype=np.int64)
    exit_stage = np.concatenate(exits) if exits else np.zeros(0, dtype=np.int64)
    return {"windows": windows, "exit_stage": exit_stage,
            "stumps": np.concatenate(stumps) if stumps else np.zeros(0, dtype=np.int64),
            "n_stages": cascade.n_stages, "n_stumps": int(cascade.stage_size.sum()),
            "detections": windows[exit_stage == cascade.n_stages]}


def cascade_figure(image, result: dict, detections=None, annotations=None,
                   size: float = 3.4) -> Figure:
    """The windows that passed every stage on the image, and how many windows survive each stage.

    Args:
        image: Tensor [3, H, W] or array, as `viz.show_image` takes it.
        result: the dict `run_cascade` returned for this image.
        detections: optional [D, 4] xyxy grouped detections, drawn thick.
        annotations: optional [A, 4] xyxy annotated boxes, drawn dashed.
        size: height of the figure in inches.
    """
    from . import viz

    n_stages = result["n_stages"]
    exit_stage = np.asarray(result["exit_stage"])
    fig = Figure(figsize=(2.2 * size, size), layout="constrained")
    ax_img, ax_bar = fig.subplots(1, 2, width_ratios=[1, 1.2])
    viz.show_image(image, ax=ax_img, title=f"{len(result['detections'])} windows pass all "
                                           f"{n_stages} stages")
    for box in np.asarray(result["detections"]).tolist():
        viz.draw_box(ax_img, box, "yellow", linewidth=0.8)
    for box in ([] if detections is None else np.asarray(detections).reshape(-1, 4).tolist()):
        viz.draw_box(ax_img, box, "lime", linewidth=2.2)
    for box in ([] if annotations is None else np.asarray(annotations).reshape(-1, 4).tolist()):
        viz.draw_box(ax_img, box, "white", linewidth=1.5, linestyle="--")
    reached = len(exit_stage) - np.concatenate([[0], np.cumsum(np.bincount(
        exit_stage, minlength=n_stages + 1)[:n_stages])])               # (n_stages + 1,)
    ax_bar.bar(np.arange(n_stages + 1), reached, color="tab:blue")
    ax_bar.set_yscale("log")
    ax_bar.set_xlabel(f"stages passed ({n_stages} = all: a detection)")
    ax_bar.set_ylabel("windows still in")
    ax_bar.set_title(f"{len(exit_stage):,} windows scanned", fontsize=9)
    return fig
