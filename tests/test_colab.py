"""Colab-ready notebooks (book/_ext/colab_notebooks.py) and the install cell every notebook starts with."""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import colab_notebooks as cn  # noqa: E402

NOTEBOOKS = cn.book_notebooks(ROOT)
CFG = cn.config(ROOT)
BOOK = CFG["book_url"]
REF = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def conv():
    return cn.Converter(ROOT, ref=REF)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_converts_to_plain_markdown(conv, path):
    source = json.loads(path.read_text())
    nb = conv.notebook(source, path.relative_to(ROOT).with_suffix("").as_posix())
    assert cn.myst_left(nb) == []
    markdown = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    for syntax in ("{term}", "{cite", "{glue", "```{", ":::", "{ref}", "{doc}", "{numref}"):
        assert syntax not in markdown, f"{path.name}: {syntax} survived"
    first = next(c for c in nb["cells"] if c["cell_type"] == "code")
    assert "".join(first["source"]) == cn.install_cell(CFG["repo_url"], REF)
    assert nb["metadata"]["cvcourse"]["ref"] == REF
    # the code cells are the source's, apart from the install cell and glue's import (myst-nb
    # is not installed in Colab: the converted cell falls back to a glue that only displays)
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"][1:]
    expected = [re.sub(r"^from myst_nb import glue$", cn.GLUE_IMPORT, "".join(c["source"]), flags=re.M)
                for c in source["cells"] if c["cell_type"] == "code"][1:]
    assert code == expected


def test_the_source_notebooks_keep_their_myst():
    """Sanity check of the test above: there was MyST to convert."""
    text = "".join(cn._markdown_text(p) for p in NOTEBOOKS)
    assert text.count("{term}`") >= 20 and text.count("{cite}`") >= 20


def test_roles_convert_exactly(conv):
    conv.doc = "book/tasks"
    conv.glue = {"acc": "0.98765", "name": "'U-Net'"}
    md = conv.markdown(
        "A {term}`bounding box` and {term}`boxes <bounding box>` and {term}`RoI`; "
        "FCN {cite}`long2015fcn`, two {cite:p}`long2015fcn,ronneberger2015unet`, {cite:t}`girshick2015fast`; "
        "accuracy {glue:text}`acc:.1%`, model {glue:text}`name`, missing {glue:text}`nope`; "
        "see {doc}`seg_fcn` and {doc}`the U-Net <seg_unet>`; keep `{term}` code and {math}`x^2`.")
    glossary, refs = f"{BOOK}book/glossary.html", f"{BOOK}book/references.html"
    assert md == (
        f"A [bounding box]({glossary}#term-bounding-box) and [boxes]({glossary}#term-bounding-box) and "
        f"[RoI]({glossary}#term-RoI); "
        f"FCN ([Long et al., 2015]({refs})), two ([Long et al., 2015; Ronneberger et al., 2015]({refs})), "
        f"[Girshick (2015)]({refs}); "
        "accuracy 98.8%, model U-Net, missing `nope` (computed below); "
        f"see [{cn.doc_title(ROOT, 'book/seg_fcn')}]({BOOK}book/seg_fcn.html) and "
        f"[the U-Net]({BOOK}book/seg_unet.html); keep `{{term}}` code and $x^2$.")


def test_a_role_wrapped_over_two_lines_converts(conv):
    conv.doc = "book/tasks"
    assert conv.markdown("one {term}`boxes\n<bounding box>` and {cite}`long2015fcn,\n  ronneberger2015unet`.") == (
        f"one [boxes]({BOOK}book/glossary.html#term-bounding-box) and "
        f"([Long et al., 2015; Ronneberger et al., 2015]({BOOK}book/references.html)).")


def test_unknown_term_or_citation_is_an_error(conv):
    with pytest.raises(KeyError, match="no glossary term"):
        conv.markdown("{term}`not a term at all`")
    with pytest.raises(KeyError, match="not in references.bib"):
        conv.markdown("{cite}`nobody1999`")


def test_directives_become_quoted_blocks(conv):
    conv.doc = "book/tasks"
    md = conv.markdown(textwrap.dedent("""\
        (my-label)=
        ## Title
        % a comment
        ```{note}
        A {term}`bounding box` here.

        Second paragraph.
        ```
        ````{admonition} In the papers
        :class: tip
        ```{warning}
        Nested.
        ```
        ````
        :::{dropdown} More
        Hidden text.
        :::
        ```python
        x = {"a": 1}
        ```"""))
    assert md == textwrap.dedent(f"""\
        ## Title
        > **Note**
        >
        > A [bounding box]({BOOK}book/glossary.html#term-bounding-box) here.
        >
        > Second paragraph.
        > **In the papers**
        >
        > > **Warning**
        > >
        > > Nested.
        <details>
        <summary>More</summary>

        Hidden text.

        </details>
        ```python
        x = {{"a": 1}}
        ```""")


def test_an_answer_under_a_question_stays_in_its_list_item_and_closed(conv):
    conv.doc = "book/tasks"
    conv.glue = {"rf": "92"}
    md = conv.markdown(textwrap.dedent("""\
        1. A question?

           ```{dropdown} Answer
           It sees {glue:text}`rf` px.
           ```
        2. The next question."""))
    assert md == textwrap.dedent("""\
        1. A question?

           <details>
           <summary>Answer</summary>

           It sees 92 px.

           </details>
        2. The next question.""")


def test_literalinclude_inserts_the_package_code(conv):
    import inspect

    from cvcourse.ops import boxes

    conv.doc = "book/tasks"
    md = conv.markdown("```{literalinclude} ../cvcourse/ops/boxes.py\n:pyobject: box_iou\n```")
    code = md.split("```python\n", 1)[1].split("\n```", 1)[0]
    assert code == inspect.getsource(boxes.box_iou).rstrip()
    assert f"{CFG['repo_url']}/blob/{REF}/cvcourse/ops/boxes.py" in md


def test_glue_values_come_from_the_executed_notebook(tmp_path, conv):
    executed = {"cells": [{"cell_type": "code", "outputs": [
        {"output_type": "display_data", "data": {"text/plain": "0.8512"},
         "metadata": {"scrapbook": {"name": "map", "mime_prefix": ""}}},
        {"output_type": "display_data", "data": {"application/papermill.record/text/plain": "17"},
         "metadata": {"scrapbook": {"name": "n", "mime_prefix": "application/papermill.record/"}}}]}]}
    (tmp_path / "x.ipynb").write_text(json.dumps(executed))
    nb = {"cells": [{"cell_type": "code", "source": "# the install cell", "outputs": [], "metadata": {}},
                    {"cell_type": "code", "source": "from myst_nb import glue\n", "outputs": [], "metadata": {}},
                    {"cell_type": "markdown", "source": "mAP {glue:text}`map:.2f` on {glue:text}`n` scenes.",
                     "metadata": {}}],
          "metadata": {}}
    out = conv.notebook(nb, "book/x", tmp_path / "x.ipynb")
    assert out["cells"][2]["source"] == ["mAP 0.85 on 17 scenes."]
    assert "except ImportError" in "".join(out["cells"][1]["source"])


def test_glue_import_works_without_myst_nb():
    """In Colab there is no myst-nb: the converted import falls back to a glue that only displays."""
    ns = {}
    code = cn.GLUE_IMPORT.replace("from myst_nb import glue", "from myst_nb_absent_here import glue")
    exec(code, ns)
    ns["glue"]("x", 1, display=False)


def test_every_notebook_starts_with_the_one_install_cell():
    expected = cn.install_cell(CFG["repo_url"])
    for path in NOTEBOOKS:
        first = next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        assert "".join(first["source"]) == expected, (
            f"{path.name}: first code cell differs; run python book/_ext/colab_notebooks.py --install-cells")


def test_launch_button_opens_the_colab_ready_copy():
    url = f"{cn.COLAB_URL}/github/cvcourse/cvcourse/blob/main/book/tasks.ipynb"
    ctx = {"header_buttons": [{"type": "group", "buttons": [{"text": "Colab", "url": url},
                                                            {"text": "Binder", "url": "https://mybinder.org/x"}]}]}
    cn.colab_launch_button(None, "book/tasks", None, ctx, None)
    buttons = ctx["header_buttons"][0]["buttons"]
    assert buttons[0]["url"] == f"{cn.COLAB_URL}/github/cvcourse/cvcourse/blob/colab/book/tasks.ipynb"
    assert buttons[1]["url"] == "https://mybinder.org/x"


def test_pages_workflow_publishes_and_checks_the_repository():
    wf = (ROOT / ".github" / "workflows" / "book.yml").read_text()
    assert "github.repository" in wf and "_config.yml" in wf
    assert f"_build/{cn.COLAB_BRANCH}" in wf and f"refs/heads/{cn.COLAB_BRANCH}" in wf


# ------------------------------------------------------------------ the install cell's logic
RUN_CELL = """
import sys, types
if sys.argv[1] == "colab":
    sys.modules["google"] = types.ModuleType("google")
    sys.modules["google.colab"] = types.ModuleType("google.colab")
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.enable_gui = lambda gui=None: None  # a terminal-less shell cannot switch GUIs; %matplotlib inline needs none
result = shell.run_cell(open(sys.argv[2]).read())
print("RESULT", type(result.error_in_exec).__name__)
"""


def _run_install_cell(tmp_path, where, pip_exit):
    fake = tmp_path / "fakepip" / "pip"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(
        "import sys, pathlib\n"
        f"pathlib.Path({str(tmp_path / 'pip-called')!r}).write_text(' '.join(sys.argv[1:]))\n"
        "print('ERROR: Could not find a version that satisfies the requirement', file=sys.stderr)\n"
        f"sys.exit({pip_exit})\n")
    cell = tmp_path / "cell.py"
    cell.write_text(cn.install_cell("https://github.com/someone/fork", "v1.2"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "fakepip"), "MPLBACKEND": "agg"}
    out = subprocess.run([sys.executable, "-c", RUN_CELL, where, str(cell)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    called = tmp_path / "pip-called"
    return out.stdout + out.stderr, called.read_text() if called.exists() else None


def test_install_cell_stops_with_one_sentence_when_pip_fails(tmp_path):
    out, pip_args = _run_install_cell(tmp_path, "colab", 1)
    assert pip_args == "install -q cvcourse @ git+https://github.com/someone/fork@v1.2"
    assert "RESULT InstallFailed" in out  # the cell fails, so "Run all" stops here
    assert "Could not find a version" in out  # pip's own message is shown
    assert ("Installing cvcourse @ git+https://github.com/someone/fork@v1.2 failed (pip's messages are above): "
            "check that the runtime is connected to the internet, run this cell again, and if it fails again "
            "report it at https://github.com/someone/fork/issues.") in out
    assert "Traceback" not in out and "InstallFailed:" not in out


def test_install_cell_goes_on_when_pip_succeeds(tmp_path):
    out, pip_args = _run_install_cell(tmp_path, "colab", 0)
    assert pip_args is not None
    assert "RESULT NoneType" in out and "Could not find" not in out


def test_install_cell_installs_nothing_outside_colab(tmp_path):
    out, pip_args = _run_install_cell(tmp_path, "local", 1)
    assert pip_args is None and "RESULT NoneType" in out


def test_readme_and_intro_name_the_configured_repository():
    """The repository URL is set in _config.yml; the README and the intro name that one."""
    owner_name = f"{CFG['owner']}/{CFG['name']}"
    for path in (ROOT / "README.md", ROOT / "book" / "intro.md"):
        text = path.read_text()
        named = set(re.findall(r"github\.com/([\w-]+/[\w-]+)", text))
        assert named == {owner_name}, f"{path.name} names {named}"
        assert f"{cn.COLAB_URL}/github/{owner_name}/blob/{cn.COLAB_BRANCH}/book/" in text, path.name
