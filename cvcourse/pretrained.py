"""Shipped checkpoints: a manifest, sha256 checks and safe loading.

Every checkpoint in ``cvcourse/weights`` is a plain ``state_dict`` made by
``python -m cvcourse.train NAME --replace-shipped``. ``weights/manifest.json`` records, for each name, the
model config, seed, steps, training time and hardware, held-out metrics, the bar the
tests hold it to, and the file's sha256. `load` checks the hash before
``torch.load(weights_only=True)`` so a truncated or tampered file fails loudly.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import inspect
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from . import device as devices

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"
_REQUIRED = {"file": str, "sha256": str, "config": dict}  # what `load` needs from a record


class ManifestError(ValueError):
    """The manifest (or one of its records) cannot be read; the message names the file and the fix."""


def _dir(weights_dir) -> Path:
    return Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR


def _fix(folder: Path, name: str = "NAME") -> str:
    if folder.resolve() == WEIGHTS_DIR.resolve():
        return ("restore it with `git checkout -- cvcourse/weights/manifest.json` or retrain with "
                f"`python -m cvcourse.train {name} --replace-shipped`")
    return f"retrain with `python -m cvcourse.train {name} --out {folder}` or delete the folder"


def manifest(weights_dir=None) -> dict:
    """The manifest as a dict ``{name: record}`` (empty when there is none).

    Raises:
        ManifestError: the file is not valid JSON or not an object of records.
    """
    folder = _dir(weights_dir)
    path = folder / MANIFEST
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"manifest {path} is not valid JSON ({e}); {_fix(folder)}") from None
    if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
        raise ManifestError(f"manifest {path} must be a JSON object {{name: record}}; {_fix(folder)}")
    return entries


def available(weights_dir=None) -> list[str]:
    """Names of the shipped checkpoints."""
    return sorted(manifest(weights_dir))


def record(name: str, weights_dir=None) -> dict:
    """The manifest record of checkpoint `name`.

    Raises:
        ValueError: unknown name. ManifestError: a field `load` needs is missing or malformed.
    """
    folder = _dir(weights_dir)
    entries = manifest(folder)
    if name not in entries:
        raise ValueError(f"unknown checkpoint name {name!r}; available: {', '.join(sorted(entries)) or 'none'}")
    rec = entries[name]
    where = f"manifest {folder / MANIFEST}, record {name!r}"
    for key, kind in _REQUIRED.items():
        if key not in rec:
            raise ManifestError(f"{where} lacks the field {key!r}; {_fix(folder, name)}")
        if not isinstance(rec[key], kind):
            raise ManifestError(f"{where}: field {key!r} must be a {kind.__name__}, got "
                                f"{type(rec[key]).__name__}; {_fix(folder, name)}")
    digest = rec["sha256"]
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ManifestError(f"{where}: field 'sha256' must be 64 lowercase hex digits, got {digest!r}; "
                            f"{_fix(folder, name)}")
    for key in ("bar", "metrics"):  # optional, but `evaluate` compares them as numbers
        value = rec.get(key, {})
        if not isinstance(value, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value.values()):
            raise ManifestError(f"{where}: field {key!r} must map metric names to numbers, got {value!r}; "
                                f"{_fix(folder, name)}")
    checkpoint_path(rec, folder, name)  # the file must lie inside the folder
    return rec


def checkpoint_path(rec: dict, weights_dir=None, name: str = "?") -> Path:
    """The checkpoint file of record `rec`, confined to `weights_dir` (no ``..``, no absolute path)."""
    folder = _dir(weights_dir).resolve()
    path = (folder / rec["file"]).resolve()
    if path.parent != folder:
        raise ManifestError(f"manifest {folder / MANIFEST}, record {name!r}: field 'file' must be a "
                            f"file name inside {folder}, got {rec['file']!r}; {_fix(folder, name)}")
    return path


def _write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to `path`, then rename it over `path`.

    The rename is atomic on POSIX and Windows, so an interrupted save leaves the old file whole.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a checkpoint is for everyone
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(name: str, device=None, weights_dir=None) -> nn.Module:
    """Build the model of checkpoint `name`, load its verified weights, return it in eval mode.

    Args:
        name: a name from `available()`.
        device: where to put the model; None follows `cvcourse.device.pick` (CUDA if present).
        weights_dir: folder holding the checkpoints and manifest (default: the package's).

    Raises:
        ValueError: unknown name; ManifestError (a ValueError) for a broken manifest record.
        RuntimeError: the file is missing or its sha256 differs
        from the manifest's (corrupted or stale: retrain with ``python -m cvcourse.train NAME --replace-shipped``).
    """
    from . import recipes

    rec = record(name, weights_dir)
    path = checkpoint_path(rec, weights_dir, name)
    if not path.exists():
        raise RuntimeError(f"checkpoint file {path} for {name!r} is missing; "
                           f"recreate it with `python -m cvcourse.train {name} --replace-shipped`")
    digest = sha256(path)
    if digest != rec["sha256"]:
        raise RuntimeError(f"checkpoint {path} is corrupted: sha256 {digest[:12]}... does not match "
                           f"the manifest's {rec['sha256'][:12]}...; recreate it with "
                           f"`python -m cvcourse.train {name} --replace-shipped`")
    factory = recipes.get(name).factory
    config = dict(rec["config"])
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    if "weights_dir" in params:  # e.g. DETR reads its backbone's checkpoint from the same folder
        config["weights_dir"] = weights_dir
    try:
        model = factory(**config)
    except TypeError as e:
        raise ManifestError(f"manifest {_dir(weights_dir) / MANIFEST}, record {name!r}: field 'config' "
                            f"does not fit {name!r}'s model ({e}); {_fix(_dir(weights_dir), name)}") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(devices.pick(device)).eval()


def save(name: str, model: nn.Module, record: dict, out_dir=None) -> dict:
    """Write `model`'s state_dict as ``NAME.pt`` and its manifest entry; return the entry.

    Both files are written to a temporary file in the same folder and renamed over the old
    one, so an interrupted save never leaves a truncated checkpoint or manifest behind.
    """
    folder = _dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt"
    entries = manifest(folder)  # a broken manifest stops us before anything is written
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    _write_atomic(path, lambda tmp: torch.save(state, tmp))
    entry = dict(record, file=path.name, sha256=sha256(path), bytes=path.stat().st_size,
                 date=_dt.date.today().isoformat())
    entries[name] = entry
    text = json.dumps(entries, indent=2, sort_keys=True) + "\n"
    _write_atomic(folder / MANIFEST, lambda tmp: tmp.write_text(text))
    return entry
