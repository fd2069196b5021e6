#!/usr/bin/env bash
# The GPU checks of docs/benchmarks.md and docs/gpu.md, for a fresh GPU machine with no network.
#
#   bash tools/gpu_checks.sh WHEELS OUT kernels             # install, Triton kernels vs reference, loss timings
#   bash tools/gpu_checks.sh WHEELS OUT detectors [ITERS]   # the six shipped detector configs and
#                                                           # mmdet's own RetinaNet (FocalLoss + L1)
#   bash tools/gpu_checks.sh WHEELS OUT baselines [ITERS]   # mmdet's and detectron2's own RetinaNet
#   bash tools/gpu_checks.sh WHEELS OUT profile             # torch.profiler traces of mmdet RetinaNet
#                                                           # R50 iterations: FocalLoss + L1, plugin
#                                                           # focal + L1, plugin GHM, mmdet's GHM, each
#                                                           # with and without clip_grad
#                                                           # (tools/profile_iters.py; run it first)
#
# WHEELS: a copy of the wheels/sdists for that machine (mmcv with CUDA ops, mmdet, mmengine,
# detectron2 and fvcore sources, ...); OUT: where logs and results go. The install goes to
# /tmp/site and is skipped when already there. Each step has a time limit, so one failing or
# slow step leaves the others' results.
set -u
if [ $# -lt 3 ] || [[ ! "$3" =~ ^(kernels|detectors|baselines|profile)$ ]]; then
    echo "usage: $0 WHEELS OUT kernels|detectors|baselines|profile [ITERS] (got: $*)" >&2; exit 2
fi
W=$(cd "$1" && pwd) || exit 2; OUT=$2; WHAT=$3; ITERS=${4:-100}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ ! -f /tmp/site/.done ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$W"/*.whl || exit 1
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site \
        "$W"/antlr4-python3-runtime-4.9.3.tar.gz || exit 1
    tar xzf "$W"/pb1-detectron2-0.6.tar.gz -C /tmp && tar xzf "$W"/fvcore-0.1.5.post20221221.tar.gz -C /tmp || exit 1
    cp tools/detectron2_C_standin.py /tmp/pb1-detectron2-0.6/detectron2/_C.py
    # detectron2 0.6 names Pillow's removed Image.LINEAR (mmdet.models imports detectron2 when present)
    sed -i 's/Image\.LINEAR/Image.BILINEAR/g' /tmp/pb1-detectron2-0.6/detectron2/data/transforms/transform.py
    touch /tmp/site/.done
fi
export PYTHONPATH=$ROOT:/tmp/site:/tmp/pb1-detectron2-0.6:/tmp/fvcore-0.1.5.post20221221
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
python3 -c "import torch, triton, mmcv, mmdet, detectron2, focal_plugins as f; \
print('torch', torch.__version__, 'triton', triton.__version__, 'mmcv', mmcv.__version__, \
'mmdet', mmdet.__version__, 'cuda ok', torch.cuda.is_available())" || exit 1

LOGS=$OUT
step() {  # step NAME LIMIT_S CMD...: runs CMD with a limit, log to LOGS/NAME.log
    local name=$1 lim=$2; shift 2
    local t0=$(date +%s)
    timeout "$lim" "$@" > "$LOGS/$name.log" 2>&1
    local rc=$?
    echo "== $name: exit $rc, $(( $(date +%s) - t0 )) s"
    tail -n 4 "$LOGS/$name.log"
}

if [ "$WHAT" = kernels ]; then
    step kernels 240 python3 -m focal_plugins.kernels.tests._kernel_checks cuda
    step bench 200 python3 -W ignore tools/benchmark.py --device cuda --sizes 401400x80,20000x80 --repeats 30
    exit 0
fi

if [ "$WHAT" = profile ]; then   # where an iteration's time goes (host in the losses, GPU idle, syncs)
    step profile 420 python3 -W ignore tools/profile_iters.py --device cuda --out "$OUT/profile"
    cat "$OUT/profile/profile.md"
    exit 0
fi

# detectors: full-resolution configs, random-initialised backbones, batch 2, ITERS iterations
[ -f data/synthetic/annotations/instances_val2017.json ] || \
    python3 -m focal_plugins.data.synthetic --out data/synthetic --seed 0 > /dev/null || exit 1
mkdir -p work_dirs/gpu/logs
LOGS=work_dirs/gpu/logs
cat > work_dirs/gpu/retinanet_r50_fpn_focal_stock.py <<'EOF'
_base_ = 'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py'
EOF
cat > work_dirs/gpu/retinanet_R_50_FPN_1x_stock.yaml <<'EOF'
_BASE_: "model_zoo://COCO-Detection/retinanet_R_50_FPN_1x.yaml"
EOF
MM="configs/mmdet/retinanet_r50_fpn_ghm_1x_coco.py work_dirs/gpu/retinanet_r50_fpn_focal_stock.py
    configs/mmdet/fcos_r50-caffe_fpn_gn-head_ghm_1x_coco.py configs/mmdet/faster-rcnn_r50_fpn_ghm_1x_coco.py"
D2="configs/detectron2/retinanet_R_50_FPN_1x_ghm configs/detectron2/faster_rcnn_R_50_FPN_1x_ghm"
if [ "$WHAT" = baselines ]; then   # the frameworks' own RetinaNet losses, same settings
    MM=work_dirs/gpu/retinanet_r50_fpn_focal_stock.py; D2=work_dirs/gpu/retinanet_R_50_FPN_1x_stock
fi
for c in $MM; do
    n=$(basename "$c" .py)
    step "mmdet_$n" 120 python3 tools/train.py "$c" --data-root data/synthetic --max-iters "$ITERS" \
        --work-dir "work_dirs/gpu/mmdet/$n" --cfg-options model.backbone.init_cfg=None train_dataloader.batch_size=2
done
for c in $D2; do
    n=$(basename "$c")
    step "d2_$n" 120 python3 tools/train_net.py --config-file $c.yaml --num-gpus 1 \
        --data-root data/synthetic --max-iter "$ITERS" \
        MODEL.WEIGHTS "" SOLVER.IMS_PER_BATCH 2 SOLVER.BASE_LR 0.0025 OUTPUT_DIR work_dirs/gpu/d2/$n
done
[ "$WHAT" = baselines ] || step d2_fcos_R_50_FPN_1x_ghm 120 python3 tools/train_net.py --config-file configs/detectron2/fcos_R_50_FPN_1x_ghm.py \
    --num-gpus 1 --data-root data/synthetic --max-iter "$ITERS" \
    train.init_checkpoint="" dataloader.train.total_batch_size=2 optimizer.lr=0.0025 \
    train.output_dir=work_dirs/gpu/d2/fcos_R_50_FPN_1x_ghm
{ find work_dirs/gpu -name scalars.json -o -name metrics.json; ls work_dirs/gpu/logs/*.log; } | tar czf "$OUT/detectors.tgz" -T -
