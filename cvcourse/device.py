"""Where computations run: CUDA when there is one, else the CPU — never hard-coded."""

from __future__ import annotations

import os
import platform

import torch


def pick(device: str | torch.device | None = None) -> torch.device:
    """Return `device` as a torch.device; None means CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be like 'cpu' or 'cuda:0', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for, but CUDA is not available here")
    return dev


def describe(device: str | torch.device | None = None) -> str:
    """A one-line description of the hardware, for manifests and benchmark tables."""
    dev = pick(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA)"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {n} cores, {torch.get_num_threads()} torch threads"
