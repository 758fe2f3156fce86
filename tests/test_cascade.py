"""The boosted face cascade: ours accepts exactly the windows scikit-image accepts."""
import numpy as np
import pytest
import skimage.data
from skimage.color import rgb2gray
from skimage.feature import Cascade, multiblock_lbp
from skimage.transform import integral_image

from cvcourse.cascade import cascade_figure, cascade_windows, load_cascade, mblbp_codes, run_cascade

SCAN = dict(scale_factor=1.2, step_ratio=1, min_size=(60, 60), max_size=(123, 123))


@pytest.fixture(scope="module")
def astronaut():
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def result(astronaut):
    return run_cascade(astronaut, **SCAN)


def test_cascade_file_parsed():
    cascade = load_cascade()
    assert cascade.window == (24, 24) and cascade.n_stages == 20
    assert int(cascade.stage_size.sum()) == len(cascade.stump_feature) == len(cascade.stump_lut)
    assert cascade.stump_lut.shape[1] == 8 and cascade.stump_leaves.shape[1] == 2
    assert cascade.stump_feature.max() < len(cascade.features)


def test_mblbp_codes_equal_scikit_image(astronaut):
    integral = np.ascontiguousarray(integral_image(rgb2gray(astronaut)), dtype=np.float32)
    rng = np.random.default_rng(0)
    r, c = rng.integers(0, 400, 300), rng.integers(0, 400, 300)
    w, h = rng.integers(1, 30, 300), rng.integers(1, 30, 300)
    ours = [int(mblbp_codes(integral, r[i:i + 1], c[i:i + 1], w[i], h[i])[0]) for i in range(300)]
    ref = [multiblock_lbp(integral, r[i], c[i], w[i], h[i]) for i in range(300)]
    assert ours == ref
    assert len(set(ours)) > 20                                    # not a constant code


def test_accepted_windows_equal_scikit_image(astronaut, result):
    detector = Cascade(skimage.data.lbp_frontal_face_cascade_filename())
    # one detection per cluster and clusters of one: no grouping, every accepted window
    raw = detector.detect_multi_scale(astronaut, min_neighbor_number=1,
                                      intersection_score_threshold=2.0, **SCAN)
    ref = sorted((d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]) for d in raw)
    assert sorted(map(tuple, result["detections"].tolist())) == ref
    assert len(ref) >= 5


def test_every_window_counted_once_and_most_rejected_early(result):
    levels = cascade_windows((512, 512), (24, 24), **SCAN)
    n = sum(len(v["rows"]) * len(v["cols"]) for v in levels)
    assert len(result["windows"]) == len(result["exit_stage"]) == n
    assert len(np.unique(result["windows"], axis=0)) == n
    counts = np.bincount(result["exit_stage"], minlength=21)
    assert counts[:2].sum() / n > 0.8                # the first two stages reject > 80 %
    assert result["stumps"].mean() < 0.1 * result["n_stumps"]
    # the stumps evaluated follow from the exit stage
    size = load_cascade().stage_size
    done = np.concatenate([[0], np.cumsum(size)])
    assert np.array_equal(result["stumps"], done[np.minimum(result["exit_stage"] + 1, 20)])


def test_window_sizes_and_steps_follow_the_scale():
    levels = cascade_windows((100, 200), (24, 24), scale_factor=1.5, step_ratio=2.0,
                             min_size=(24, 24), max_size=(90, 90))
    assert [v["size"] for v in levels] == [(24, 24), (36, 36), (54, 54), (81, 81)]
    assert [v["step"] for v in levels] == [2, 3, 5, 7]
    assert all(v["rows"].max() < 100 - v["size"][0] for v in levels)
    with pytest.raises(ValueError, match="scale_factor"):
        cascade_windows((100, 100), (24, 24), scale_factor=1.0)
    with pytest.raises(ValueError, match="step_ratio"):
        cascade_windows((100, 100), (24, 24), step_ratio=0)


def test_bad_image_is_a_clear_error():
    with pytest.raises(ValueError, match="image must be"):
        run_cascade(np.zeros((2, 3, 4, 5)))


def test_cascade_figure(astronaut, result):
    fig = cascade_figure(astronaut, result, detections=[[178, 74, 265, 161]],
                         annotations=[[171, 70, 271, 170]])
    ax_img, ax_bar = fig.axes[:2]
    assert len(ax_img.patches) == len(result["detections"]) + 2
    assert len(ax_bar.patches) == result["n_stages"] + 1
