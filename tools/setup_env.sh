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
    wheelhouse=${FOCAL_PLUGINS_WHEELHOUSE:-}
    if [ -n "$wheelhouse" ] && ls "$wheelhouse"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
        say "installing mmcv 2.1.0 from the wheelhouse $wheelhouse"
        pip install --no-deps --no-index --find-links "$wheelhouse" mmcv==2.1.0
    else
        [ -n "$wheelhouse" ] && say "no mmcv-2.1.0 wheel in FOCAL_PLUGINS_WHEELHOUSE=$wheelhouse"
        say "building mmcv 2.1.0 with its ops from the sdist (about 10 minutes on 2 cores)"
        # mmcv's setup.py asks for C++17; torch 2.14's headers need C++20.
        build=$venv/build/mmcv
        mkdir -p "$build"
        cat > "$build/cxx" <<'CXX'
#!/usr/bin/env bash
args=()
for a in "$@"; do
    case "$a" in -std=c++14|-std=c++17) a=-std=c++20 ;; esac
    args+=("$a")
done
exec "${REAL_CXX:-c++}" "${args[@]}"
CXX
        chmod +x "$build/cxx"
        pip install "setuptools>=77,<81" wheel ninja packaging
        (cd "$build" && CXX="$build/cxx" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} \
            "$py" -m pip --disable-pip-version-check wheel -q --no-build-isolation --no-deps \
            -w "$build/wheels" mmcv==2.1.0)
        pip install --no-deps "$build"/wheels/mmcv-2.1.0-*.whl
    fi
fi

say "installing mmengine, mmdet, detectron2's requirements and focal-plugins"
pip install -c requirements/env.txt -e ".[mmdet,detectron2,dev]"

d2=$venv/src/pb1-detectron2-0.6
if [ ! -f "$d2/detectron2/__init__.py" ]; then
    # detectron2 is not on PyPI; pb1-detectron2 0.6 is its Python sources without the
    # C++ ones. Its setup.py imports torch, hence --no-build-isolation.
    say "laying out detectron2 0.6's Python sources (pb1-detectron2)"
    mkdir -p "$venv/src"
    pip download --no-deps --no-build-isolation --no-binary :all: -d "$venv/src" pb1-detectron2==0.6
    tar xzf "$venv/src/pb1-detectron2-0.6.tar.gz" -C "$venv/src"
    # Test-environment stand-in for the compiled ops (deformable conv, rotated boxes),
    # which RetinaNet, FCOS and Faster R-CNN do not use.
    printf '%s\n' '"""Stand-in for detectron2._C: this environment has no compiled detectron2 ops."""' \
        '' 'def __getattr__(name):' \
        '    raise NotImplementedError(f"detectron2._C.{name}: detectron2 was laid out without its C++ ops")' \
        > "$d2/detectron2/_C.py"
    purelib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$d2" > "$purelib/detectron2-src.pth"
fi

"$py" - <<'EOF'
import importlib.metadata as m
import mmcv.ops, mmdet, detectron2, torch
print("[setup] ready: torch", torch.__version__, "| mmcv", mmcv.__version__, "(ops)",
      "| mmdet", mmdet.__version__, "| detectron2", detectron2.__version__,
      "| Pillow", m.version("Pillow"))
EOF
