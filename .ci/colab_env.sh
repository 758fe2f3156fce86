#!/usr/bin/env bash
# A Jupyter kernel with Colab's pinned front-end packages: ipywidgets 7.7.1, IPython 7.34,
# ipykernel 6.17 (the pins README.md's "In Colab" and test-command sections name), over
# everything else of the active environment.
#
# Creates .venv-colab (only those packages and their small dependencies), lets it see the
# active environment's site-packages after its own (torch, matplotlib, cvcourse, ...), and
# registers it as the kernel "cvcourse-colab" in the active environment. The README's test
# command runs nbval with this kernel, so every notebook executes under Colab's pins, while
# the book build (tests/test_browser.py, and the README's build command) executes them with
# the current versions. Idempotent: does nothing when the kernel is already set up.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
venv=$PWD/.venv-colab
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
prefix=$("$py" -c 'import sys; print(sys.prefix)')
kernel_dir=$prefix/share/jupyter/kernels/cvcourse-colab
check='import IPython, ipywidgets, ipykernel, cvcourse; assert ipywidgets.__version__ == "7.7.1" and IPython.version_info[0] == 7'

if [[ -x $venv/bin/python && -f $kernel_dir/kernel.json ]] && "$venv/bin/python" -c "$check" 2>/dev/null; then
  exit 0
fi
"$py" -m venv --clear "$venv"
# ipywidgets 7.7.1 without its notebook-extension dependencies (they pull in a whole Jupyter
# server; the kernel side does not import them).
"$venv/bin/pip" install -q --no-deps "ipywidgets==7.7.1" "ipython_genutils==0.2.0" 2>&1 | grep -v "is ignored" || true
"$venv/bin/pip" install -q "ipython==7.34.0" "ipykernel==6.17.1" 2>&1 | grep -v -e "is ignored" -e "dependency resolver" -e "requires jupyterlab-widgets" -e "requires widgetsnbextension" || true
vsite=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# After the pinned packages: the active environment (processing its .pth files, which the
# editable install of cvcourse needs).
echo "import site; site.addsitedir('$site')" > "$vsite/zz_active_env.pth"
"$venv/bin/python" -c "$check"
mkdir -p "$kernel_dir"
cat > "$kernel_dir/kernel.json" <<JSON
{
  "argv": ["$venv/bin/python", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
  "display_name": "Python 3 (Colab pins: ipywidgets 7.7.1, IPython 7.34)",
  "language": "python"
}
JSON
echo "kernel cvcourse-colab: $("$venv/bin/python" -c 'import IPython, ipywidgets, ipykernel; print("IPython", IPython.__version__, "ipywidgets", ipywidgets.__version__, "ipykernel", ipykernel.__version__)')"
