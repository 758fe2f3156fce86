"""Checkers for the detection chapters (localization, proposals, RoI ops, anchors, Faster R-CNN)."""

from __future__ import annotations

from typing import Callable

import torch

from ._core import _call, report

__all__: list[str] = []
