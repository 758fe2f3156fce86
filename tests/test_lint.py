"""The code follows the habits written in pyproject.toml: `ruff check .` finds nothing.

ruff is configured in ``[tool.ruff]`` (line length 120; pycodestyle, pyflakes, isort,
bugbear, pyupgrade; Google-style docstrings in ``cvcourse/ops`` and ``cvcourse/models``).
The notebooks in ``book/`` are excluded: nbval and tests/test_book.py check them.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise", "."],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "No module named ruff" not in out.stderr, "ruff is in requirements.txt: pip install -r requirements.txt"
    assert out.returncode == 0, f"ruff check found problems:\n{out.stdout}{out.stderr}"
