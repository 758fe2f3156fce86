"""Data safety: training never overwrites the shipped files unasked, saves are atomic, and a
broken manifest gives an error that names the file and the fix.

Every test works on a copy of the weights folder in a temporary directory; the package's
``pretrained.WEIGHTS_DIR`` is monkeypatched to that copy, and the real folder's hashes are
checked unchanged at the end of the module.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cvcourse import evaluate, pretrained, recipes, train

REAL_WEIGHTS = pretrained.WEIGHTS_DIR


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: pretrained.sha256(p) for p in sorted(folder.iterdir()) if p.is_file()}


REAL_HASHES = _hashes(REAL_WEIGHTS)


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A copy of the classifier's shipped checkpoint + manifest, standing in for cvcourse/weights."""
    folder = tmp_path / "weights"
    folder.mkdir()
    rec = pretrained.record("classifier")
    shutil.copy(REAL_WEIGHTS / rec["file"], folder / rec["file"])
    (folder / "manifest.json").write_text(json.dumps({"classifier": rec}, indent=2))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", folder)
    monkeypatch.chdir(tmp_path)  # runs/ lands in the temporary folder
    return folder


@pytest.fixture
def fast_classifier(monkeypatch):
    """The classifier recipe with a stub evaluation (`score` sets its accuracy)."""
    recipe = recipes.get("classifier")
    score = {"accuracy": 1.0}
    monkeypatch.setattr(recipe, "evaluate", lambda model, split="test": dict(score))
    return score


def test_train_without_flags_leaves_the_shipped_files_untouched(shipped, fast_classifier):
    before = _hashes(shipped)
    assert train.main(["classifier", "--steps", "2", "--no-progress"]) == 0
    assert _hashes(shipped) == before
    runs = list(Path("runs").iterdir())
    assert len(runs) == 1 and runs[0].name.startswith("classifier-")
    rec = pretrained.record("classifier", weights_dir=runs[0])
    assert rec["steps"] == 2
    model = pretrained.load("classifier", device="cpu", weights_dir=runs[0])
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 3)


def test_two_runs_get_two_folders(shipped):
    a, b = train.default_out_dir("x"), None
    a.mkdir(parents=True)
    b = train.default_out_dir("x")
    assert a != b and not b.exists()


def test_out_pointing_at_the_shipped_folder_needs_replace_shipped(shipped, fast_classifier):
    before = _hashes(shipped)
    with pytest.raises(ValueError, match="replace_shipped"):
        train.train_recipe("classifier", steps=1, out_dir=shipped, progress=False)
    assert _hashes(shipped) == before


def test_replace_shipped_needs_the_evaluation(shipped):
    with pytest.raises(SystemExit):
        train.main(["classifier", "--steps", "1", "--replace-shipped", "--no-eval"])
    with pytest.raises(ValueError, match="evaluate"):
        train.train_recipe("classifier", steps=1, replace_shipped=True, evaluate=False)
    with pytest.raises(SystemExit):  # --out and --replace-shipped exclude each other
        train.main(["classifier", "--out", "x", "--replace-shipped"])
    with pytest.raises(SystemExit):
        train.main(["classifier", "--steps", "0"])


def test_replace_shipped_refuses_a_checkpoint_below_its_bar(shipped, fast_classifier, capsys):
    fast_classifier["accuracy"] = 0.5  # bar is 0.97
    before = _hashes(shipped)
    assert train.main(["classifier", "--steps", "2", "--replace-shipped", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "accuracy 0.5000 < bar 0.97" in err and "shipped checkpoint was kept" in err
    assert _hashes(shipped) == before
    kept = list(Path("runs").iterdir())  # the run is not lost either
    assert len(kept) == 1 and pretrained.record("classifier", weights_dir=kept[0])["steps"] == 2


def test_replace_shipped_replaces_a_checkpoint_that_meets_its_bar(shipped, fast_classifier):
    before = _hashes(shipped)
    assert train.main(["classifier", "--steps", "2", "--replace-shipped", "--no-progress"]) == 0
    after = _hashes(shipped)
    assert after["classifier.pt"] != before["classifier.pt"]
    assert pretrained.record("classifier")["steps"] == 2
    assert not any(p.name.endswith(".tmp") for p in shipped.iterdir())
    assert not Path("runs").exists()


def test_an_interrupted_save_leaves_the_old_files_whole(shipped, monkeypatch):
    before = _hashes(shipped)
    model = pretrained.load("classifier", device="cpu")

    def dies(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        pretrained.save("classifier", model, record={"config": {}}, out_dir=shipped)
    assert _hashes(shipped) == before  # neither the checkpoint nor the manifest changed
    assert sorted(p.name for p in shipped.iterdir()) == ["classifier.pt", "manifest.json"]


def _edit_record(folder, **fields):
    man = json.loads((folder / "manifest.json").read_text())
    for k, v in fields.items():
        if v is None:
            del man["classifier"][k]
        else:
            man["classifier"][k] = v
    (folder / "manifest.json").write_text(json.dumps(man))


@pytest.mark.parametrize("field", ["file", "sha256", "config"])
def test_a_missing_manifest_field_names_the_file_and_the_fix(shipped, field):
    _edit_record(shipped, **{field: None})
    with pytest.raises(pretrained.ManifestError, match=rf"manifest .*manifest.json, record 'classifier' "
                                                         rf"lacks the field '{field}'.*git checkout"):
        pretrained.load("classifier", device="cpu")


@pytest.mark.parametrize("field, value, match", [
    ("sha256", 12, "must be a str"),
    ("sha256", "abc", "64 lowercase hex"),
    ("config", [], "must be a dict"),
    ("config", {"num_classes": 3, "nope": 1}, "does not fit"),
    ("file", "../outside.pt", "must be a file name inside"),
    ("file", "/etc/passwd", "must be a file name inside"),
    ("file", "sub/classifier.pt", "must be a file name inside"),
    ("bar", [0.97], "field 'bar' must map metric names to numbers"),
    ("bar", {"accuracy": "high"}, "field 'bar' must map metric names to numbers"),
    ("metrics", None, None),  # optional: a record without metrics still loads
])
def test_a_malformed_manifest_field_is_a_clear_error(shipped, field, value, match):
    _edit_record(shipped, **{field: value})
    if match is None:
        assert not pretrained.load("classifier", device="cpu").training
        return
    with pytest.raises(pretrained.ManifestError, match=match):
        pretrained.load("classifier", device="cpu")


@pytest.mark.parametrize("text", ["", '{"classifier": {"file": "classi', "[1, 2]", '{"classifier": 3}'])
def test_a_truncated_manifest_is_a_clear_error(shipped, text):
    (shipped / "manifest.json").write_text(text)
    with pytest.raises(pretrained.ManifestError, match=r"manifest .*manifest.json .*git checkout"):
        pretrained.available()
    with pytest.raises(pretrained.ManifestError):
        pretrained.load("classifier")


def test_a_truncated_manifest_does_not_break_evaluate_help(shipped, capsys):
    (shipped / "manifest.json").write_text('{"classifier": {"fi')
    with pytest.raises(SystemExit) as e:
        evaluate.main(["--help"])
    assert e.value.code == 0 and "checkpoint name" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        evaluate.main(["classifier"])
    assert e.value.code == 2 and "not valid JSON" in capsys.readouterr().err


def test_train_refuses_to_write_into_a_folder_with_a_broken_manifest(tmp_path, fast_classifier):
    (tmp_path / "manifest.json").write_text("{")
    with pytest.raises(pretrained.ManifestError, match="not valid JSON"):
        train.train_recipe("classifier", steps=1, out_dir=tmp_path, progress=False)
    assert (tmp_path / "manifest.json").read_text() == "{"


@pytest.mark.skipif(not {"detr", "classifier"} <= set(pretrained.available()), reason="not shipped")
def test_detr_loaded_from_a_folder_reads_its_backbone_from_that_folder(tmp_path, monkeypatch):
    folder = tmp_path / "w"
    folder.mkdir()
    man = {n: pretrained.record(n) for n in ("detr", "classifier")}
    for rec in man.values():
        shutil.copy(REAL_WEIGHTS / rec["file"], folder / rec["file"])
    (folder / "manifest.json").write_text(json.dumps(man))
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", tmp_path / "empty")  # the package's folder is gone
    read = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda f, *a, **k: read.append(Path(f).parent) or real_load(f, *a, **k))
    model = pretrained.load("detr", device="cpu", weights_dir=folder)
    assert read == [folder, folder] and not model.training


def test_the_subprocess_command_writes_nothing_into_the_package(tmp_path):
    cmd = [sys.executable, "-m", "cvcourse.train", "classifier", "--steps", "1", "--no-eval", "--no-progress"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (run,) = (tmp_path / "runs").iterdir()
    assert (run / "classifier.pt").exists() and f"saved runs/{run.name}/classifier.pt" in out.stdout


def test_the_real_weights_folder_is_unchanged():
    assert _hashes(REAL_WEIGHTS) == REAL_HASHES
