"""Train an mmdetection 3.x detector (mmengine Runner), mmdet's tools/train.py conventions.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--data-root COCO_ROOT] [--max-iters N]
                          [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]

Multi-GPU (one process per GPU)::

    torchrun --nproc_per_node=8 tools/train.py CONFIG --launcher pytorch

``--data-root DIR`` points any config at a COCO-format root: it sets the train, val and test
datasets' ``data_root``, annotation files and image folders, and the COCO evaluators'
``ann_file``. Two layouts are recognised:

* COCO 2017: ``annotations/instances_{train,val}2017.json`` with ``train2017/``, ``val2017/``
* the embedded synthetic dataset: ``annotations/instances_{train,val}.json`` with
  ``train/``, ``val/`` (``python -m focal_plugins.data.synthetic --out DIR``)

The test split uses the val annotations (COCO's test-dev has none). The class names are read
from the train annotation file and every ``num_classes`` in the model is set to their number
(for COCO these are mmdet's defaults: 80 classes), so a COCO config trains on the embedded
dataset too.

``--resume`` without a path resumes from the latest checkpoint in the work dir. Checkpoints
hold the model's ``state_dict`` including the GHM losses' running statistics (buffers), so a
resumed GHM run continues with the same gradient density as an uninterrupted one.

Configs that load the plugin say so themselves:
``custom_imports = dict(imports=['focal_plugins.mmdet'], allow_failed_imports=False)``.
A config that names ``GHMC`` or ``GHMR`` without it builds mmdet's own classes of those names:
this tool warns about each such loss, and logs the class and module of every loss it built.
A config that names a type only the plugin registers (``SoftmaxFocalLoss``, ``GHMStatsHook``,
``NoPauseIterBasedTrainLoop``, ...) without it is refused before anything is built.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

# COCO-format layouts --data-root understands: (train ann, train images, val ann, val images)
LAYOUTS = (
    ("annotations/instances_train2017.json", "train2017/",
     "annotations/instances_val2017.json", "val2017/"),
    ("annotations/instances_train.json", "train/",
     "annotations/instances_val.json", "val/"),
)


def parse_args(argv=None):
    from mmengine.config import DictAction

    p = argparse.ArgumentParser(description="Train a detector (mmdetection 3.x).")
    p.add_argument("config", help="train config file path")
    p.add_argument("--work-dir", help="the dir to save logs and checkpoints")
    p.add_argument("--amp", action="store_true", help="automatic mixed precision training")
    p.add_argument("--auto-scale-lr", action="store_true",
                   help="scale the learning rate with the total batch size "
                   "(config's auto_scale_lr.base_batch_size)")
    p.add_argument("--resume", nargs="?", type=str, const="auto",
                   help="resume from CKPT, or from the latest checkpoint in the work dir "
                   "when no path is given")
    p.add_argument("--data-root", help="a COCO-format dataset root (see the module doc)")
    p.add_argument("--max-iters", type=int,
                   help="train this many iterations, validate and checkpoint at the end; "
                   "iteration-based schedules are stretched to match, epoch-based ones "
                   "(mmdet's 1x) become a linear warm-up then the config's LR")
    p.add_argument("--cfg-options", nargs="+", action=DictAction,
                   help="override config settings, key=value (e.g. "
                   "model.bbox_head.loss_cls.gamma=1.0 train_dataloader.batch_size=4)")
    p.add_argument("--ghm-stats", type=int, metavar="N",
                   help="log the GHM losses' bin statistics every N iterations "
                   "(adds custom_hooks GHMStatsHook; README: Watching GHM while it trains)")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                   help="job launcher")
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    p.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = p.parse_args(argv)
    if args.ghm_stats is not None and args.ghm_stats < 1:
        p.error(f"--ghm-stats must be >= 1, got {args.ghm_stats}")
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


def detect_layout(root: str):
    for layout in LAYOUTS:
        if osp.isfile(osp.join(root, layout[0])) and osp.isfile(osp.join(root, layout[2])):
            return layout
    expected = "; or ".join(f"{a} + {b} and {c} + {d}" for a, b, c, d in LAYOUTS)
    raise FileNotFoundError(f"--data-root {root}: no COCO layout found (expected {expected})")


def _innermost_dataset(ds):
    """Unwraps RepeatDataset/ClassBalancedDataset-style wrappers (``dataset=`` inside)."""
    while isinstance(ds, dict) and "dataset" in ds and isinstance(ds["dataset"], dict):
        ds = ds["dataset"]
    return ds


def apply_data_root(cfg, root: str):
    """Points the config's datasets and COCO evaluators at the COCO-format ``root``."""
    root = root.rstrip("/") + "/"
    train_ann, train_img, val_ann, val_img = detect_layout(root)
    cfg.data_root = root
    for key, ann, img in (("train_dataloader", train_ann, train_img),
                          ("val_dataloader", val_ann, val_img),
                          ("test_dataloader", val_ann, val_img)):
        loader = cfg.get(key)
        if not loader or "dataset" not in loader:
            continue
        ds = _innermost_dataset(loader["dataset"])
        datasets = ds["datasets"] if "datasets" in ds else [ds]  # ConcatDataset
        for d in datasets:
            d = _innermost_dataset(d)
            d["data_root"] = root
            d["ann_file"] = ann
            d["data_prefix"] = dict(img=img)
    for key in ("val_evaluator", "test_evaluator"):
        ev = cfg.get(key)
        for e in ev if isinstance(ev, (list, tuple)) else [ev]:
            if isinstance(e, dict) and "ann_file" in e:
                e["ann_file"] = root + val_ann
    # the classes come from the annotation file (for COCO: its 80 names, mmdet's default)
    import json

    with open(osp.join(root, train_ann)) as f:
        cats = sorted(json.load(f)["categories"], key=lambda c: c["id"])
    classes = tuple(c["name"] for c in cats)
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        loader = cfg.get(key)
        if loader and "dataset" in loader:
            ds = _innermost_dataset(loader["dataset"])
            for d in ds["datasets"] if "datasets" in ds else [ds]:
                d = _innermost_dataset(d)
                d["metainfo"] = dict(d.get("metainfo") or {}, classes=classes)
    _set_num_classes(cfg.model, len(classes))
    return cfg


def _set_num_classes(node, n):
    """Sets every ``num_classes`` in the model config (dense heads, RoI box heads)."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "num_classes" and isinstance(v, int):
                node[k] = n
            else:
                _set_num_classes(v, n)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _set_num_classes(v, n)


def apply_max_iters(cfg, max_iters: int):
    """Shortens/lengthens an iteration-based train loop config (one with ``max_iters``) and
    its schedule consistently."""
    tc = cfg.train_cfg
    if "max_iters" not in tc:
        # an epoch-based config (mmdet's 1x schedules): train a fixed number of iterations
        # instead, with a linear warm-up to the config's LR, then constant
        cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters,
                             val_interval=max_iters)
        warm = max(1, min(500, max_iters // 4))
        cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.001, by_epoch=False,
                                    begin=0, end=warm)]
        hooks = cfg.get("default_hooks", {})
        if hooks.get("checkpoint") is not None:
            hooks["checkpoint"].update(by_epoch=False, interval=max_iters)
        if hooks.get("logger") is not None:
            hooks["logger"]["interval"] = min(hooks["logger"].get("interval", 50), 10)
        cfg.log_processor = dict(cfg.get("log_processor") or {}, by_epoch=False)
        return cfg
    old = tc["max_iters"]
    tc["max_iters"] = max_iters
    tc["val_interval"] = max_iters
    ckpt = cfg.get("default_hooks", {}).get("checkpoint")
    if ckpt is not None:
        ckpt["interval"] = max_iters
    scale = max_iters / old
    for s in cfg.get("param_scheduler") or []:
        if s.get("by_epoch", True):
            continue
        for k in ("begin", "end", "T_max"):
            if k in s and s[k] is not None and s[k] > 0:
                # warm-up keeps its length when it still fits in the shorter run
                if s.get("type") == "LinearLR" and s[k] < max_iters // 2:
                    continue
                s[k] = max(1, int(round(s[k] * scale)))
        if "milestones" in s:
            s["milestones"] = [max(1, int(round(m * scale))) for m in s["milestones"]]
    return cfg


# the loss names focal_plugins.mmdet registers (its PLUGIN_LOSSES), from the loss spec, which
# imports no framework: the check below does not import, and so register, the plugin
from focal_plugins.spec import LOSS_NAMES as PLUGIN_LOSS_NAMES  # noqa: E402

# the plugin's loss names mmdet also registers (its own GHMC, GHMR)
_MMDET_HAS = ("GHMC", "GHMR")


# names only focal_plugins.mmdet registers (mmdet and mmengine have none of them), by registry
PLUGIN_ONLY_NAMES = {
    "model": tuple(n for n in PLUGIN_LOSS_NAMES if n not in _MMDET_HAS)
    + ("MMDetGHMC", "MMDetGHMR"),
    "weight initializer": ("SoftmaxPriorInit",),
    "hook": ("GHMStatsHook",),
    "loop": ("NoPauseIterBasedTrainLoop",),
}


def _types(node, path):
    """(path, name) of every string ``type`` in a config tree."""
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            yield f"{path}.type" if path else "type", node["type"]
        for k, v in node.items():
            yield from _types(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, (list, tuple)):
        for i, v in enumerate(node):
            yield from _types(v, f"{path}[{i}]")


def check_plugin_imported(cfg) -> None:
    """Refuse, before anything is built, a config that names a type only focal_plugins.mmdet
    registers but does not import it: mmengine would fail later, at that component's build
    (a train loop only when training starts)."""
    if imports_plugin(cfg):
        return
    kinds = {name: kind for kind, names in PLUGIN_ONLY_NAMES.items() for name in names}
    found = [(where, name) for where, name in _types(cfg.to_dict(), "")
             if name.split(".")[-1] in kinds]
    if found:
        named = ", ".join(f"{where}={name!r} (a {kinds[name.split('.')[-1]]})"
                          for where, name in found)
        raise SystemExit(
            f"[train] error: the config names {named}, which only focal_plugins.mmdet "
            "registers, but its custom_imports do not load it; add custom_imports = "
            "dict(imports=['focal_plugins.mmdet'], allow_failed_imports=False)")


def swap_warnings(cfg) -> list:
    """One message per loss whose ``type`` names a focal_plugins loss that mmdet also
    registers (GHMC, GHMR), in a config that does not import ``focal_plugins.mmdet``:
    there mmdet's own class is built, silently."""
    if imports_plugin(cfg):
        return []
    import mmdet.models  # noqa: F401  (registers mmdet's own losses)
    from mmdet.registry import MODELS

    out = []
    for where, name in _types(cfg.get("model"), "model"):
        where = where[:-len(".type")]
        if not where.rsplit(".", 1)[-1].startswith("loss"):
            continue
        cls = MODELS.module_dict.get(name)
        if name in PLUGIN_LOSS_NAMES and cls is not None \
                and not cls.__module__.startswith("focal_plugins."):
            out.append(
                f"{where}: type={name!r} builds mmdet's own {cls.__module__}.{name}, not "
                f"focal_plugins' {name}, because the config does not import focal_plugins.mmdet; "
                "for the plugin's add custom_imports = dict(imports=['focal_plugins.mmdet'], "
                "allow_failed_imports=False)")
    return out


def log_loss_implementations(runner) -> None:
    """Name, in the run's log, the class and module of every loss module of the model."""
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    for name, m in model.named_modules():
        if name.rsplit(".", 1)[-1].startswith("loss"):
            runner.logger.info(f"loss implementation: {name} = "
                               f"{type(m).__module__}.{type(m).__qualname__}")


def imports_plugin(cfg) -> bool:
    """Whether the config's ``custom_imports`` load ``focal_plugins.mmdet``."""
    imports = (cfg.get("custom_imports") or {}).get("imports") or []
    if isinstance(imports, str):
        imports = [imports]
    return "focal_plugins.mmdet" in imports


def build_cfg(args):
    from mmengine.config import Config

    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.data_root:
        apply_data_root(cfg, args.data_root)
    if args.max_iters:
        apply_max_iters(cfg, args.max_iters)
    if args.ghm_stats:
        hooks = [h for h in cfg.get("custom_hooks", []) if h.get("type") != "GHMStatsHook"]
        cfg.custom_hooks = hooks + [dict(type="GHMStatsHook", interval=args.ghm_stats)]
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get("work_dir", None) is None:
        cfg.work_dir = osp.join("./work_dirs", osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if cfg.optim_wrapper.get("type", "OptimWrapper") == "AmpOptimWrapper":
            print("[train] AMP is already enabled in the config", file=sys.stderr)
        else:
            cfg.optim_wrapper.type = "AmpOptimWrapper"
            cfg.optim_wrapper.loss_scale = "dynamic"
    if args.auto_scale_lr:
        if "auto_scale_lr" in cfg and "base_batch_size" in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError("the config has no auto_scale_lr.base_batch_size")
    if args.resume == "auto":
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if (cfg.get("resume") or cfg.get("load_from")) and not imports_plugin(cfg):
        # mmengine 0.10 checkpoints carry the run's log history (mmengine HistoryBuffer,
        # numpy arrays), which torch >= 2.6 refuses to unpickle by default
        # (torch.load(weights_only=True)) and mmengine calls torch.load without saying.
        # focal_plugins.mmdet allowlists exactly those objects; a config that does not
        # import it gets full unpickling in this process, for the checkpoint named here:
        # load only checkpoints you trust, as with any pickle.
        os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    return cfg


def main(argv=None):
    args = parse_args(argv)
    try:  # mmdet >= 3.1: keeps torch.compile from recompiling for every input shape
        from mmdet.utils import setup_cache_size_limit_of_dynamo

        setup_cache_size_limit_of_dynamo()
    except ImportError:  # pragma: no cover
        pass
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    cfg = build_cfg(args)
    check_plugin_imported(cfg)
    for msg in swap_warnings(cfg):
        print(f"[train] WARNING: {msg}", file=sys.stderr)
    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    for msg in swap_warnings(cfg):
        runner.logger.warning(msg)
    log_loss_implementations(runner)
    runner.train()
    return runner


if __name__ == "__main__":
    main()
