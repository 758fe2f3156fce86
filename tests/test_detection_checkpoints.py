"""Every detection checkpoint meets its bar on held-out scenes, and our Faster R-CNN holds
its own against torchvision's FasterRCNN trained with the same backbone, data and budget.

Detection recipes are those defined in ``cvcourse/recipes/detection.py``. Held-out sizes are
modest (the manifest's numbers use the recipes' full evaluation), so the file runs in well
under a minute; a checkpoint not yet in the manifest is skipped, saying how to make it.
"""

import ast
from functools import cache
from pathlib import Path

import pytest

from cvcourse import pretrained, recipes
from cvcourse.recipes import detection

pytestmark = pytest.mark.usefixtures("one_thread")

# Held-out scenes per evaluation: enough for a stable mAP, few enough for CI.
N_EVAL = {"detection_metrics": 100, "localization_metrics": 500}
PEER_MARGIN = 0.05  # our map_50 must be within this of the peer's, or above it


def detection_recipes() -> list[str]:
    """Names of the recipes registered in ``cvcourse/recipes/detection.py`` (read from its
    source: other chapters' recipes reuse its helpers but are tested by their own files)."""
    tree = ast.parse(Path(detection.__file__).read_text())
    return sorted(kw.value.value for node in ast.walk(tree)
                  if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Recipe"
                  for kw in node.keywords if kw.arg == "name" and isinstance(kw.value, ast.Constant))


def _require(name: str) -> None:
    if name not in pretrained.available():
        pytest.skip(f"checkpoint {name!r} is not in cvcourse/weights/manifest.json yet; make it with "
                    f"`python -m cvcourse.train {name}`")


@cache
def held_out_metrics(name: str) -> dict:
    recipe = recipes.get(name)
    model = pretrained.load(name, device="cpu")
    n = N_EVAL.get(recipe.evaluate.__name__, 100)
    return recipe.evaluate(model, split="test", n=n)


def test_the_chapter_checkpoints_are_detection_recipes():
    names = detection_recipes()
    assert {"faster_rcnn", "faster_rcnn_torchvision", "localizer"} <= set(names)
    assert set(names) <= set(recipes.names())


@pytest.mark.parametrize("name", detection_recipes())
def test_detection_checkpoint_meets_its_bar_on_held_out_scenes(name):
    _require(name)
    metrics, bar = held_out_metrics(name), pretrained.record(name)["bar"]
    assert bar == recipes.get(name).bar, f"{name}: manifest bar {bar} differs from the recipe's"
    for metric, minimum in bar.items():
        assert metrics[metric] >= minimum, f"{name}: {metric} {metrics[metric]:.4f} < bar {minimum}"


@pytest.mark.parametrize("name", detection_recipes())
def test_manifest_metrics_meet_the_bar_and_match_a_fresh_evaluation(name):
    _require(name)
    rec = pretrained.record(name)
    for metric, minimum in rec["bar"].items():
        assert rec["metrics"][metric] >= minimum
    fresh = held_out_metrics(name)
    for metric in rec["bar"]:  # fewer scenes here: the same model, so close, not equal
        assert abs(fresh[metric] - rec["metrics"][metric]) < 0.05, \
            f"{name}: {metric} now {fresh[metric]:.4f}, manifest {rec['metrics'][metric]:.4f}"


def test_our_faster_rcnn_is_within_a_margin_of_torchvisions():
    _require("faster_rcnn")
    _require("faster_rcnn_torchvision")
    ours, peer = held_out_metrics("faster_rcnn"), held_out_metrics("faster_rcnn_torchvision")
    assert ours["map_50"] >= peer["map_50"] - PEER_MARGIN, \
        f"ours map_50 {ours['map_50']:.4f} < torchvision's {peer['map_50']:.4f} - {PEER_MARGIN}"
    rec_ours, rec_peer = pretrained.record("faster_rcnn"), pretrained.record("faster_rcnn_torchvision")
    for key in ("steps", "batch_size", "lr", "seed"):  # the comparison is fair: same budget
        assert rec_ours[key] == rec_peer[key], f"{key}: ours {rec_ours[key]} vs peer {rec_peer[key]}"
    assert rec_ours["metrics"]["map_50"] >= rec_peer["metrics"]["map_50"] - PEER_MARGIN
