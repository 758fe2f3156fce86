#!/usr/bin/env bash
# Installs the wheel of this checkout into a fresh venv together with the *lowest* torch and
# torchvision that pyproject.toml allows (or the versions given), lets pip pick everything else
# (so numpy comes out as the newest release: the pairing that breaks older torch), then loads every
# shipped checkpoint from site-packages and executes one notebook from a folder outside the
# repository. Downloads a full torch wheel with its CUDA libraries from PyPI (several GB): run it
# by hand or in a scheduled CI job, not in the test suite.
#
#   .ci/test_floors.sh                 # the floors: torch 2.3.1, torchvision 0.18.1
#   .ci/test_floors.sh 2.4.0 0.19.0    # any other pair
#   BELOW_FLOORS=1 .ci/test_floors.sh 2.2.2 0.17.2   # below the floors (to see why they are there)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
torch_version=${1:-2.3.1}
torchvision_version=${2:-0.18.1}
py=${PYTHON:-python3.11}
work=$(mktemp -d /tmp/cvcourse-floors.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "floor test: torch $torch_version, torchvision $torchvision_version, $("$py" --version) in $work"

"$py" -m venv "$work/venv"
pip="$work/venv/bin/python -m pip"
$pip install -q --upgrade "pip>=23" "setuptools>=77"
$pip wheel -q --no-deps --no-build-isolation -w "$work/dist" "$repo"
if [[ ${BELOW_FLOORS:-0} == 1 ]]; then
  # versions below pyproject's floors (to see why the floors are there): the wheel without its
  # torch requirement, everything else as pip resolves it
  $pip install -q "torch==$torch_version" "torchvision==$torchvision_version" numpy scipy matplotlib \
      ipywidgets tqdm scikit-image nbclient nbformat ipykernel
  $pip install -q --no-deps "$work"/dist/cvcourse-*.whl
else
  $pip install -q "torch==$torch_version" "torchvision==$torchvision_version" "$work"/dist/cvcourse-*.whl \
      nbclient nbformat ipykernel
fi
"$work/venv/bin/python" -m pip list 2>/dev/null | grep -i -E "^(torch|torchvision|numpy|scipy|matplotlib|ipywidgets|scikit-image) "

cd "$work"
env -u PYTHONPATH "$work/venv/bin/python" - <<'PY'
import cvcourse, cvcourse.pretrained as pretrained
assert "site-packages" in cvcourse.__file__, cvcourse.__file__
names = pretrained.available()
for name in names:
    pretrained.load(name)  # checks the sha256, then torch.load(weights_only=True)
print(f"loaded all {len(names)} checkpoints from {cvcourse.__file__}")
PY
cp "$repo/book/tasks.ipynb" "$work/tasks.ipynb"
env -u PYTHONPATH "$work/venv/bin/python" - <<'PY'
import nbformat
from nbclient import NotebookClient
nb = nbformat.read("tasks.ipynb", as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3").execute()
print("executed tasks.ipynb")
PY
echo "floor test passed: torch $torch_version, torchvision $torchvision_version"
