#!/usr/bin/env bash
# Builds the project's environment in .venv/: torch, mmcv with its compiled ops, mmdet,
# detectron2 0.6 and this package (editable). Called by `make`; safe to run again.
#
#   FOCAL_PLUGINS_WHEELHOUSE=DIR   a folder with a prebuilt mmcv 2.1.0 wheel for this
#                                  Python and torch; without it mmcv is built from its sdist.
#   PYTHON=python3.11              the interpreter that creates the venv (>= 3.11).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
venv=$root/.venv
py=$venv/bin/python
pip() { "$py" -m pip --disable-pip-version-check -q "$@"; }
say() { printf '[setup] %s\n' "$*"; }

PYTHON=${PYTHON:-python3}
if [ ! -x "$py" ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
        echo "[setup] $PYTHON is $("$PYTHON" --version 2>&1); focal-plugins needs Python >= 3.11 (set PYTHON=...)" >&2
        exit 1
    }
    say "creating $venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$venv"
fi

pin() { grep -E "^$1[=<>]" requirements/env.txt | head -n1; }

installed() { "$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null; }

if ! installed torch 2.14.1 || ! installed torchvision 0.29.1; then
    say "installing $(pin torch) $(pin torchvision)"
    pip install "$(pin torch)" "$(pin torchvision)"
fi

if ! installed mmcv 2.1.0; then
    # FOCAL_PLUGINS_WHEELHOUSE (a prebuilt wheel) is passed on; without it mmcv is compiled.
    PYTHON="$py" bash tools/install_mmcv.sh -c requirements/env.txt
fi

say "installing mmengine, mmdet, detectron2's requirements and focal-plugins"
pip install -c requirements/env.txt -e ".[mmdet,detectron2,dev]"

# detectron2 0.6's Python sources with the pure-Python detectron2._C of
# tools/detectron2_C_standin.py; refreshes the stand-in when that file changed.
PYTHON="$py" bash tools/install_detectron2.sh

"$py" - <<'EOF'
import importlib.metadata as m
import mmcv.ops, mmdet, detectron2, torch
print("[setup] ready: torch", torch.__version__, "| mmcv", mmcv.__version__, "(ops)",
      "| mmdet", mmdet.__version__, "| detectron2", detectron2.__version__,
      "| Pillow", m.version("Pillow"))
EOF
