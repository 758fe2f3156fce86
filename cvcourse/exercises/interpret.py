"""Checkers for the interpret chapters."""

from __future__ import annotations

__all__: list[str] = []
