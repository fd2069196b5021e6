#!/usr/bin/env bash
# The README's "Installing with pip" steps, checked end to end as a new user meets them: build
# this checkout's wheel, make a new virtual environment, install torch, mmcv (tools/install_mmcv.sh),
# the wheel with its [mmdet,detectron2] extras and detectron2 (tools/install_detectron2.sh),
# then, from outside the checkout: import both adapters, build a loss from a shipped config in
# each framework and run it, and `pip check`. docs/install.md records a run.
#
#   tools/check_install.sh [WORKDIR]      (default: a new temporary folder)
#   FOCAL_PLUGINS_WHEELHOUSE=DIR          a prebuilt mmcv 2.1.0 wheel (else mmcv is compiled,
#                                         about 10 more minutes on 2 cores)
#   PYTHON=python3.11                     the interpreter for the new venv (>= 3.11)
#   KEEP=1                                keep WORKDIR (the venv) afterwards
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD
work=${1:-$(mktemp -d)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
venv=$work/venv
py=$venv/bin/python
step() { printf '[check %4ds] %s\n' "$SECONDS" "$*"; }
pin() { grep -E "^$1[=<>]" requirements/env.txt | head -n1; }

step "new venv in $venv ($(${PYTHON:-python3} --version))"
"${PYTHON:-python3}" -m venv "$venv"
pip() { "$py" -m pip --disable-pip-version-check -q "$@"; }

step "building the wheel from $root (isolated build)"
pip wheel --no-deps -w "$work/dist" "$root"
wheel=$(ls "$work"/dist/focal_plugins-*.whl)

step "pip install $(pin torch) $(pin torchvision)"
pip install "$(pin torch)" "$(pin torchvision)"

step "tools/install_mmcv.sh${FOCAL_PLUGINS_WHEELHOUSE:+ (wheel cache $FOCAL_PLUGINS_WHEELHOUSE)}"
PYTHON=$py bash tools/install_mmcv.sh

step "pip install $(basename "$wheel")[mmdet,detectron2]"
pip install "$wheel[mmdet,detectron2]"

step "tools/install_detectron2.sh"
PYTHON=$py bash tools/install_detectron2.sh

step "checks, run from $work (outside the checkout)"
cd "$work"
"$py" - <<'EOF'
import importlib.metadata as md
import os

import torch

import focal_plugins
from focal_plugins import configs

assert "site-packages" in focal_plugins.__file__, focal_plugins.__file__
print("focal_plugins", focal_plugins.__version__, "from", os.path.dirname(focal_plugins.__file__))
print("torch", torch.__version__, "| mmcv", md.version("mmcv"), "| mmdet", md.version("mmdet"),
      "| Pillow", md.version("Pillow"), "| black", md.version("black"))
print(len(configs.list_configs()), "shipped configs in", configs.config_dir())

logits, labels = torch.randn(64, 80), torch.randint(0, 81, (64,))

# mmdet: a loss from a shipped config, built by mmdet's registry
from mmengine.config import Config
import focal_plugins.mmdet  # noqa: F401
from mmdet.registry import MODELS

cfg = Config.fromfile(configs.get_config_file("mmdet/retinanet_r50_fpn_ghm_1x_coco.py"))
loss = MODELS.build(cfg.model.bbox_head.loss_cls)
value = loss(logits, labels, torch.ones(64), avg_factor=64.0)
print("mmdet:", type(loss).__module__ + "." + type(loss).__name__, "loss", round(float(value), 4))
assert type(loss).__module__.startswith("focal_plugins") and torch.isfinite(value)

# detectron2: a loss from a shipped LazyConfig, and a YACS config through the model zoo
from detectron2.config import LazyConfig, instantiate
from focal_plugins.detectron2 import model_zoo

lazy = model_zoo.get_config("fcos_R_50_FPN_1x_ghm.py")
loss = instantiate(lazy.model.cls_loss)
value = loss(logits, labels, 80, 64.0)  # (logits, labels, num_classes, normalizer)
print("detectron2:", type(loss).__module__ + "." + type(loss).__name__, "loss", round(float(value), 4))
assert torch.isfinite(value)
yacs = model_zoo.get_config("retinanet_R_50_FPN_1x_ghm.yaml")
assert yacs.MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.NAME == "GHMC"
assert "model" in LazyConfig.to_py(lazy)  # formats with black, from the [detectron2] extra
import tensorboard  # noqa: F401  (DefaultTrainer's writer)
print("ok")
EOF
step "pip check"
"$py" -m pip --disable-pip-version-check check
step "passed"
