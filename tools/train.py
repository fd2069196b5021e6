"""Train an mmdetection 3.x detector (mmengine Runner), mmdet's tools/train.py conventions.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--data-root COCO_ROOT] [--max-iters N]
                          [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]

Multi-GPU (one process per GPU)::

    torchrun --nproc_per_node=8 tools/train.py CONFIG --launcher pytorch

On a machine without CUDA the same command runs N CPU processes with gloo (mmengine 0.10's
own ``init_dist`` would call ``torch.cuda.set_device``): this tool initialises the gloo
process group itself, from torchrun's environment and ``env_cfg.dist_cfg.timeout``, before
the Runner, and gives mmengine's ``MMDistributedDataParallel`` no device ids. The Runner,
its DDP wrapper and its samplers are mmengine's own, so a distributed config can be tested
before renting GPUs. With CUDA nothing changes (mmengine's init, NCCL).
In a multi-process run of a config that imports ``focal_plugins.mmdet`` the GHM losses'
state is compared across ranks after each checkpoint and at the end
(``focal_plugins.mmdet.dist_hooks.GHMStateCheckHook``), logging ``GHM state equal across N
ranks``, or failing with the buffers and ranks that differ (``--ghm-state-mismatch warn``:
a warning). docs/distributed.md has the details and the collective checks of the losses.

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

# --data-root: the same rules as the shipped tools' (one implementation, in the package)
from focal_plugins.tools.data_root import LAYOUTS, apply_data_root, detect_layout  # noqa: E402,F401


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
                   "(adds custom_hooks GHMStatsHook; docs/usage.md: Watching GHM while it trains)")
    p.add_argument("--launcher", choices=["none", "pytorch", "slurm", "mpi"], default="none",
                   help="job launcher (pytorch: torchrun; on a machine without CUDA, gloo)")
    p.add_argument("--ghm-state-mismatch", choices=["error", "warn"], default="error",
                   help="GHM state that differs across ranks at a checkpoint or at the end "
                   "of a multi-process run: an error (default) or a warning")
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    p.add_argument("--local_rank", "--local-rank", type=int, default=0)
    args = p.parse_args(argv)
    if args.ghm_stats is not None and args.ghm_stats < 1:
        p.error(f"--ghm-stats must be >= 1, got {args.ghm_stats}")
    if "LOCAL_RANK" not in os.environ:
        os.environ["LOCAL_RANK"] = str(args.local_rank)
    return args


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


def init_cpu_distributed(cfg, launcher: str) -> bool:
    """On a machine without CUDA, ``--launcher pytorch``: initialise the gloo process group
    from torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) before the
    Runner, which then finds it initialised and skips mmengine's ``init_dist`` (that calls
    ``torch.cuda.set_device``), and give the DDP wrapper no device ids (a CPU module takes
    none). Returns whether it did; with CUDA, or ``--launcher none``, it does nothing."""
    import torch

    if launcher == "none" or torch.cuda.is_available():
        return False
    if launcher != "pytorch":
        raise SystemExit(f"[train] error: --launcher {launcher} on a machine without CUDA: "
                         "only --launcher pytorch (torchrun) runs on the CPU (gloo)")
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if k not in os.environ]
    if missing:
        raise SystemExit(f"[train] error: --launcher pytorch needs torchrun's environment "
                         f"({', '.join(missing)} not set): torchrun --nproc_per_node N "
                         "tools/train.py CONFIG --launcher pytorch")
    import datetime

    import torch.distributed as dist
    from mmengine.model.wrappers import MMDistributedDataParallel  # noqa: F401 (registers)
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel

    env_cfg = cfg.get("env_cfg") or {}
    dist_cfg = dict(env_cfg.get("dist_cfg") or {})
    kwargs = {}
    if dist_cfg.get("timeout") is not None:
        kwargs["timeout"] = datetime.timedelta(seconds=dist_cfg["timeout"])
    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]), **kwargs)
    dist_cfg["backend"] = "gloo"
    cfg.env_cfg = dict(env_cfg, dist_cfg=dist_cfg)
    wrapper = cfg.get("model_wrapper_cfg")
    if wrapper is None:  # mmengine's defaults for its own DDP wrapper
        wrapper = dict(type="MMDistributedDataParallel", broadcast_buffers=False,
                       find_unused_parameters=cfg.get("find_unused_parameters", False))
    wrapper = dict(wrapper)
    wrapper.setdefault("type", "MMDistributedDataParallel")
    wtype = MODEL_WRAPPERS.get(wrapper["type"]) if isinstance(wrapper["type"], str) \
        else wrapper["type"]
    if isinstance(wtype, type) and issubclass(wtype, DistributedDataParallel):
        wrapper["device_ids"] = None
    cfg.model_wrapper_cfg = wrapper
    print(f"[train] no CUDA: rank {dist.get_rank()} of {dist.get_world_size()} on the CPU "
          "(gloo process group)", file=sys.stderr)
    return True


def add_state_check(runner, cfg, on_mismatch: str) -> None:
    """Multi-process runs of configs that import the plugin: compare the GHM state across
    ranks at each checkpoint and at the end (focal_plugins.mmdet.dist_hooks)."""
    if not runner.distributed or not imports_plugin(cfg):
        return
    from focal_plugins.mmdet.dist_hooks import GHMStateCheckHook

    if not any(isinstance(h, GHMStateCheckHook) for h in runner.hooks):
        runner.register_hook(GHMStateCheckHook(on_mismatch=on_mismatch))


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
    cpu_dist = init_cpu_distributed(cfg, args.launcher)
    runner = Runner.from_cfg(cfg) if "runner_type" not in cfg else RUNNERS.build(cfg)
    for msg in swap_warnings(cfg):
        runner.logger.warning(msg)
    log_loss_implementations(runner)
    add_state_check(runner, cfg, args.ghm_state_mismatch)
    try:
        runner.train()
    except Exception:
        if cpu_dist:
            exit_after_failure()
        raise
    return runner


def exit_after_failure() -> None:
    """A gloo process that caught a failed collective often aborts (SIGABRT, "terminate
    called without an active exception") in the process group's destructors at interpreter
    exit, also in plain torch: print the error, flush the logs and exit with status 1
    without running them."""
    import logging
    import traceback

    traceback.print_exc()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)


if __name__ == "__main__":
    main()
