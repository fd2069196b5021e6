#!/usr/bin/env bash
# The README's install steps ("Install", with pip from a wheel built from this checkout),
# checked end to end as a new user meets them: build this checkout's wheel, make a new virtual
# environment, install torch, mmcv (tools/install_mmcv.sh), the wheel with its
# [mmdet,detectron2] extras and detectron2 (tools/install_detectron2.sh), with whatever Pillow
# pip picks (no pin). Then, from outside the checkout:
#
#   1. the Pillow pip picked, and detectron2's transform.py with detectron2 main's fix;
#   2. imports in several orders, each in a new process: detectron2 alone, mmdet alone (its
#      D2Wrapper imports detectron2), and the plugin's adapters before and after both;
#   3. the frameworks' stock tools, without the plugin, on a 2-image COCO 2017 layout made
#      from the embedded dataset (COCO's 80 categories; random init, so the losses mean
#      nothing): mmdet's tools/train.py on mmdet's own retinanet_r50_fpn_1x_coco.py,
#      detectron2's tools/train_net.py on its COCO-Detection/retinanet_R_50_FPN_1x.yaml and
#      tools/lazyconfig_train_net.py on its retinanet_R_50_FPN_1x.py, each 2 iterations and an
#      evaluation;
#   4. the plugin through mmdet's stock tools/train.py: the shipped demo GHM config with
#      GHMStatsHook, 4 iterations, then every `python -m focal_plugins.tools.NAME` on that run;
#   5. a loss from a shipped config in each framework, and `pip check`.
#
# docs/install.md records a run.
#
#   tools/check_install.sh [WORKDIR]      (default: a new temporary folder)
#   FOCAL_PLUGINS_WHEELHOUSE=DIR          a prebuilt mmcv 2.1.0 wheel (else mmcv is compiled,
#                                         about 10 more minutes on 2 cores)
#   PYTHON=python3.11                     the interpreter for the new venv (>= 3.11)
#   KEEP=1                                keep WORKDIR (the venv) afterwards; run again on the
#                                         same WORKDIR, the installs are found done
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
rm -rf "$work/dist"
pip wheel --no-deps -w "$work/dist" "$root"
wheel=$(ls "$work"/dist/focal_plugins-*.whl)

step "pip install $(pin torch) $(pin torchvision)"
pip install "$(pin torch)" "$(pin torchvision)"

step "tools/install_mmcv.sh${FOCAL_PLUGINS_WHEELHOUSE:+ (wheel cache $FOCAL_PLUGINS_WHEELHOUSE)}"
PYTHON=$py bash tools/install_mmcv.sh

step "pip install $(basename "$wheel")[mmdet,detectron2]"
pip install --force-reinstall --no-deps "$wheel"
pip install "$wheel[mmdet,detectron2]"

step "tools/install_detectron2.sh"
PYTHON=$py bash tools/install_detectron2.sh
d2src=$("$py" -c 'import sys; print(sys.prefix)')/src/pb1-detectron2-0.6
mmdet_mim=$("$py" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("mmdet").origin), ".mim"))')

run=$work/run
rm -rf "$run" && mkdir -p "$run/logs"
cd "$run"   # outside the checkout: the installed package, not the checkout, is imported
export MPLBACKEND=Agg PYTHONNOUSERSITE=1
unset PYTHONPATH
# runs "$@" with its output in logs/NAME.log; on failure shows the log's end
logged() {
    local name=$1; shift
    if ! "$@" > "logs/$name.log" 2>&1; then
        tail -n 40 "logs/$name.log" >&2
        echo "[check] FAILED: $name (log: $run/logs/$name.log)" >&2
        exit 1
    fi
}
expect() {  # expect NAME PATTERN: the log of NAME holds PATTERN
    grep -qE "$2" "logs/$1.log" || { tail -n 40 "logs/$1.log" >&2;
        echo "[check] FAILED: $1: no line matching '$2' in $run/logs/$1.log" >&2; exit 1; }
}

step "1. Pillow and detectron2's sources"
"$py" - "$d2src" <<'EOF'
import importlib.metadata as md
import os
import sys

from PIL import Image

t = os.path.join(sys.argv[1], "detectron2", "data", "transforms", "transform.py")
with open(t) as f:
    fixed = "Image.LINEAR" not in f.read()
print("Pillow", md.version("Pillow"), "(pip's pick; Image.LINEAR",
      "present)" if hasattr(Image, "LINEAR") else "removed)",
      "| detectron2 transform.py:", "fixed (Image.BILINEAR)" if fixed else "NOT fixed")
assert fixed, t
EOF

step "2. imports in any order, each in a new process"
for order in "detectron2.data.transforms" \
             "mmdet.models" \
             "detectron2.engine mmdet.models focal_plugins.mmdet focal_plugins.detectron2" \
             "mmdet.models detectron2.engine focal_plugins.detectron2 focal_plugins.mmdet" \
             "focal_plugins.detectron2 focal_plugins.mmdet mmdet.models detectron2.engine" \
             "focal_plugins.mmdet detectron2.engine focal_plugins.detectron2"; do
    "$py" - $order <<'EOF'
import importlib
import sys

from PIL import Image

had_linear = hasattr(Image, "LINEAR")
for name in sys.argv[1:]:
    importlib.import_module(name)
if not any(n.startswith("focal_plugins") for n in sys.argv[1:]):
    # the frameworks alone: nothing of the plugin loaded, no alias put back
    assert not any(m.startswith("focal_plugins") for m in sys.modules)
    assert hasattr(Image, "LINEAR") == had_linear
assert "detectron2.data.transforms" in sys.modules  # mmdet's D2Wrapper imports detectron2
print("  ok:", " -> ".join(sys.argv[1:]))
EOF
done

step "3. a 2-image COCO 2017 layout (data/coco, datasets/coco) from the embedded dataset"
logged synthetic "$py" -m focal_plugins.data.synthetic --out data/synthetic --seed 0 \
    --num-train 2 --num-val 2
"$py" - <<'EOF'
import json
import os

from detectron2.data.datasets.builtin_meta import COCO_CATEGORIES

cats = [dict(id=c["id"], name=c["name"], supercategory="thing") for c in COCO_CATEGORIES
        if c["isthing"]]
os.makedirs("data/coco/annotations")
for split in ("train", "val"):
    with open(f"data/synthetic/annotations/instances_{split}.json") as f:
        d = json.load(f)
    d["categories"] = cats  # the synthetic classes 1-8 become COCO's ids 1-8
    with open(f"data/coco/annotations/instances_{split}2017.json", "w") as f:
        json.dump(d, f)
    os.symlink(os.path.abspath(f"data/synthetic/{split}"), f"data/coco/{split}2017")
os.makedirs("datasets")
os.symlink(os.path.abspath("data/coco"), "datasets/coco")
EOF

step "3. mmdet's stock tools/train.py, mmdet's retinanet/retinanet_r50_fpn_1x_coco.py"
logged mmdet_stock "$py" "$mmdet_mim/tools/train.py" \
    "$mmdet_mim/configs/retinanet/retinanet_r50_fpn_1x_coco.py" --work-dir work_dirs/mmdet_stock \
    --cfg-options model.backbone.init_cfg=None train_cfg.max_epochs=1 \
    train_dataloader.batch_size=1 train_dataloader.num_workers=0 \
    train_dataloader.persistent_workers=False val_dataloader.num_workers=0 \
    val_dataloader.persistent_workers=False default_hooks.logger.interval=1
expect mmdet_stock 'Epoch\(train\) +\[1\]\[2/2\].*loss_cls'
expect mmdet_stock 'Epoch\(val\) +\[1\]\[2/2\]'

step "3. detectron2's stock tools/train_net.py, COCO-Detection/retinanet_R_50_FPN_1x.yaml"
logged d2_stock env DETECTRON2_DATASETS=datasets "$py" "$d2src/tools/train_net.py" \
    --config-file "$d2src/detectron2/model_zoo/configs/COCO-Detection/retinanet_R_50_FPN_1x.yaml" \
    MODEL.DEVICE cpu MODEL.WEIGHTS "" SOLVER.MAX_ITER 2 SOLVER.IMS_PER_BATCH 1 \
    DATALOADER.NUM_WORKERS 0 OUTPUT_DIR work_dirs/d2_stock
expect d2_stock 'iter: 1 .*loss_cls'
expect d2_stock 'copypaste: AP,AP50'

step "3. detectron2's stock tools/lazyconfig_train_net.py, COCO-Detection/retinanet_R_50_FPN_1x.py"
logged d2_lazy_stock env DETECTRON2_DATASETS=datasets "$py" "$d2src/tools/lazyconfig_train_net.py" \
    --config-file "$d2src/detectron2/model_zoo/configs/COCO-Detection/retinanet_R_50_FPN_1x.py" \
    train.device=cpu train.init_checkpoint= train.max_iter=2 dataloader.train.total_batch_size=1 \
    dataloader.train.num_workers=0 dataloader.test.num_workers=0 \
    train.output_dir=work_dirs/d2_lazy_stock
expect d2_lazy_stock 'iter: 1 .*loss_cls'
expect d2_lazy_stock 'copypaste: AP,AP50'

step "4. the plugin through mmdet's stock tools/train.py: demo GHM config + GHMStatsHook"
ghm_cfg=$("$py" -m focal_plugins.configs demo/retinanet_r18_synthetic_ghm.py)
cat > ghm_watch.py <<EOF
_base_ = '$ghm_cfg'
train_cfg = dict(max_iters=4, val_interval=4)
default_hooks = dict(checkpoint=dict(interval=4), logger=dict(interval=1))
custom_hooks = [dict(type='GHMStatsHook', interval=2)]
EOF
logged mmdet_plugin "$py" "$mmdet_mim/tools/train.py" ghm_watch.py --work-dir work_dirs/ghm
expect mmdet_plugin 'RetinaHead.loss_cls: focal_plugins.mmdet.losses.GHMC'
expect mmdet_plugin 'ghm/bbox_head.loss_bbox grad_share per bin'

step "4. python -m focal_plugins.tools.{plot_ghm_stats,plot_focal,ghmr_mu,plot_grad_density}"
logged plot_ghm_stats "$py" -m focal_plugins.tools.plot_ghm_stats work_dirs/ghm --out ghm_stats.png
logged plot_focal "$py" -m focal_plugins.tools.plot_focal --out focal_loss.png
logged ghmr_mu "$py" -m focal_plugins.tools.ghmr_mu demo/retinanet_r18_synthetic_ghm.py \
    --data-root data/synthetic --num-images 2 --checkpoint work_dirs/ghm/iter_4.pth
expect ghmr_mu 'suggested mu'
logged plot_grad_density "$py" -m focal_plugins.tools.plot_grad_density --data-root data/synthetic \
    --num-images 2 --run GHM demo/retinanet_r18_synthetic_ghm.py work_dirs/ghm/iter_4.pth \
    --out grad_density.png
for png in ghm_stats.png focal_loss.png grad_density.png; do
    [ "$(stat -c %s "$png")" -gt 1000 ] || { echo "[check] FAILED: $png" >&2; exit 1; }
done
echo "  ok: $(grep -h 'suggested mu' logs/ghmr_mu.log)"

step "5. a loss from a shipped config in each framework"
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

# the torchvision drop-in
from focal_plugins.ops import sigmoid_focal_loss
from torchvision.ops import sigmoid_focal_loss as tv

x, t = torch.randn(8, 80), (torch.rand(8, 80) < 0.1).float()
torch.testing.assert_close(sigmoid_focal_loss(x, t), tv(x, t))
torch.jit.script(sigmoid_focal_loss)
print("focal_plugins.ops.sigmoid_focal_loss == torchvision's; scripts")
print("ok")
EOF
step "pip check"
"$py" -m pip --disable-pip-version-check check
step "passed"
