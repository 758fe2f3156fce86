"""Every chapter's exercises follow one pattern (issue 16, "Exercises that behave the same everywhere").

After "## Exercises", in every chapter (intro, references and glossary are pages, not chapters):

- each numbered question that is not a coding exercise ("**Coding.**") is followed, inside its
  list item, by a collapsible answer: a MyST ``{dropdown}`` directive (``:::`` or backtick
  fence), closed before the next question;
- the coding exercise comes as a visible code cell whose stub functions raise
  ``NotImplementedError`` and which runs the ``cvcourse.exercises`` checker on them (it reports
  "not implemented yet" and does not raise); then the solution, in a code cell tagged
  ``hide-cell`` (a toggle in the book) that redefines every stubbed function; then a visible
  cell that runs the same checkers on the solution and keeps each result
  (``ok_x = exercises.check_x(...)``);
- the closing assert cell (the last code cell, collapsed with ``hide-input``) asserts every
  ``ok_`` result.

Parametrized by chapter, so a chapter that does not follow the pattern fails on its own.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOT_CHAPTERS = {"intro", "references", "glossary"}
CHAPTERS = sorted(p for p in BOOK.glob("*.ipynb") if p.stem not in NOT_CHAPTERS)

ITEM = re.compile(r"^(\d+)\.[ \t]+", re.M)                     # a numbered question at column 0
DROPDOWN_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>:{3,}|`{3,})\{dropdown\}[ \t]*(?P<title>.*)$", re.M)
CHECK_CALL = re.compile(r"\bexercises\.(check_\w+)\s*\(")
KEEP_RESULT = re.compile(r"^(ok_\w+)\s*=\s*exercises\.(check_\w+)\s*\(", re.M)


def _cells(path: Path) -> list[dict]:
    nb = json.loads(path.read_text())
    return [{"type": c["cell_type"], "source": "".join(c["source"]),
             "tags": c.get("metadata", {}).get("tags", [])} for c in nb["cells"]]


def _exercise_part(cells: list[dict]) -> tuple[int, str]:
    """The index of the cell holding "## Exercises", and the exercises' markdown: from that
    heading to the next heading of level 2 (the markdown cells in between, joined)."""
    start = next((i for i, c in enumerate(cells) if c["type"] == "markdown"
                  and re.search(r"^## Exercises\s*$", c["source"], re.M)), None)
    assert start is not None, "no '## Exercises' section"
    texts = []
    for i, c in enumerate(cells[start:], start):
        if c["type"] != "markdown":
            continue
        text = c["source"].split("## Exercises", 1)[1] if i == start else c["source"]
        end = re.search(r"^## ", text, re.M)
        texts.append(text[:end.start()] if end else text)
        if end:
            break
    return start, "\n".join(texts)


def _questions(text: str) -> list[tuple[int, str]]:
    """The numbered questions (number, text up to the next question) of the exercises' markdown."""
    starts = list(ITEM.finditer(text))
    return [(int(m.group(1)), text[m.start():(starts[k + 1].start() if k + 1 < len(starts) else len(text))])
            for k, m in enumerate(starts)]


def _is_coding(question: str) -> bool:
    first_paragraph = question.split("\n\n", 1)[0]
    return "**Coding" in first_paragraph


def _defs(source: str) -> dict[str, ast.FunctionDef]:
    tree = ast.parse("\n".join(ln for ln in source.splitlines() if not ln.lstrip().startswith(("%", "!"))))
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _raises_not_implemented(fn: ast.FunctionDef) -> bool:
    for node in ast.walk(fn):
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
                return True
    return False


def answer_problems(cells: list[dict]) -> list[str]:
    """What is wrong with the conceptual questions' answers (an empty list: nothing)."""
    _, text = _exercise_part(cells)
    questions = _questions(text)
    if not questions:
        return ["no numbered exercises after '## Exercises'"]
    problems = []
    if [n for n, _ in questions] != list(range(1, len(questions) + 1)):
        problems.append(f"exercises are not numbered 1, 2, 3, ...: {[n for n, _ in questions]}")
    missing = []
    for n, question in questions:
        answers = list(DROPDOWN_OPEN.finditer(question))
        if _is_coding(question):
            if answers:
                problems.append(f"coding exercise {n} has a dropdown; its solution is a hidden code cell")
            continue
        if not answers:
            missing.append(n)
            continue
        m = answers[0]
        if not m["title"].strip():
            problems.append(f"exercise {n}: the dropdown needs a title (e.g. 'Answer')")
        if len(m["indent"]) < 3:
            problems.append(f"exercise {n}: indent the dropdown into the list item")
        fence, rest = m["fence"], question[m.end():]
        close = re.search(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", rest, re.M)
        if not close:
            problems.append(f"exercise {n}: the dropdown is not closed before the next question")
        elif len(rest[:close.start()].split()) < 10:
            problems.append(f"exercise {n}: the answer is too short: {rest[:close.start()].strip()!r}")
    if missing:
        problems.append(f"conceptual exercises without a dropdown answer: {missing}")
    return problems


def coding_problems(cells: list[dict]) -> list[str]:
    """What is wrong with the coding exercise's cells and the closing assert cell (empty: nothing)."""
    start, text = _exercise_part(cells)
    if not any(_is_coding(q) for _, q in _questions(text)):
        return ["no '**Coding.**' exercise"]
    code = [(i, c) for i, c in enumerate(cells) if c["type"] == "code" and i > start]
    stubs = [(i, c) for i, c in code if "hide-cell" not in c["tags"]
             and any(_raises_not_implemented(f) for f in _defs(c["source"]).values())]
    if not stubs:
        return ["no visible stub cell raising NotImplementedError after '## Exercises'"]
    problems = []
    closing_i, closing = max((i, c) for i, c in enumerate(cells) if c["type"] == "code")
    if "hide-input" not in closing["tags"]:
        problems.append("the closing assert cell must be tagged hide-input")
    asserted = set(re.findall(r"\bok_\w+", "\n".join(ln for ln in closing["source"].splitlines()
                                                     if ln.lstrip().startswith("assert"))))
    for stub_i, stub in stubs:
        stubbed = sorted(n for n, f in _defs(stub["source"]).items() if _raises_not_implemented(f))
        checkers = set(CHECK_CALL.findall(stub["source"]))
        if not checkers:
            problems.append("the stub cell must call the exercises checker on the stub")
        solution_i, solution = next(((i, c) for i, c in code if i > stub_i and "hide-cell" in c["tags"]),
                                    (None, None))
        if solution is None:
            problems.append("no solution cell tagged hide-cell after the stub")
            continue
        redefined = _defs(solution["source"])
        if not set(stubbed) <= set(redefined):
            problems.append(f"the hidden solution must define {stubbed}, defines {sorted(redefined)}")
        elif any(_raises_not_implemented(redefined[n]) for n in stubbed):
            problems.append("the hidden solution still raises NotImplementedError")
        if KEEP_RESULT.search(solution["source"]):
            problems.append("the checker result belongs in the visible cell after the solution, not in the hidden one")
        kept = {checker: ok for i, c in code if solution_i < i < closing_i
                for ok, checker in KEEP_RESULT.findall(c["source"]) if "hide-cell" not in c["tags"]}
        if not checkers <= set(kept):
            problems.append(f"checkers run on the stub but never kept on the solution: {sorted(checkers - set(kept))}")
        not_asserted = {kept[ch] for ch in checkers if ch in kept} - asserted
        if not_asserted:
            problems.append(f"the closing assert cell does not assert {sorted(not_asserted)}")
    return problems


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_conceptual_question_has_a_dropdown_answer(path):
    problems = answer_problems(_cells(path))
    assert not problems, f"{path.name}: " + "; ".join(problems)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_coding_exercise_has_stub_hidden_solution_and_kept_checker_result(path):
    problems = coding_problems(_cells(path))
    assert not problems, f"{path.name}: " + "; ".join(problems)


def _md(source):
    return {"type": "markdown", "source": source, "tags": []}


def _code(source, *tags):
    return {"type": "code", "source": source, "tags": list(tags)}


_GOOD = [
    _md("## Exercises\n\n1. Why?\n\n   ```{dropdown} Answer\n   Because the map has one value per cell "
        "and the cells are four pixels wide.\n   ```\n2. **Coding.** Write `f`. A solution is hidden below."),
    _code("def f(x):\n    raise NotImplementedError  # your code here\n\n\n"
          "from cvcourse import exercises\n\nexercises.check_f(f)"),
    _code("def f(x):\n    return x", "hide-cell"),
    _code("ok_f = exercises.check_f(f)"),
    _md("## Checkpoint\nWhat the chapter stands on."),
    _code("assert ok_f\nprint('all checks passed')", "hide-input"),
]


@pytest.mark.parametrize("edit, expected", [
    (lambda c: c, None),
    (lambda c: [_md(c[0]["source"].split("\n\n   ```")[0] + "\n2. **Coding.** Write `f`.")] + c[1:],
     "without a dropdown answer: [1]"),
    (lambda c: [_md(c[0]["source"].replace("   ```\n2.", "2."))] + c[1:], "not closed"),
    (lambda c: c[:2] + [_code(c[2]["source"])] + c[3:], "no solution cell tagged hide-cell"),
    (lambda c: c[:2] + [_code(c[2]["source"] + "\n\nok_f = exercises.check_f(f)", "hide-cell")] + c[3:],
     "belongs in the visible cell"),
    (lambda c: c[:3] + c[4:], "never kept on the solution"),
    (lambda c: c[:5] + [_code("print('all checks passed')", "hide-input")], "does not assert ['ok_f']"),
    (lambda c: c[:5] + [_code(c[5]["source"])], "tagged hide-input"),
    (lambda c: [c[0], _code(c[1]["source"].replace("raise NotImplementedError", "pass"))] + c[2:],
     "no visible stub cell"),
], ids=["good", "no-answer", "unclosed", "solution-shown", "kept-in-hidden", "not-kept", "not-asserted",
        "closing-shown", "no-stub"])
def test_the_pattern_checks_find_what_is_missing(edit, expected):
    problems = answer_problems(edit(_GOOD)) + coding_problems(edit(_GOOD))
    if expected is None:
        assert problems == []
    else:
        assert any(expected in p for p in problems), problems
