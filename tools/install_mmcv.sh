#!/usr/bin/env bash
# Installs mmcv 2.1.0 with its compiled ops (what mmdet 3.3 needs: mmcv < 2.2) into the Python
# environment of PYTHON, which must already have torch.
#
#   tools/install_mmcv.sh                       # into the active venv (python3 on PATH)
#   PYTHON=.venv/bin/python tools/install_mmcv.sh
#   FOCAL_PLUGINS_WHEELHOUSE=DIR tools/install_mmcv.sh
#   tools/install_mmcv.sh -c requirements/env.txt    # extra arguments go to pip install
#
# mmcv 2.1.0 is published only as an sdist, and its default isolated build fails (its
# setup.py imports torch and pkg_resources). So it is built here without build isolation,
# with setuptools < 81 (which still has pkg_resources), and with a C++ compiler wrapper that
# turns mmcv's -std=c++17 into -std=c++20 (recent torch headers require C++20). About
# 10 minutes on 2 cores (MAX_JOBS, default 2).
#
# FOCAL_PLUGINS_WHEELHOUSE=DIR: a wheel cache. An mmcv-2.1.0 wheel there is installed
# instead of building (it must have been built for the same Python and torch); a wheel
# built here is copied there when DIR is writable.
set -euo pipefail

py=${PYTHON:-python3}
cache=${FOCAL_PLUGINS_WHEELHOUSE:-}
say() { printf '[mmcv] %s\n' "$*"; }
pip() { "$py" -m pip --disable-pip-version-check -q "$@"; }

"$py" -c 'import torch' 2>/dev/null || {
    echo "[mmcv] $py has no torch: install torch first (mmcv builds against it)" >&2
    exit 1
}

# mmcv's own requirements (mmengine, opencv-python, addict, yapf, ...) come from the index.
if [ -n "$cache" ] && ls "$cache"/mmcv-2.1.0-*.whl >/dev/null 2>&1 \
        && pip install --find-links "$cache" --only-binary mmcv "$@" mmcv==2.1.0; then
    say "installed mmcv 2.1.0 from the wheel cache $cache"
else
    [ -n "$cache" ] && say "no usable mmcv-2.1.0 wheel in $cache: building it"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
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
    say "building mmcv 2.1.0 with its ops from the sdist (about 10 minutes on 2 cores)"
    (cd "$build" && CXX="$build/cxx" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} \
        "$py" -m pip --disable-pip-version-check wheel -q --no-build-isolation --no-deps \
        -w "$build/wheels" mmcv==2.1.0)
    pip install "$@" "$build"/wheels/mmcv-2.1.0-*.whl
    if [ -n "$cache" ] && mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ]; then
        cp "$build"/wheels/mmcv-2.1.0-*.whl "$cache"/ && say "kept the wheel in $cache"
    fi
fi
"$py" -c 'import mmcv, mmcv.ops; print("[mmcv] ready:", mmcv.__version__, "with ops")'
