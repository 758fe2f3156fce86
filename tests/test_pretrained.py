"""Shipped checkpoints: loading, integrity, bars on the held-out split, and the train command."""

import json
import shutil
import subprocess
import sys

import pytest
import torch

from cvcourse import evaluate, pretrained, recipes

SHIPPED = pretrained.available()


def test_manifest_records_what_the_design_asks_for():
    assert SHIPPED, "no checkpoint is shipped"
    total = 0
    for name in SHIPPED:
        rec = pretrained.record(name)
        for key in ("config", "seed", "steps", "train_seconds", "hardware", "metrics", "bar", "sha256", "file"):
            assert key in rec, f"{name}: manifest lacks {key}"
        path = pretrained.WEIGHTS_DIR / rec["file"]
        assert path.stat().st_size <= 5 * 2**20, f"{name} is over 5 MB"
        total += path.stat().st_size
        assert pretrained.sha256(path) == rec["sha256"]
        assert name in recipes.names()
    assert total <= 30 * 2**20


@pytest.mark.parametrize("name", SHIPPED)
def test_checkpoint_meets_its_bar_on_the_test_split(name):
    res = evaluate.evaluate(name, split="test")
    assert res["bar"], f"{name} has no bar"
    for metric, bar in res["bar"].items():
        assert res["metrics"][metric] >= bar, f"{name}: {metric} {res['metrics'][metric]:.4f} < bar {bar}"


def test_unknown_names_are_clear_errors():
    with pytest.raises(ValueError, match="unknown checkpoint name 'nope'"):
        pretrained.load("nope")
    with pytest.raises(ValueError, match="unknown recipe name 'nope'"):
        recipes.get("nope")


def test_corrupted_or_missing_file_is_refused(tmp_path):
    name = SHIPPED[0]
    shutil.copytree(pretrained.WEIGHTS_DIR, tmp_path / "w")
    model = pretrained.load(name, device="cpu", weights_dir=tmp_path / "w")
    assert not model.training
    path = tmp_path / "w" / pretrained.record(name)["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RuntimeError, match="corrupted: sha256"):
        pretrained.load(name, weights_dir=tmp_path / "w")
    path.unlink()
    with pytest.raises(RuntimeError, match="missing"):
        pretrained.load(name, weights_dir=tmp_path / "w")


def test_train_command_runs_end_to_end_on_a_tiny_budget(tmp_path):
    cmd = [sys.executable, "-m", "cvcourse.train", "classifier", "--steps", "3", "--out", str(tmp_path),
           "--no-progress", "--no-eval"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    man = json.loads((tmp_path / "manifest.json").read_text())
    rec = man["classifier"]
    assert rec["steps"] == 3 and rec["sha256"] == pretrained.sha256(tmp_path / "classifier.pt")
    assert rec["description"] == recipes.get("classifier").description
    model = pretrained.load("classifier", device="cpu", weights_dir=tmp_path)
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 3)


def test_every_recipe_describes_itself_in_the_train_help(capsys):
    from cvcourse.train import main

    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for name in recipes.names():
        description = recipes.get(name).description
        assert description and "\n" not in description, name
        assert f"  {name}: {description}" in help_text


def test_train_command_rejects_unknown_recipe():
    out = subprocess.run([sys.executable, "-m", "cvcourse.train", "nope"], capture_output=True, text=True)
    assert out.returncode != 0 and "unknown recipe 'nope'" in out.stderr


def test_evaluate_command_prints_json():
    name = SHIPPED[0]
    out = subprocess.run([sys.executable, "-m", "cvcourse.evaluate", name, "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["passed"] and res["name"] == name
