"""Shipped checkpoints: a manifest, sha256 checks and safe loading.

Every checkpoint in ``cvcourse/weights`` is a plain ``state_dict`` made by
``python -m cvcourse.train NAME``. ``weights/manifest.json`` records, for each name, the
model config, seed, steps, training time and hardware, held-out metrics, the bar the
tests hold it to, and the file's sha256. `load` checks the hash before
``torch.load(weights_only=True)`` so a truncated or tampered file fails loudly.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from . import device as devices

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"


def _dir(weights_dir) -> Path:
    return Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR


def manifest(weights_dir=None) -> dict:
    """The manifest as a dict ``{name: record}`` (empty when there is none)."""
    path = _dir(weights_dir) / MANIFEST
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def available(weights_dir=None) -> list[str]:
    """Names of the shipped checkpoints."""
    return sorted(manifest(weights_dir))


def record(name: str, weights_dir=None) -> dict:
    """The manifest record of checkpoint `name`."""
    entries = manifest(weights_dir)
    if name not in entries:
        raise ValueError(f"unknown checkpoint name {name!r}; available: {', '.join(sorted(entries)) or 'none'}")
    return entries[name]


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
        ValueError: unknown name. RuntimeError: the file is missing or its sha256 differs
        from the manifest's (corrupted or stale: retrain with ``python -m cvcourse.train NAME``).
    """
    from . import recipes

    rec = record(name, weights_dir)
    path = _dir(weights_dir) / rec["file"]
    if not path.exists():
        raise RuntimeError(f"checkpoint file {path} for {name!r} is missing; "
                           f"recreate it with `python -m cvcourse.train {name}`")
    digest = sha256(path)
    if digest != rec["sha256"]:
        raise RuntimeError(f"checkpoint {path} is corrupted: sha256 {digest[:12]}... does not match "
                           f"the manifest's {rec['sha256'][:12]}...; recreate it with "
                           f"`python -m cvcourse.train {name}`")
    model = recipes.get(name).factory(**rec["config"])
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(devices.pick(device)).eval()


def save(name: str, model: nn.Module, record: dict, out_dir=None) -> dict:
    """Write `model`'s state_dict as ``NAME.pt`` and its manifest entry; return the entry."""
    folder = _dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, path)
    entry = dict(record, file=path.name, sha256=sha256(path), bytes=path.stat().st_size,
                 date=_dt.date.today().isoformat())
    entries = manifest(folder)
    entries[name] = entry
    (folder / MANIFEST).write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return entry
