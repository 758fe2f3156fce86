"""The book's structure: notebooks stored clean, Colab cells, table of contents, CI command."""

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from book_toc import toc_files

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
REPO_URL = CONFIG["repository"]["url"]


def _code_cells(path):
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_there_are_chapters():
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    for cell in _code_cells(path):
        assert not cell.get("outputs") and not cell.get("execution_count"), f"{path.name} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_first_code_cell_installs_in_colab_only(path):
    src = "".join(_code_cells(path)[0]["source"])
    assert '"google.colab" in sys.modules' in src
    assert f'"cvcourse @ git+{REPO_URL}@' in src, "install URL must match _config.yml (see tests/test_colab.py)"
    assert "%matplotlib inline" in src


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_ends_by_asserting_its_headline_numbers(path):
    last = "".join(_code_cells(path)[-1]["source"])
    assert last.count("assert ") >= 2, f"{path.name}: the last code cell must assert its headline numbers"


def test_table_of_contents_lists_every_chapter_and_only_existing_files():
    listed = set(toc_files())
    for entry in listed:
        assert any((ROOT / f"{entry}{ext}").exists() for ext in (".md", ".ipynb")), entry
    for nb in NOTEBOOKS:
        assert str(nb.relative_to(ROOT).with_suffix("")) in listed, f"{nb} is not in _toc.yml"
    assert CONFIG["only_build_toc_files"] is True


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"^(python -m pytest [^\n]*)$", ci, flags=re.M)
    assert m, ".ci/run has no pytest command"
    assert m.group(1) in readme, "the README's test command and .ci/run's differ"
    assert "jupyter-book build . -W -n --keep-going" in readme


def test_glossary_lists_every_seed_term():
    glossary = (ROOT / "book" / "glossary.md").read_text()
    for zh in ["语义分割", "实例分割", "目标检测", "定位", "边界框", "多任务损失", "区域候选", "感兴趣区域",
               "含有目标的概率", "锚框", "转置卷积", "反池化", "跳跃连接", "显著图", "类激活图",
               "基于梯度的类激活图", "引导反向传播"]:
        assert zh in glossary, zh


def test_nbval_kernel_has_colab_pins():
    """The README's test command runs nbval in the kernel `cvcourse-colab`: Colab's pins."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec("cvcourse-colab")
    except NoSuchKernel:
        pytest.fail("no Jupyter kernel 'cvcourse-colab': run .ci/colab_env.sh (README command 2)")
    code = ("import IPython, ipywidgets, cvcourse; "
            "print(ipywidgets.__version__, IPython.version_info[0], cvcourse.__file__)")
    out = subprocess.run([spec.argv[0], "-c", code], capture_output=True, text=True, check=True)
    widgets, ipython, package = out.stdout.split()
    assert widgets == "7.7.1" and ipython == "7"
    assert Path(package).resolve().parent == ROOT / "cvcourse", "the kernel must import this checkout"


_TOC_NOTEBOOKS = sorted(ROOT / f"{f}.ipynb" for f in toc_files() if (ROOT / f"{f}.ipynb").exists())
_PAPERS_BOX = re.compile(r"^```\{admonition\} In the papers\n(.*?)^```\s*$", re.S | re.M)


@pytest.mark.parametrize("path", _TOC_NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_has_one_cited_in_the_papers_box_before_the_takeaways(path):
    cells = json.loads(path.read_text())["cells"]
    markdown = ["".join(c["source"]) if c["cell_type"] == "markdown" else "" for c in cells]
    boxes = [i for i, src in enumerate(markdown) if "{admonition} In the papers" in src]
    assert len(boxes) == 1, f"{path.name}: expected one 'In the papers' box, found {len(boxes)}"
    i = boxes[0]
    box = _PAPERS_BOX.search(markdown[i])
    assert box and box.group(0).strip() == markdown[i].strip(), f"{path.name}: the box must be its own cell"
    assert "{cite}`" in box.group(1), f"{path.name}: the 'In the papers' box cites no paper"
    assert i + 1 < len(cells) and markdown[i + 1].startswith("## Key takeaways"), \
        f"{path.name}: the 'In the papers' box must come right before '## Key takeaways'"


def test_every_toc_chapter_notebook_is_checked_for_its_papers_box():
    assert len(_TOC_NOTEBOOKS) >= 25
