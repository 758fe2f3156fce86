"""Colab, simulated: the wheel in a fresh venv with Colab's front-end pins, notebooks run from outside the repo.

What Colab gives a student, as far as this machine can copy it: a Python with torch, torchvision,
numpy, matplotlib... already there, and ipywidgets 7.7.1, IPython 7.34, ipykernel 6.17.1. The test
builds the wheel of this checkout, makes a fresh venv with those three pins, lets it see this
environment's site-packages after its own (torch & co., like Colab's preinstalled ones; a plain path,
so this environment's editable cvcourse is *not* visible), installs the wheel with ``--no-index`` (so
nothing may need downloading or upgrading), executes three Colab-ready notebooks (converted by
book/_ext/colab_notebooks.py) from a temporary folder in a kernel of that venv, and loads every
shipped checkpoint from the venv's site-packages. The install cell runs too: outside Colab (no
``google.colab`` module) it installs nothing.
"""

import json
import os
import resource
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import colab_notebooks as cn  # noqa: E402

COLAB_PINS = {"ipywidgets": "7.7.1", "IPython": "7.34.0", "ipykernel": "6.17.1"}
NOTEBOOKS = ["tasks", "int_filters", "int_saliency"]
QUIET = ("is ignored", "dependency resolver", "requires jupyterlab-widgets", "requires widgetsnbextension",
         "incompatible", "Not uninstalling", "Can't uninstall")


PHASES = []  # (phase, wall s, CPU s of the subprocesses): printed at the end (pytest -s shows it)


def _phase(name, t0=[None, 0.0]):  # noqa: B006 (the list keeps the previous phase's clock)
    now, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = cpu.ru_utime + cpu.ru_stime
    if t0[0] is not None:
        PHASES.append((name, now - t0[0], cpu - t0[1]))
    t0[0], t0[1] = now, cpu


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)
    noise = "\n".join(ln for ln in (out.stdout + out.stderr).splitlines() if not any(q in ln for q in QUIET))
    assert out.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{noise[-4000:]}"
    return out.stdout


REQUIREMENTS_MET = """
from importlib.metadata import requires, version, PackageNotFoundError
from packaging.requirements import Requirement
unmet = []
for spec in requires("cvcourse"):
    req = Requirement(spec)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        if not req.specifier.contains(version(req.name), prereleases=True):
            unmet.append(f"{spec} (found {version(req.name)})")
    except PackageNotFoundError:
        unmet.append(f"{spec} (missing)")
print(unmet)
"""


@pytest.mark.slow
def test_colab_simulation(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "JUPYTER_PATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    _phase("start")

    # the wheel of this checkout (setuptools of this environment, no download)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist",
          ROOT], env=env)
    wheel = next((tmp_path / "dist").glob("cvcourse-*.whl"))
    _phase("wheel")

    # a fresh venv with Colab's front-end pins (as .ci/colab_env.sh makes them)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], env=env)
    py = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", py, "install", "-q"]  # this environment's pip, for the venv
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    # "preinstalled" torch & co.: this environment's site-packages after the venv's own, as a plain
    # path (its .pth files, among them the editable cvcourse of the repository, are not processed)
    (purelib / "zz_preinstalled.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # ipywidgets 7.7.1 without its notebook-extension dependencies (they pull in a Jupyter server);
    # pip installs in the venv what the pins need and the "preinstalled" packages lack
    _run(pip + ["--no-deps", "ipywidgets==7.7.1", "ipython_genutils==0.2.0"], env=env)
    _run(pip + ["ipython==7.34.0", "ipykernel==6.17.1"], env=env)
    _phase("venv with Colab's pins")

    # the wheel; every requirement it declares must already be met by what is there
    _run(pip + ["--no-deps", "--no-index", wheel], env=env)
    unmet = _run([py, "-c", REQUIREMENTS_MET], env=env, cwd=tmp_path).strip()
    assert unmet == "[]", f"the wheel's requirements not met by the preinstalled packages: {unmet}"
    local = {p.name.split("-")[0].lower() for p in purelib.glob("*.dist-info")}
    assert "cvcourse" in local and not local & {"torch", "torchvision", "numpy", "matplotlib"}

    _phase("wheel installed, requirements checked")
    # Colab-ready notebooks, in a folder outside the repository, with a last cell that reports
    # where everything came from
    work = tmp_path / "content"
    work.mkdir()
    conv = cn.Converter(ROOT, ref="main")
    probe = ("import cvcourse, IPython, ipywidgets, ipykernel\n"
             "print('VERSIONS', ipywidgets.__version__, IPython.__version__, ipykernel.__version__, cvcourse.__file__)")
    for name in NOTEBOOKS:
        nb = conv.notebook(json.loads((ROOT / "book" / f"{name}.ipynb").read_text()), f"book/{name}")
        assert cn.myst_left(nb) == []
        nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
                            "source": probe})
        nb["metadata"]["kernelspec"] = {"name": "colab-sim", "display_name": "colab-sim", "language": "python"}
        (work / f"{name}.ipynb").write_text(json.dumps(nb))
    kernels = tmp_path / "jupyter" / "kernels" / "colab-sim"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps(
        {"argv": [str(py), "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "colab-sim",
         "language": "python"}))
    env["JUPYTER_PATH"] = str(tmp_path / "jupyter")

    run = f"""
import json, sys
import nbformat
from nbclient import NotebookClient
for name in {NOTEBOOKS!r}:
    nb = nbformat.read(name + ".ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="colab-sim").execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    install_out = code[0].outputs
    assert not [o for o in install_out if o.get("output_type") == "error"], install_out
    print(name, [o.get("text", "") for o in code[-1].outputs])
"""
    out = _run([py, "-c", run], env=env, cwd=work, timeout=900)
    for name in NOTEBOOKS:
        line = next(ln for ln in out.splitlines() if ln.startswith(name + " "))
        widgets, ipython, ipykernel, package = line.split("VERSIONS ", 1)[1].split("\\n")[0].split()[:4]
        assert (widgets, ipython, ipykernel) == ("7.7.1", "7.34.0", "6.17.1"), line
        assert package.startswith(str(purelib)), f"{name} imported cvcourse from {package}, not the wheel"

    _phase(f"{len(NOTEBOOKS)} notebooks converted and executed")
    # every shipped checkpoint loads from the venv's site-packages, its sha256 checked
    check = ("import cvcourse.pretrained as p\n"
             "names = p.available()\n"
             "for n in names: p.load(n)\n"
             "print(len(names), p.WEIGHTS_DIR)")
    count, where = _run([py, "-c", check], env=env, cwd=work).split()
    assert Path(where) == purelib / "cvcourse" / "weights"
    assert int(count) == len(json.loads((ROOT / "cvcourse" / "weights" / "manifest.json").read_text())) >= 17
    _phase("checkpoints loaded")
    print("\n".join(f"{name}: {wall:.0f} s wall, {cpu:.0f} s CPU" for name, wall, cpu in PHASES))
