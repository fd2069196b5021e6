#!/usr/bin/env bash
# Makes detectron2 0.6 importable in the Python environment of PYTHON (which must have torch),
# the way this project's environment has it: detectron2 is not published on PyPI by its
# authors, and pb1-detectron2 0.6 there is its Python sources without the C++ ones. They are
# laid out in <env>/src/pb1-detectron2-0.6, put on the path with a .pth file, and given the
# pure-Python detectron2._C of tools/detectron2_C_standin.py (see there what it cannot do).
# detectron2's requirements come with `pip install "focal-plugins[detectron2]"`.
#
# It also applies to the laid-out sources the one fix for current Pillow that detectron2's
# main branch has: detectron2 0.6's detectron2/data/transforms/transform.py reads
# PIL.Image.LINEAR (ExtentTransform's default `interp=Image.LINEAR`), an alias of BILINEAR
# that Pillow 10 removed. Unpatched, with Pillow >= 10, `import detectron2.data` fails, and
# with it detectron2's own tools and mmdet's `import mmdet.models` (mmdet's D2Wrapper imports
# detectron2 wherever it is installed). detectron2's main branch reads Image.BILINEAR there.
# The file is checked first: it must hold exactly that one use, or the fix already; anything
# else stops the script with nothing changed.
#
#   PYTHON=.venv/bin/python tools/install_detectron2.sh
#
# Safe to run again: it then only refreshes the stand-in and the .pth file, and finds the
# Pillow fix applied.
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

# Pillow >= 10: Image.LINEAR -> Image.BILINEAR in transform.py, as detectron2's main branch
"$py" - "$d2/detectron2/data/transforms/transform.py" <<'PATCH'
import sys

path = sys.argv[1]
old, new = "interp=Image.LINEAR,", "interp=Image.BILINEAR,"
with open(path, encoding="utf-8") as f:
    src = f.read()
uses = src.count("Image.LINEAR")
if uses == 0 and src.count(new) == 1:
    print("[detectron2] transform.py reads Image.BILINEAR (the Pillow >= 10 fix is applied)")
elif uses == 1 and src.count(old) == 1 and src.count(new) == 0:
    with open(path, "w", encoding="utf-8") as f:
        f.write(src.replace(old, new))
    print("[detectron2] transform.py: Image.LINEAR -> Image.BILINEAR, as detectron2's main "
          "branch has it (Pillow 10 removed LINEAR)")
else:
    sys.exit(f"[detectron2] {path}: not the detectron2 0.6 source this script patches "
             f"({uses} uses of Image.LINEAR, {src.count(new)} of {new!r}); nothing changed")
PATCH
echo "$d2" > "$purelib/detectron2-src.pth"
