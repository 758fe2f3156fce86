"""Colab-ready notebooks: the book's MyST markdown turned into the plain markdown Colab renders.

The chapters are written for Jupyter Book (MyST): ``{term}`...``, ``{cite}`...``,
``{glue:text}`...``, admonitions and other ```` ```{directive} ```` blocks. Colab renders plain
markdown and would show that syntax raw. `convert_notebook` rewrites a notebook's markdown cells:

- ``{term}`key``` and ``{term}`text <key>``` → a link to the glossary entry in the online book;
- ``{cite}`key``` → "(Author, year)" linked to the references page (``{cite:t}`` → "Author (year)");
- ``{glue:text}`name:fmt``` and ``{glue}`name``` → the value from the executed notebook (or, without
  one, the name in code font and "computed below");
- ``{ref}``, ``{doc}``, ``{numref}``, ``{eq}`` → links into the online book; ``{math}`` → ``$...$``;
- ``dropdown`` (an exercise's answer) → an HTML ``<details>`` block, closed until clicked, as in
  the book; admonitions and every other directive block → a quoted block with its title; ``literalinclude``
  → the included code itself; ``figure``/``image`` → an image from the repository;
  ``(label)=`` targets and ``%`` comments are dropped.

It also writes the first code cell (the install cell, one template for every notebook, see
`install_cell`) with the commit the book was built from, so Colab installs exactly that version.

Run by the book build (this module is a Sphinx extension: after the HTML is written it converts
every notebook of the table of contents into ``_build/colab/``, with the glue values of
``_build/jupyter_execute``); the Pages workflow publishes that folder on the branch ``colab``,
which the Colab launch buttons open. By hand::

    python book/_ext/colab_notebooks.py --out _build/colab [--executed _build/jupyter_execute] [--ref SHA]
    python book/_ext/colab_notebooks.py --install-cells   # rewrite every notebook's first code cell
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLAB_BRANCH = "colab"  # the branch the Pages workflow writes the Colab-ready notebooks to
COLAB_URL = "https://colab.research.google.com"

ROLE = re.compile(r"\{([A-Za-z][\w:.-]*)\}`([^`]*)`")
FENCE_OPEN = re.compile(r"^(?P<indent>[ ]{0,3})(?P<fence>`{3,}|~{3,}|:{3,})\{(?P<name>[\w:.-]+)\}[ \t]*(?P<args>.*)$")
FENCE_PLAIN = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})")
TARGET = re.compile(r"^\((?P<label>[^()\s]+)\)=\s*$")
ADMONITIONS = {"note", "tip", "hint", "important", "warning", "caution", "attention", "danger",
               "error", "seealso", "admonition", "dropdown", "margin", "sidebar", "topic", "epigraph"}
DROPPED = {"tableofcontents", "bibliography", "toctree", "glossary-index"}


# ----------------------------------------------------------------------------------- config
def config(root: Path = ROOT) -> dict:
    """The repository URL from ``_config.yml`` (the one place it is configured) and what follows."""
    import yaml

    cfg = yaml.safe_load((root / "_config.yml").read_text())
    url = cfg["repository"]["url"].rstrip("/")
    m = re.fullmatch(r"https://github\.com/([\w.-]+)/([\w.-]+)", url)
    if not m:
        raise ValueError(f"_config.yml repository.url must be https://github.com/OWNER/NAME, got {url!r}")
    owner, name = m.groups()
    book = cfg.get("html", {}).get("baseurl") or f"https://{owner}.github.io/{name}/"
    return {"repo_url": url, "owner": owner, "name": name, "branch": cfg["repository"].get("branch", "main"),
            "book_url": book.rstrip("/") + "/"}


# ----------------------------------------------------------------------------- install cell
INSTALL_TEMPLATE = '''\
# In Colab, install cvcourse at the version this book was built from (locally,
# `pip install -r requirements.txt` has installed it).
import sys
if "google.colab" in sys.modules:
    import subprocess
    CVCOURSE = "cvcourse @ git+{repo_url}@{ref}"

    class InstallFailed(Exception):
        def _render_traceback_(self):  # show the sentence alone, without a traceback
            return [str(self)]

    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", CVCOURSE], capture_output=True, text=True)
    if pip.returncode != 0:
        print(pip.stdout[-2000:], pip.stderr[-2000:], sep="\\n")
        raise InstallFailed(f"Installing {{CVCOURSE}} failed (pip's messages are above): check "
                            "that the runtime is connected to the internet, run this cell again, "
                            "and if it fails again report it at {repo_url}/issues.")
%matplotlib inline'''


def install_cell(repo_url: str, ref: str = "main") -> str:
    """The source of every notebook's first code cell; ``ref`` is a branch, tag or commit."""
    return INSTALL_TEMPLATE.format(repo_url=repo_url.rstrip("/"), ref=ref)


def write_install_cells(paths, repo_url: str) -> list[Path]:
    """Make the first code cell of each notebook ``install_cell(repo_url)``; returns those changed."""
    changed = []
    src = install_cell(repo_url)
    for path in paths:
        nb = json.loads(Path(path).read_text())
        cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
        if "".join(cell["source"]) != src:
            cell["source"] = src.splitlines(keepends=True)
            cell.setdefault("metadata", {}).setdefault("tags", ["hide-input"])
            Path(path).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(Path(path))
    return changed


# ------------------------------------------------------------------------- book references
def _make_id(text: str) -> str:
    """Sphinx's html id for a glossary term (``sphinx.util.nodes._make_id``)."""
    try:
        from sphinx.util.nodes import _make_id as sphinx_make_id

        return sphinx_make_id(text)
    except ImportError:  # the same rule: ASCII letters, digits, '-', '.', '_'
        ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
        return re.sub(r"[^A-Za-z0-9._]+", "-", " ".join(ascii_text.split())).strip("-")


def glossary_terms(path: Path) -> dict[str, str]:
    """``{lower-case term: html anchor}`` for every term of the ``{glossary}`` block in ``path``."""
    terms, inside = {}, False
    for line in path.read_text().splitlines():
        if re.match(r"^`{3,}\{glossary\}", line):
            inside = True
            continue
        if inside and re.match(r"^`{3,}\s*$", line):
            break
        if inside and line.strip() and not line[0].isspace() and not line.startswith(":"):
            terms[line.strip().lower()] = _make_id("term-" + line.strip())
    return terms


def _last_name(author: str) -> str:
    author = author.strip().replace("{", "").replace("}", "")
    return author.split(",")[0].strip() if "," in author else author.split()[-1]


def bibliography(path: Path) -> dict[str, tuple[str, str]]:
    """``{key: (authors as the book shows them, year)}`` from a BibTeX file (author-year style)."""
    entries = {}
    for m in re.finditer(r"@\w+\s*\{\s*([^,\s]+)\s*,(.*?)\n\}", path.read_text(), flags=re.S):
        key, body = m.groups()
        fields = dict((k.lower(), v) for k, v in re.findall(r"(\w+)\s*=\s*\{((?:[^{}]|\{[^{}]*\})*)\}", body))
        names = [_last_name(a) for a in re.split(r"\s+and\s+", fields.get("author", "Anonymous"))]
        who = names[0] if len(names) == 1 else f"{names[0]} and {names[1]}" if len(names) == 2 else f"{names[0]} et al."
        entries[key] = (who, fields.get("year", "n.d."))
    return entries


def labels(root: Path) -> dict[str, tuple[str, str]]:
    """``{label: (docname, title)}`` for every ``(label)=`` target in the book's sources."""
    found = {}
    for path in sorted((root / "book").glob("*")):
        if path.suffix not in (".md", ".ipynb"):
            continue
        doc = path.relative_to(root).with_suffix("").as_posix()
        text = _markdown_text(path)
        lines = text.splitlines()
        for i, line in enumerate(lines):
            m = TARGET.match(line)
            if m:
                nxt = next((ln for ln in lines[i + 1:] if ln.strip()), "")
                found[m["label"]] = (doc, nxt.lstrip("#").strip() if nxt.startswith("#") else m["label"])
    return found


def _markdown_text(path: Path) -> str:
    if path.suffix == ".ipynb":
        nb = json.loads(path.read_text())
        return "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return path.read_text()


def doc_title(root: Path, doc: str) -> str:
    for ext in (".ipynb", ".md"):
        path = root / f"{doc}{ext}"
        if path.exists():
            m = re.search(r"^#\s+(.+)$", _markdown_text(path), flags=re.M)
            return m.group(1).strip() if m else doc
    return doc


def glue_values(executed: Path | None) -> dict[str, str]:
    """``{name: text}`` of every ``glue(name, value)`` output of an executed notebook."""
    if executed is None or not Path(executed).exists():
        return {}
    values = {}
    for cell in json.loads(Path(executed).read_text())["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook", {})
            if "name" in meta:  # glue(..., display=False) prefixes the mime types
                prefix = len(meta.get("mime_prefix", ""))
                data = {k[prefix:]: v for k, v in out.get("data", {}).items()}
                text = data.get("text/markdown") or data.get("text/plain")
                if text is not None:
                    values[meta["name"]] = "".join(text)
    return values


# ------------------------------------------------------------------------------- converter
class Converter:
    """Plain-markdown rewriting of one book's MyST; see the module docstring."""

    def __init__(self, root: Path = ROOT, ref: str | None = None):
        self.root = Path(root)
        cfg = config(self.root)
        self.repo_url, self.book_url = cfg["repo_url"], cfg["book_url"]
        self.ref = ref or cfg["branch"]
        self.raw_url = f"https://raw.githubusercontent.com/{cfg['owner']}/{cfg['name']}/{self.ref}/"
        self.terms = glossary_terms(self.root / "book" / "glossary.md")
        self.bib = bibliography(self.root / "references.bib")
        self.labels = labels(self.root)
        self.glue: dict[str, str] = {}
        self.doc = "book/index"

    # roles --------------------------------------------------------------------------
    @staticmethod
    def _text_target(content: str) -> tuple[str | None, str]:
        m = re.fullmatch(r"\s*(.*?)\s*<([^<>]+)>\s*", content, flags=re.S)
        return (m.group(1), m.group(2).strip()) if m else (None, content.strip())

    def page(self, doc: str, anchor: str = "") -> str:
        return f"{self.book_url}{doc}.html" + (f"#{anchor}" if anchor else "")

    def term(self, content: str) -> str:
        text, key = self._text_target(content)
        anchor = self.terms.get(key.lower())
        if anchor is None:
            raise KeyError(f"{self.doc}: {{term}}`{content}` names no glossary term")
        return f"[{text or key}]({self.page('book/glossary', anchor)})"

    def cite(self, role: str, content: str) -> str:
        keys = [k.strip() for k in content.split(",") if k.strip()]
        missing = [k for k in keys if k not in self.bib]
        if missing:
            raise KeyError(f"{self.doc}: {{cite}} key(s) {missing} not in references.bib")
        url = self.page("book/references")
        if role in ("cite:t", "cite:ts"):
            return "; ".join(f"[{self.bib[k][0]} ({self.bib[k][1]})]({url})" for k in keys)
        inner = "; ".join(f"{self.bib[k][0]}, {self.bib[k][1]}" for k in keys)
        return f"([{inner}]({url}))"

    def glue_text(self, content: str) -> str:
        name, _, fmt = content.partition(":")
        if name not in self.glue:
            return f"`{name}` (computed below)"
        value = self.glue[name]
        if fmt:
            try:
                return format(ast.literal_eval(value), fmt)
            except (ValueError, SyntaxError, TypeError):
                pass
        return value.strip("'\"") if value[:1] in "'\"" else value

    def xref(self, role: str, content: str) -> str:
        text, target = self._text_target(content)
        if role == "doc":
            doc = os.path.normpath(os.path.join(os.path.dirname(self.doc), target)) if not target.startswith("/") \
                else target.lstrip("/")
            doc = re.sub(r"\.(md|ipynb)$", "", doc)
            return f"[{text or doc_title(self.root, doc)}]({self.page(doc)})"
        doc, title = self.labels.get(target, (None, target))
        if doc is None:
            return text or target
        shown = text or (title if role == "ref" else f"{'Equation' if role == 'eq' else 'this figure'}")
        shown = shown.replace("{number}", "").replace("%s", "").strip() or title
        return f"[{shown}]({self.page(doc, target)})"

    def role(self, m: re.Match) -> str:
        name, content = m.group(1), m.group(2)
        if name == "term":
            return self.term(content)
        if name.startswith("cite"):
            return self.cite(name, content)
        if name in ("glue", "glue:", "glue:any", "glue:text", "glue:md"):
            return self.glue_text(content)
        if name in ("ref", "doc", "numref", "eq", "any", "std:ref"):
            return self.xref(name, content)
        if name == "math":
            return f"${content}$"
        if name in ("code", "literal", "kbd", "file", "samp"):
            return f"`{content}`"
        if name == "abbr":
            text, expansion = self._text_target(content.replace("(", "<").replace(")", ">"))
            return f"{text} ({expansion})" if text else content
        if name in ("sub", "subscript"):
            return f"<sub>{content}</sub>"
        if name in ("sup", "superscript"):
            return f"<sup>{content}</sup>"
        text, _ = self._text_target(content)
        return text or content  # any other role: its text

    # directives ---------------------------------------------------------------------
    def directive(self, name: str, args: str, options: dict[str, str], body: str) -> str:
        name = name.lower()
        if name in DROPPED:
            return ""
        if name in ("math",):
            return f"$$\n{body.strip()}\n$$"
        if name in ("code", "code-block", "sourcecode", "code-cell"):
            return f"```{args.strip()}\n{body.rstrip()}\n```"
        if name == "literalinclude":
            return self.literalinclude(args.strip(), options)
        if name in ("figure", "image"):
            src = args.strip()
            url = src if re.match(r"https?://", src) else self.raw_url + os.path.normpath(
                os.path.join(os.path.dirname(self.doc), src))
            caption = self.markdown(body).strip() if name == "figure" else ""
            img = f"![{options.get('alt', caption or 'figure')}]({url})"
            return img + (f"\n\n*{caption}*" if caption else "")
        if name.startswith("glue"):
            key = args.strip() or body.strip()
            caption = self.markdown(body).strip() if args.strip() else ""
            return f"> *The figure `{key}` is drawn by the code below.*" + (f"\n>\n> {caption}" if caption else "")
        if name == "dropdown":  # closed until clicked, as in the book (Colab renders <details>)
            summary = self._inline_outside_code(args.strip() or "Details")
            return f"<details>\n<summary>{summary}</summary>\n\n{self.markdown(body).strip()}\n\n</details>"
        if name in ADMONITIONS:
            title = args.strip() if (name in ("admonition", "dropdown", "sidebar", "topic", "margin") and args.strip()) \
                else name.capitalize() if name != "seealso" else "See also"
        else:
            title = " ".join(x for x in (name.replace("-", " ").capitalize(), args.strip()) if x)
        inner = self.markdown(body).strip()
        quoted = "\n".join(">" if not ln.strip() else f"> {ln}" for ln in inner.splitlines())
        return f"> **{self._inline_outside_code(title)}**\n>\n{quoted}" if inner else f"> **{self._inline_outside_code(title)}**"

    def literalinclude(self, path: str, options: dict[str, str]) -> str:
        file = (self.root / os.path.normpath(os.path.join(os.path.dirname(self.doc), path))).resolve()
        text = file.read_text()
        obj = options.get("pyobject")
        if obj:
            text = _pyobject(text, obj, file)
        elif "lines" in options:
            lines = text.splitlines()
            keep = []
            for part in options["lines"].split(","):
                a, _, b = part.partition("-")
                keep += lines[int(a) - 1:int(b or a)]
            text = "\n".join(keep)
        lang = options.get("language", "python" if file.suffix == ".py" else "")
        rel = file.relative_to(self.root).as_posix()
        return f"```{lang}\n{text.rstrip()}\n```\n\n*From [`{rel}`]({self.repo_url}/blob/{self.ref}/{rel}).*"

    def markdown(self, text: str) -> str:
        """Plain markdown for one markdown cell (or a directive's body)."""
        # a role wrapped over two lines is one role: join its lines (a soft break is a space)
        text = re.sub(r"\{[A-Za-z][\w:.-]*\}`[^`]*`", lambda m: re.sub(r"[ \t]*\n[ \t]*", " ", m.group(0)), text)
        lines = text.splitlines()
        out, i = [], 0
        while i < len(lines):
            line = lines[i]
            m = FENCE_OPEN.match(line)
            if m:
                fence, closing = m["fence"], None
                char, n = fence[0], len(fence)
                for j in range(i + 1, len(lines)):
                    if re.fullmatch(rf"[ ]{{0,3}}{re.escape(char)}{{{n},}}\s*", lines[j]):
                        closing = j
                        break
                if closing is None:
                    raise ValueError(f"{self.doc}: directive {{{m['name']}}} is never closed")
                body = [ln[len(m["indent"]):] if ln.startswith(m["indent"]) else ln for ln in lines[i + 1:closing]]
                options = {}
                while body and re.match(r"^:[\w-]+:", body[0]):
                    k, _, v = body.pop(0)[1:].partition(":")
                    options[k.strip()] = v.strip()
                if body and body[0].strip() == "---":  # YAML options block
                    end = body.index("---", 1) if "---" in body[1:] else 0
                    for opt in body[1:end]:
                        k, _, v = opt.partition(":")
                        options[k.strip()] = v.strip()
                    body = body[end + 1:]
                block = self.directive(m["name"], m["args"], options, "\n".join(body))
                # a directive indented under a list item stays in that item
                out.append("\n".join(m["indent"] + ln if ln.strip() else ln for ln in block.splitlines()))
                i = closing + 1
                continue
            m = FENCE_PLAIN.match(line)
            if m:  # an ordinary code block: copied as it is
                j = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(m.group(1))), len(lines) - 1)
                out.extend(lines[i:j + 1])
                i = j + 1
                continue
            if TARGET.match(line) or re.match(r"^%", line) or line.strip() == "+++":
                i += 1
                continue
            line = re.sub(r"(\$\$)\s*\([\w:.-]+\)\s*$", r"\1", line)  # $$ ... $$ (label)
            out.append(self._inline_outside_code(line))
            i += 1
        return "\n".join(out)

    def _inline_outside_code(self, line: str) -> str:
        # split on code spans that are not a role's content: "{term}`x`" keeps its backticks
        pieces, pos = [], 0
        for m in re.finditer(r"(\{[A-Za-z][\w:.-]*\})?(`+)(.*?)\2", line):
            pieces.append(ROLE.sub(self.role, line[pos:m.start()]))
            chunk = m.group(0)
            pieces.append(ROLE.sub(self.role, chunk) if m.group(1) else chunk)
            pos = m.end()
        pieces.append(ROLE.sub(self.role, line[pos:]))
        return "".join(pieces)

    def notebook(self, nb: dict, doc: str, executed: Path | None = None) -> dict:
        """A Colab-ready copy of notebook ``nb`` (its docname, e.g. ``book/tasks``)."""
        self.doc, self.glue = doc, glue_values(executed)
        nb = copy.deepcopy(nb)
        first_code = True
        for cell in nb["cells"]:
            if cell["cell_type"] == "markdown":
                cell["source"] = self.markdown("".join(cell["source"])).splitlines(keepends=True)
            elif cell["cell_type"] == "code":
                src = "".join(cell["source"])
                if first_code:
                    src, first_code = install_cell(self.repo_url, self.ref), False
                src = re.sub(r"^from myst_nb import glue$", GLUE_IMPORT, src, flags=re.M)
                cell["source"] = src.splitlines(keepends=True)
                cell["outputs"], cell["execution_count"] = [], None
        nb.setdefault("metadata", {})["colab"] = {"provenance": [], "name": Path(doc).name + ".ipynb"}
        nb["metadata"]["cvcourse"] = {"ref": self.ref, "source": f"{self.repo_url}/blob/{self.ref}/{doc}.ipynb",
                                      "book": self.page(doc)}
        return nb


GLUE_IMPORT = """\
try:
    from myst_nb import glue
except ImportError:  # outside the book build (Colab): the text already holds the values
    def glue(name, value, display=True):
        if display:
            from IPython.display import display as show
            show(value)"""


def _pyobject(text: str, name: str, file: Path) -> str:
    tree = ast.parse(text)
    node: ast.AST = tree
    for part in name.split("."):
        node = next((n for n in ast.iter_child_nodes(node)
                     if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.name == part), None)
        if node is None:
            raise KeyError(f"literalinclude: {file} has no object {name!r}")
    lines = text.splitlines()
    start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
    return "\n".join(lines[start:node.end_lineno])


# -------------------------------------------------------------------------------- checks
SURVIVORS = [re.compile(r"\{[A-Za-z][\w:.-]*\}`"), re.compile(r"```+\s*\{"), re.compile(r"^\s*:::", re.M),
             re.compile(r"^\([^()\s]+\)=\s*$", re.M)]


def myst_left(nb: dict) -> list[str]:
    """The markdown lines of ``nb`` that still hold MyST syntax (roles, directives, targets)."""
    left = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for line in "".join(cell["source"]).splitlines():
            if any(p.search(line) for p in SURVIVORS):
                left.append(line)
    return left


def book_notebooks(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in (root / "book").glob("*.ipynb"))


def git_ref(root: Path = ROOT) -> str | None:
    """The commit being built: $CVCOURSE_REF, $GITHUB_SHA, or ``git rev-parse HEAD``."""
    ref = os.environ.get("CVCOURSE_REF") or os.environ.get("GITHUB_SHA")
    if ref:
        return ref
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def convert_book(out: Path, executed: Path | None = None, ref: str | None = None, root: Path = ROOT) -> list[Path]:
    """Write the Colab-ready copy of every notebook in book/ to ``out/book/``; returns the paths."""
    conv = Converter(root, ref or git_ref(root))
    written = []
    for path in book_notebooks(root):
        doc = path.relative_to(root).with_suffix("").as_posix()
        nb = conv.notebook(json.loads(path.read_text()), doc,
                           Path(executed) / path.relative_to(root) if executed else None)
        left = myst_left(nb)
        if left:
            raise ValueError(f"{doc}: MyST syntax left after conversion: {left[:3]}")
        target = Path(out) / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        written.append(target)
    (Path(out) / "README.md").write_text(
        f"# Colab-ready notebooks of cvcourse\n\nWritten by the book build from commit `{conv.ref}` of "
        f"{conv.repo_url} (do not edit: the sources are the notebooks in `book/` on `{config(root)['branch']}`). "
        f"Open one in Colab: {COLAB_URL}/github/{config(root)['owner']}/{config(root)['name']}/blob/"
        f"{COLAB_BRANCH}/book/tasks.ipynb\n")
    return written


# ------------------------------------------------------------------------ Sphinx extension
def colab_launch_button(app, pagename, templatename, context, doctree):
    """Point the Colab launch button at the Colab-ready copy on the ``colab`` branch."""
    for group in context.get("header_buttons", []):
        for button in group.get("buttons", []) if isinstance(group, dict) else []:
            url = button.get("url", "")
            if url.startswith(COLAB_URL + "/github/"):
                button["url"] = re.sub(r"^(.*?/github/[^/]+/[^/]+/blob/)[^/]+/", rf"\g<1>{COLAB_BRANCH}/", url)


def build_finished(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    build = Path(app.outdir).parent
    glossary = Path(app.outdir) / "book" / "glossary.html"
    if glossary.exists():  # the links the Colab copies make to glossary entries must exist
        ids = set(re.findall(r'id="(term-[^"]*)"', glossary.read_text()))
        missing = sorted(set(glossary_terms(Path(app.srcdir) / "book" / "glossary.md").values()) - ids)
        if missing:
            raise RuntimeError(f"glossary anchors the Colab-ready notebooks link to are not in {glossary}: {missing}")
    written = convert_book(build / "colab", executed=build / "jupyter_execute", root=Path(app.srcdir))
    from sphinx.util import logging

    logging.getLogger(__name__).info(f"Colab-ready notebooks: {len(written)} written to {build / 'colab'}")


def setup(app):
    app.connect("html-page-context", colab_launch_button, priority=600)  # after the theme's (501)
    app.connect("build-finished", build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the Colab-ready notebooks")
    parser.add_argument("--executed", type=Path, help="the build's jupyter_execute folder (glue values)")
    parser.add_argument("--ref", help="commit, tag or branch the install cell installs (default: HEAD)")
    parser.add_argument("--install-cells", action="store_true", help="rewrite every notebook's first code cell")
    args = parser.parse_args(argv)
    if args.install_cells:
        changed = write_install_cells(book_notebooks(), config()["repo_url"])
        print(f"install cell rewritten in {len(changed)} notebooks")
    if args.out:
        written = convert_book(args.out, args.executed, args.ref)
        print(f"{len(written)} Colab-ready notebooks in {args.out}")
    if not (args.out or args.install_cells):
        parser.error("nothing to do: give --out and/or --install-cells")


if __name__ == "__main__":
    sys.exit(main())
