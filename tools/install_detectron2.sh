#!/usr/bin/env bash
# Makes detectron2 0.6 importable in the Python environment of PYTHON (which must have torch),
# the way this project's environment has it: detectron2 is not published on PyPI by its
# authors, and pb1-detectron2 0.6 there is its Python sources without the C++ ones. They are
# laid out in <env>/src/pb1-detectron2-0.6, put on the path with a .pth file, and given the
# pure-Python detectron2._C of tools/detectron2_C_standin.py (see there what it cannot do).
# detectron2's requirements come with `pip install "focal-plugins[detectron2]"`.
#
#   PYTHON=.venv/bin/python tools/install_detectron2.sh
#
# Safe to run again: it then only refreshes the stand-in and the .pth file.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python3}
say() { printf '[detectron2] %s\n' "$*"; }

prefix=$("$py" -c 'import sys; print(sys.prefix)')
purelib=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
d2=$prefix/src/pb1-detectron2-0.6
if [ ! -f "$d2/detectron2/__init__.py" ]; then
    say "laying out detectron2 0.6's Python sources (pb1-detectron2) in $prefix/src"
    mkdir -p "$prefix/src"
    # its setup.py imports torch even to read its metadata, hence --no-build-isolation
    "$py" -m pip --disable-pip-version-check -q download --no-deps --no-build-isolation \
        --no-binary :all: -d "$prefix/src" pb1-detectron2==0.6
    tar xzf "$prefix/src/pb1-detectron2-0.6.tar.gz" -C "$prefix/src"
fi
if ! cmp -s "$here/detectron2_C_standin.py" "$d2/detectron2/_C.py"; then
    say "installing the detectron2._C stand-in"
    cp "$here/detectron2_C_standin.py" "$d2/detectron2/_C.py"
fi
echo "$d2" > "$purelib/detectron2-src.pth"
