"""Where the time of an mmdet RetinaNet R50 training iteration goes, per loss configuration.

    python tools/profile_iters.py --out DIR                        # CUDA, 800x1333, batch 2
    python tools/profile_iters.py --out DIR --device cpu --size 128x160 --iters 2 --warmup 1

For each variant (``--variants``, default all) and each ``--clip`` setting (default both:
without and with mmengine's ``clip_grad=dict(max_norm=35, norm_type=2)``) it builds mmdet's
``retinanet_r50_fpn_1x_coco`` model (random init, no download), runs ``--warmup`` training
iterations (forward, loss, backward, SGD step) on a fixed random batch, then

1. times ``--iters`` iterations (median ms, synchronised per iteration), and
2. records ``--profile-iters`` iterations under ``torch.profiler`` and saves the trace
   (``DIR/<variant>_<clip>.json``, for chrome://tracing or Perfetto) and the op table
   (``DIR/<variant>_<clip>.txt``).

It prints one table: iteration ms; host ms inside the two loss calls (``loss_cls`` and
``loss_bbox``, wrapped in ``record_function``), and how many torch ops they launch; GPU busy
ms (the union of the kernels' intervals) and idle ms per iteration (iteration span minus
busy: time the GPU waited for the host); host synchronisations per iteration (``.item()``
and friends: ``aten::_local_scalar_dense``; CUDA ``cudaStreamSynchronize`` /
``cudaDeviceSynchronize`` / blocking ``cudaMemcpy``), for the whole iteration and inside
the loss calls. On the CPU the GPU columns are "n/a"; the CPU run is a smoke test of the
script, its times say nothing about a GPU.

Variants:
    focal_l1         mmdet's own FocalLoss + L1Loss (the stock config)
    plugin_focal_l1  focal_plugins SigmoidFocalLoss (gamma 2, alpha 0.25) + mmdet's L1Loss
    plugin_ghm       focal_plugins GHMC (bins 30, momentum 0.75) + GHMR (mu 0.02, bins 10,
                     momentum 0.7, loss_weight 10): configs/mmdet/retinanet_r50_fpn_ghm_1x_coco.py
    mmdet_ghm        mmdet's own GHMC + GHMR, same settings (registered by the plugin as
                     MMDetGHMC / MMDetGHMR, since it takes the names GHMC / GHMR)

"torch ops" counts the top-level ``aten::`` ops the loss calls launch (each op's own children
not counted again); mmdet's RetinaHead calls each loss once per FPN level (5 levels), so a
row's figures are those of 5 calls of each loss per iteration.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

GHMC_ARGS = dict(bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)
GHMR_ARGS = dict(mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)
VARIANTS = {
    "focal_l1": (None, None),
    "plugin_focal_l1": (dict(type="SigmoidFocalLoss", gamma=2.0, alpha=0.25, loss_weight=1.0),
                        None),
    "plugin_ghm": (dict(type="GHMC", **GHMC_ARGS), dict(type="GHMR", **GHMR_ARGS)),
    "mmdet_ghm": (dict(type="MMDetGHMC", **GHMC_ARGS), dict(type="MMDetGHMR", **GHMR_ARGS)),
}
SYNC_OPS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
            "cudaMemcpy ", "cudaMemcpy")
LOSS_RANGES = ("loss_cls", "loss_bbox")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder for traces and op tables")
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--size", default="800x1333", help="image HxW (default COCO's 800x1333)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=30, help="timed iterations")
    p.add_argument("--profile-iters", type=int, default=3, help="profiled iterations")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--clip", default="both", choices=("both", "on", "off"))
    p.add_argument("--boxes", type=int, default=8, help="ground-truth boxes per image")
    args = p.parse_args(argv)
    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        p.error(f"--size must be HxW, got {args.size!r}")
    if h < 32 or w < 32:
        p.error(f"--size must be at least 32x32, got {args.size!r}")
    args.hw = (h, w)
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in args.variant_list if v not in VARIANTS]
    if bad or not args.variant_list:
        p.error(f"--variants: unknown {bad or args.variants!r}; choose from {', '.join(VARIANTS)}")
    for name in ("batch", "iters", "profile_iters", "boxes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        p.error(f"--warmup must be >= 0, got {args.warmup}")
    if args.device == "cuda":
        import torch
        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA device here (use --device cpu for a smoke run)")
    return args


def build_model(variant: str, device):
    from mmengine.config import Config
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    import focal_plugins.mmdet  # noqa: F401  registers the plugin's losses

    import mmdet
    cfg = Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs",
                                       "retinanet", "retinanet_r50_fpn_1x_coco.py"))
    cfg.model.backbone.init_cfg = None
    cls, box = VARIANTS[variant]
    if cls is not None:
        cfg.model.bbox_head.loss_cls = cls
    if box is not None:
        cfg.model.bbox_head.loss_bbox = box
    model = MODELS.build(cfg.model).to(device)
    model.init_weights()
    model.train()
    return model


def make_batch(args, device):
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    gen = torch.Generator().manual_seed(0)
    h, w = args.hw
    inputs = torch.randn(args.batch, 3, h, w, generator=gen).to(device)
    samples = []
    for _ in range(args.batch):
        xy = torch.rand(args.boxes, 2, generator=gen) * torch.tensor([w * 0.7, h * 0.7])
        wh = (torch.rand(args.boxes, 2, generator=gen) * 0.25 + 0.05) * torch.tensor([w, h])
        s = DetDataSample(metainfo=dict(img_shape=(h, w), pad_shape=(h, w), ori_shape=(h, w),
                                        batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1).to(device),
            labels=torch.randint(0, 80, (args.boxes,), generator=gen).to(device))
        s.ignored_instances = InstanceData(bboxes=torch.zeros(0, 4, device=device),
                                           labels=torch.zeros(0, dtype=torch.long, device=device))
        samples.append(s)
    return inputs, samples


def wrap_losses(model):
    """Each loss module's forward inside a record_function range of its attribute name."""
    import torch
    head = model.bbox_head
    for name in LOSS_RANGES:
        mod = getattr(head, name)
        inner = mod.forward

        def fwd(*a, _inner=inner, _name=name, **k):
            with torch.profiler.record_function(_name):
                return _inner(*a, **k)
        mod.forward = fwd


def step_fn(model, batch, clip: bool):
    import torch
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9, weight_decay=1e-4)
    inputs, samples = batch

    def step():
        losses = model.loss(inputs, samples)
        loss, _ = model.parse_losses(losses)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:   # what mmengine's OptimWrapper does with clip_grad=dict(max_norm=35, norm_type=2)
            torch.nn.utils.clip_grad_norm_(params, max_norm=35, norm_type=2)
        opt.step()
        return loss
    return step


def _union(intervals):
    total, end = 0.0, None
    for s, e in sorted(intervals):
        if end is None or s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def summarise(prof, n_iters: int, cuda: bool) -> dict:
    """Per-iteration figures from the profiler's events (times in ms)."""
    events = list(prof.events())
    ranges = {r: [e for e in events if e.name == r] for r in LOSS_RANGES}
    loss_host = sum(e.time_range.elapsed_us() for r in ranges.values() for e in r) / 1e3
    spans = [(e.time_range.start, e.time_range.end) for r in ranges.values() for e in r]

    def inside(e):
        s = e.time_range.start
        return any(a <= s <= b for a, b in spans)

    cpu_ops = [e for e in events if e.device_type.name == "CPU" and e.name.startswith("aten::")]
    # top-level aten ops launched by the loss calls (not their children)
    loss_ops = [e for e in cpu_ops if inside(e) and (e.cpu_parent is None or
                                                      not e.cpu_parent.name.startswith("aten::"))]

    def is_sync(e):
        return e.name in SYNC_OPS or (e.name.startswith("cudaMemcpy") and "Async" not in e.name)
    syncs = [e for e in events if is_sync(e)]
    out = dict(loss_host_ms=loss_host / n_iters, loss_ops=len(loss_ops) / n_iters,
               syncs=len(syncs) / n_iters,
               loss_syncs=sum(1 for e in syncs if inside(e)) / n_iters,
               busy_ms=None, idle_ms=None)
    steps = [e for e in events if e.name.startswith("ProfilerStep#")]
    if cuda and steps:
        kernels = [(e.time_range.start, e.time_range.end) for e in events
                   if e.device_type.name == "CUDA"]
        t0 = min(e.time_range.start for e in steps)
        t1 = max(max(e.time_range.end for e in steps), max((k[1] for k in kernels), default=0))
        busy = _union([(max(s, t0), min(e, t1)) for s, e in kernels if e > t0 and s < t1])
        out["busy_ms"] = busy / 1e3 / n_iters
        out["idle_ms"] = (t1 - t0 - busy) / 1e3 / n_iters
    return out


def run_variant(args, variant: str, clip: bool) -> dict:
    import torch
    from torch.profiler import ProfilerActivity, profile

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build_model(variant, device)
    wrap_losses(model)
    step = step_fn(model, make_batch(args, device), clip)

    def sync():
        if cuda:
            torch.cuda.synchronize()
    for _ in range(args.warmup):
        step()
    sync()
    times = []
    for _ in range(args.iters):
        t = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t) * 1e3)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=acts, record_shapes=False) as prof:
        for _ in range(args.profile_iters):
            step()
            sync()
            prof.step()
    tag = f"{variant}_{'clip' if clip else 'noclip'}"
    prof.export_chrome_trace(os.path.join(args.out, tag + ".json"))
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    with open(os.path.join(args.out, tag + ".txt"), "w") as f:
        f.write(prof.key_averages().table(sort_by=sort, row_limit=40))
    built = type(model.bbox_head.loss_cls).__module__ + "." + type(model.bbox_head.loss_cls).__name__
    row = dict(variant=variant, clip=clip, iter_ms=statistics.median(times), loss_cls=built)
    row.update(summarise(prof, args.profile_iters, cuda))
    if cuda:
        row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return row


def fmt(v, spec=".1f"):
    return "n/a" if v is None else format(v, spec)


def table(rows, args) -> str:
    head = ("| variant | clip_grad | iteration ms (median) | loss host ms | loss torch ops | "
            "GPU busy ms | GPU idle ms | syncs / iter (in losses) |")
    lines = [head, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['variant']} | {'35' if r['clip'] else 'off'} | {fmt(r['iter_ms'])} | "
                     f"{fmt(r['loss_host_ms'], '.2f')} | {fmt(r['loss_ops'], '.0f')} | "
                     f"{fmt(r['busy_ms'])} | {fmt(r['idle_ms'])} | "
                     f"{fmt(r['syncs'], '.0f')} ({fmt(r['loss_syncs'], '.0f')}) |")
    h, w = args.hw
    lines.append("")
    lines.append(f"{args.device}, batch {args.batch} of {h}x{w}, {args.warmup} warm-up, "
                 f"{args.iters} timed and {args.profile_iters} profiled iterations per row; "
                 "host ms and ops: inside the loss_cls and loss_bbox calls per iteration.")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    clips = {"both": (False, True), "on": (True,), "off": (False,)}[args.clip]
    rows = []
    for v in args.variant_list:
        for c in clips:
            rows.append(run_variant(args, v, c))
            print(f"[profile] {v} clip={'35' if c else 'off'}: {rows[-1]['iter_ms']:.1f} ms, "
                  f"loss_cls {rows[-1]['loss_cls']}", flush=True)
    text = table(rows, args)
    with open(os.path.join(args.out, "profile.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    return rows


if __name__ == "__main__":
    main()
