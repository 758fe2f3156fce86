"""Every chapter's exercises follow one pattern (issue 16 §3).

- Coding: a visible stub cell whose functions ``raise NotImplementedError`` and which calls its
  `cvcourse.exercises` checkers on them; then the solution in a code cell tagged ``hide-cell``;
  then a visible cell that runs the same checkers on the solution and keeps each verdict
  (``ok_x = exercises.check_x(...)``); the chapter's closing assert cell asserts every ``ok_x``.
- Conceptual questions (the numbered items that are not **Coding.**) each have a collapsible
  answer, a ``{dropdown} Answer`` directive inside the item, before the next question.

The chapters are found in ``_toc.yml``; markdown pages (intro, glossary, references) have no
exercises. A chapter without a coding exercise is listed in `NO_CODING`.
"""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NO_CODING = {"appendix_training_at_scale"}  # its exercises are all conceptual


def _chapters() -> list[Path]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    return [ROOT / f"{f}.ipynb" for f in files if (ROOT / f"{f}.ipynb").exists()]


CHAPTERS = _chapters()
ITEM = re.compile(r"^(\d+)\.[ \t]", re.M)
DROPDOWN = re.compile(r"^[ ]*(`{3,}|:{3,})\{dropdown\}[ \t]*Answer[ \t]*$", re.M)
CHECK = re.compile(r"exercises\.(check_\w+)\(")
KEPT = re.compile(r"^(ok_\w+)\s*=\s*exercises\.(check_\w+)\(", re.M)


def _tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []))


def _exercises(nb) -> tuple[int, str]:
    """Index of the cell holding '## Exercises' and the exercise text (that cell from the
    heading on, plus the markdown cells after it up to the first code cell)."""
    start = next((i for i, c in enumerate(nb.cells)
                  if c.cell_type == "markdown" and re.search(r"^## Exercises\s*$", c.source, re.M)), None)
    assert start is not None, "no '## Exercises' heading"
    text = nb.cells[start].source
    text = text[re.search(r"^## Exercises\s*$", text, re.M).start():]
    for cell in nb.cells[start + 1:]:
        if cell.cell_type != "markdown" or cell.source.lstrip().startswith("## "):
            break
        text += "\n" + cell.source
    # the next section (## Checkpoint) in the same cell is not part of the exercises
    nxt = re.search(r"^## (?!Exercises)", text, re.M)
    return start, text[:nxt.start()] if nxt else text


def _items(text: str) -> list[tuple[int, str]]:
    """The numbered exercises, each with its whole text (question and anything indented under it)."""
    marks = list(ITEM.finditer(text))
    return [(int(m[1]), text[m.start():(marks[k + 1].start() if k + 1 < len(marks) else len(text))])
            for k, m in enumerate(marks)]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_conceptual_question_has_a_collapsible_answer(path):
    nb = nbformat.read(path, as_version=4)
    _, text = _exercises(nb)
    items = _items(text)
    assert items, f"{path.name}: no numbered exercises"
    assert [n for n, _ in items] == list(range(1, len(items) + 1)), f"{path.name}: numbering"
    missing = []
    for n, item in items:
        if "**Coding.**" in item:
            continue
        answers = DROPDOWN.findall(item)
        if len(answers) != 1:
            missing.append(n)
            continue
        # the answer is a closed directive with some text in it
        body = item[DROPDOWN.search(item).end():]
        fence = answers[0]
        close = re.search(rf"^[ ]*{re.escape(fence)}[ \t]*$", body, re.M)
        assert close, f"{path.name}: the answer to question {n} is never closed"
        assert len(body[:close.start()].split()) >= 10, f"{path.name}: the answer to question {n} is too short"
    assert not missing, f"{path.name}: questions without a '{{dropdown}} Answer': {missing}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_coding_exercise_is_stub_then_hidden_solution_then_kept_check(path):
    nb = nbformat.read(path, as_version=4)
    start, text = _exercises(nb)
    if path.stem in NO_CODING and "**Coding.**" not in text:
        return  # only conceptual questions here
    assert "**Coding.**" in text, f"{path.name}: no **Coding.** exercise"
    code = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and i > start]
    stubs = [(i, c) for i, c in code if re.search(r"raise NotImplementedError\b", c.source)
             and "hide-cell" not in _tags(c)]
    assert stubs, f"{path.name}: no visible stub cell raising NotImplementedError"
    closing = [c for c in nb.cells if c.cell_type == "code"][-1]
    asserted = set(re.findall(r"\bok_\w+", "\n".join(ln for ln in closing.source.splitlines()
                                                      if ln.lstrip().startswith("assert"))))
    for i_stub, stub in stubs:  # every coding exercise: stub -> hidden solution -> kept check
        checkers = set(CHECK.findall(stub.source))
        assert checkers, f"{path.name}: the stub cell calls no exercises.check_* on the stub"
        hidden = [i for i, c in code if i > i_stub and "hide-cell" in _tags(c)]
        assert hidden, f"{path.name}: no solution cell tagged hide-cell after the stub"
        i_solution = hidden[0]
        assert "NotImplementedError" not in nb.cells[i_solution].source, f"{path.name}: the solution is a stub"
        kept = {}
        for i, c in code:
            if i > i_solution and "hide-cell" not in _tags(c) and "hide-input" not in _tags(c):
                kept.update({checker: name for name, checker in KEPT.findall(c.source)})
        assert checkers <= set(kept), (f"{path.name}: the checks run on the stub {sorted(checkers)} are not "
                                       f"all run on the solution and kept: {kept}")
        unasserted = {kept[c] for c in checkers} - asserted
        assert not unasserted, f"{path.name}: the closing cell does not assert {sorted(unasserted)}"


def test_the_pattern_checks_can_fail():
    """The parsers above find what they look for (and miss what is not there)."""
    good = ("## Exercises\n\n1. Why?\n\n   ```{dropdown} Answer\n"
            "   Because the map has one cell per pixel block and so on.\n   ```\n2. **Coding.** Write it.\n")
    items = _items(_exercises(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(good)]))[1])
    assert [n for n, _ in items] == [1, 2] and DROPDOWN.search(items[0][1]) and not DROPDOWN.search(items[1][1])
    assert KEPT.findall("ok_iou = exercises.check_box_iou(iou)") == [("ok_iou", "check_box_iou")]
