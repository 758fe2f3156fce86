"""Every chapter shows the package code it teaches, included from the package (never copied).

A chapter includes code with a MyST ``literalinclude`` directive and ``:pyobject:``; the
included object must exist in the file and be short enough to read on the page.
"""

import ast
import json
import re
from pathlib import Path

import pytest
from book_toc import toc_files

ROOT = Path(__file__).resolve().parents[1]
NOT_CHAPTERS = {"book/intro", "book/glossary", "book/references"}
MAX_LINES = 40
DIRECTIVE = re.compile(r"```\{literalinclude\}\s+(?P<path>\S+)\s*\n(?P<options>(?::[^\n]*\n)*)")


CHAPTERS = sorted(f for f in toc_files() if f not in NOT_CHAPTERS)


def _includes(chapter: str) -> list[tuple[Path, str | None]]:
    """(resolved file, pyobject or None) of every literalinclude in a chapter's markdown."""
    path = ROOT / f"{chapter}.ipynb"
    cells = json.loads(path.read_text())["cells"]
    found = []
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        for m in DIRECTIVE.finditer("".join(cell["source"]) + "\n"):
            options = dict(re.findall(r"^:(\w+):\s*(.*)$", m["options"], flags=re.M))
            found.append(((path.parent / m["path"]).resolve(), options.get("pyobject")))
    return found


def _pyobject_lines(file: Path, name: str) -> int:
    """Lines of a (possibly dotted) top-level function/class or method, decorators included."""
    node = ast.parse(file.read_text())
    for part in name.split("."):
        matches = [n for n in ast.iter_child_nodes(node)
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                   and n.name == part]
        assert matches, f"{file} has no object {name!r}"
        node = matches[0]
    start = min([node.lineno] + [d.lineno for d in node.decorator_list])
    return node.end_lineno - start + 1


def test_the_chapters_are_the_toc_minus_intro_glossary_references():
    assert len(CHAPTERS) >= 20
    assert all(Path(ROOT / f"{c}.ipynb").exists() for c in CHAPTERS)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_includes_package_code_by_pyobject(chapter):
    includes = _includes(chapter)
    objects = [(f, o) for f, o in includes if o]
    assert objects, f"{chapter} includes no package code with literalinclude :pyobject:"
    for file, obj in objects:
        assert file.is_file(), f"{chapter}: included file {file} does not exist"
        assert ROOT / "cvcourse" in file.parents, f"{chapter}: {file} is not package code"
        lines = _pyobject_lines(file, obj)
        assert lines <= MAX_LINES, f"{chapter}: {obj} is {lines} lines (at most {MAX_LINES})"


def test_pyobject_line_count_counts_decorators():
    # HungarianMatcher.forward carries @torch.no_grad(): the count starts at the decorator
    file = ROOT / "cvcourse" / "ops" / "hungarian.py"
    tree = ast.parse(file.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "HungarianMatcher")
    fwd = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "forward")
    assert fwd.decorator_list
    assert _pyobject_lines(file, "HungarianMatcher.forward") == fwd.end_lineno - fwd.decorator_list[0].lineno + 1


def test_a_missing_pyobject_is_reported(tmp_path):
    file = tmp_path / "m.py"
    file.write_text("def f():\n    return 1\n")
    with pytest.raises(AssertionError):
        _pyobject_lines(file, "g")


def test_readme_table_lists_the_code_each_chapter_shows():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Chapter → package files", 1)[1].split("\n## ", 1)[0]
    rows = {m[1]: set(re.findall(r"`([\w.]+)`", m[3]))
            for m in re.finditer(r"^\| `(book/(\w+)\.ipynb)` \| (?:[^|]*) \| ([^|]*) \|$", section, flags=re.M)}
    assert set(rows) == {f"{c}.ipynb" for c in CHAPTERS}
    for chapter in CHAPTERS:
        shown = {obj for _, obj in _includes(chapter) if obj}
        assert rows[f"{chapter}.ipynb"] == shown, chapter
