"""Checkers for the instance chapters."""

from __future__ import annotations

__all__: list[str] = []
