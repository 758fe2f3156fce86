"""The book's table of contents (``_toc.yml``), read in one place for the tests."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())


def toc_files(node=TOC) -> list[str]:
    """Every page a table of contents lists (its ``root`` and each ``file``), in reading order."""
    if isinstance(node, dict):
        return [f for k, v in node.items() for f in ([v] if k in ("file", "root") else toc_files(v))]
    if isinstance(node, list):
        return [f for v in node for f in toc_files(v)]
    return []
