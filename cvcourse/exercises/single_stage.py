"""Checkers for the single_stage chapters."""

from __future__ import annotations

__all__: list[str] = []
