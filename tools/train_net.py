"""Train / evaluate a detectron2 detector with the focal-plugins losses, detectron2's
tools/train_net.py conventions (YACS ``.yaml`` and LazyConfig ``.py`` configs both).

    python tools/train_net.py --config-file CONFIG [--num-gpus N] [--resume] [--eval-only]
                              [--data-root COCO_ROOT] [--max-iter N] [opts ...]

``opts`` are YACS ``KEY VALUE`` pairs for ``.yaml`` configs (e.g.
``MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.NAME SoftmaxFocalLoss SOLVER.IMS_PER_BATCH 16``)
and ``key=value`` overrides for LazyConfigs (e.g. ``model.cls_loss.bins=20``).

Multi-GPU on one machine: ``--num-gpus 8`` (detectron2's ``launch`` starts one process per
GPU); several machines: ``--num-machines``, ``--machine-rank``, ``--dist-url``.
On a machine without CUDA ``--num-gpus N`` starts N CPU processes with gloo (detectron2
0.6's ``launch`` hard-codes NCCL): :func:`launch_cpu` spawns them, initialises the gloo
process group and detectron2's ``comm`` local process group as ``launch`` does, and the
DDP wrapper gets no device ids; detectron2's trainers, samplers and ``comm`` do the rest, so
a distributed config can be tested before renting GPUs. With CUDA nothing changes.
In a multi-process run the GHM losses' state is compared across ranks at each checkpoint
period and after the last iteration (``focal_plugins.detectron2.dist_hooks``), logging
``GHM state equal across N ranks``, or failing with the buffers and ranks that differ
(``--ghm-state-mismatch warn``: a warning). docs/distributed.md has the details.

``--data-root DIR`` registers a COCO-format root as the datasets ``focal_plugins_train`` and
``focal_plugins_val`` (``register_coco_instances``) and points the config at them; the
number of classes is taken from the annotation file. Layouts: COCO 2017
(``annotations/instances_{train,val}2017.json``, ``train2017/``, ``val2017/``) or the
embedded synthetic dataset (``annotations/instances_{train,val}.json``, ``train/``, ``val/``).

YACS configs are read with ``focal_plugins.detectron2.get_cfg()``, which adds the
``MODEL.FOCAL_PLUGINS`` keys and resolves ``_BASE_: "model_zoo://..."``. Two keys are added
here: ``SOLVER.OPTIMIZER`` ("SGD", detectron2's own, or "AdamW") and ``SOLVER.BETAS``.
``MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD N`` (YACS) or ``train.ghm_stats_period=N``
(LazyConfig) logs the GHM losses' bins every N iterations into metrics.json / TensorBoard
(``focal_plugins.detectron2.hooks``; draw them with ``python -m focal_plugins.tools.plot_ghm_stats``).
Checkpoints hold the GHM losses' running statistics (buffers of the model), so ``--resume``
continues a GHM run with the same gradient density.
"""
from __future__ import annotations

import json
import logging
import os
from datetime import timedelta
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

try:  # detectron2 0.6 uses PIL.Image.LINEAR, removed in Pillow 10
    import PIL.Image as _PILImage

    if not hasattr(_PILImage, "LINEAR"):
        _PILImage.LINEAR = _PILImage.BILINEAR
except ImportError:  # pragma: no cover
    pass

import torch  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.config import CfgNode, LazyConfig, instantiate  # noqa: E402
from detectron2.data import DatasetCatalog  # noqa: E402
from detectron2.data.datasets import register_coco_instances  # noqa: E402
from detectron2.engine import (  # noqa: E402
    AMPTrainer,
    DefaultTrainer,
    SimpleTrainer,
    default_argument_parser,
    defaults,
    hooks,
    launch,
)
from detectron2.evaluation import COCOEvaluator, inference_on_dataset, print_csv_format  # noqa: E402
from detectron2.solver.build import maybe_add_gradient_clipping  # noqa: E402
from detectron2.utils import comm  # noqa: E402

import focal_plugins.detectron2 as fpd2  # noqa: E402  (registers the plugin components)
from focal_plugins.detectron2.dist_hooks import GHMStateCheckHook  # noqa: E402

TRAIN_NAME, VAL_NAME = "focal_plugins_train", "focal_plugins_val"
LAYOUTS = (
    ("annotations/instances_train2017.json", "train2017",
     "annotations/instances_val2017.json", "val2017"),
    ("annotations/instances_train.json", "train", "annotations/instances_val.json", "val"),
)
logger = logging.getLogger("focal_plugins.train_net")


# ---------------------------------------------------------------------------------- setup
def setup_run(cfg, args, output_dir, seed):
    """What detectron2's ``default_setup`` does (output folder, loggers, the config saved
    as ``config.yaml``, seeding), except collecting the environment report: that calls into
    the compiled ``detectron2._C``, which a source-only detectron2 does not have."""
    import detectron2
    from detectron2.utils.env import seed_all_rng
    from detectron2.utils.file_io import PathManager
    from detectron2.utils.logger import setup_logger

    rank = comm.get_rank()
    if comm.is_main_process() and output_dir:
        PathManager.mkdirs(output_dir)
    setup_logger(output_dir, distributed_rank=rank, name="fvcore")
    log = setup_logger(output_dir, distributed_rank=rank)
    setup_logger(output_dir, distributed_rank=rank, name="focal_plugins")
    log.info(f"Rank {rank} of {comm.get_world_size()}; torch {torch.__version__}, "
             f"detectron2 {detectron2.__version__}")
    log.info("Command line arguments: " + str(args))
    if comm.is_main_process() and output_dir:
        path = osp.join(output_dir, "config.yaml")
        if isinstance(cfg, CfgNode):  # YACS; a CfgNode is a dict too, so test it first
            with PathManager.open(path, "w") as f:
                f.write(cfg.dump())
        else:
            LazyConfig.save(cfg, path)
        log.info(f"Full config saved to {path}")
    seed_all_rng(None if seed < 0 else seed + rank)


def _has_fast_coco_eval() -> bool:
    """detectron2's C++ COCOeval needs the compiled detectron2._C; a source-only build of
    detectron2 has none, and then pycocotools' COCOeval is used (same numbers, slower)."""
    try:
        from detectron2 import _C

        return hasattr(_C, "InstanceAnnotation") and hasattr(_C, "COCOevalEvaluateImages")
    except Exception:
        return False


def _writers(output_dir, max_iter):
    """detectron2's default writers (console with ETA, metrics.json, TensorBoard), without
    TensorBoard where the tensorboard package is not installed."""
    from detectron2.utils.events import CommonMetricPrinter, JSONWriter, TensorboardXWriter

    writers = [CommonMetricPrinter(max_iter), JSONWriter(osp.join(output_dir, "metrics.json"))]
    try:
        import tensorboard  # noqa: F401

        writers.append(TensorboardXWriter(output_dir))
    except ImportError:
        pass
    return writers


# ------------------------------------------------------------------------------ datasets
def register_data_root(root: str) -> int:
    """Registers ``root`` (a COCO layout) as TRAIN_NAME / VAL_NAME; returns #categories."""
    for tr_ann, tr_img, va_ann, va_img in LAYOUTS:
        if osp.isfile(osp.join(root, tr_ann)) and osp.isfile(osp.join(root, va_ann)):
            break
    else:
        raise FileNotFoundError(
            f"--data-root {root}: expected annotations/instances_train2017.json + train2017/ "
            "(COCO) or annotations/instances_train.json + train/ (synthetic)")
    for name, ann, img in ((TRAIN_NAME, tr_ann, tr_img), (VAL_NAME, va_ann, va_img)):
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            from detectron2.data import MetadataCatalog

            MetadataCatalog.remove(name)
        register_coco_instances(name, {}, osp.join(root, ann), osp.join(root, img))
    with open(osp.join(root, tr_ann)) as f:
        return len(json.load(f)["categories"])


# ---------------------------------------------------------------------------------- YACS
class Trainer(DefaultTrainer):
    """DefaultTrainer + COCO evaluation + optional AdamW (SOLVER.OPTIMIZER) + the GHM
    statistics hook (MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD)."""

    ghm_state_mismatch = "error"  # --ghm-state-mismatch

    def build_hooks(self):
        hooks_ = fpd2.insert_ghm_stats_hook(super().build_hooks(), self.cfg)
        return hooks_ + [GHMStateCheckHook(self.cfg.SOLVER.CHECKPOINT_PERIOD,
                                           self.ghm_state_mismatch)]

    def build_writers(self):
        return _writers(self.cfg.OUTPUT_DIR, self.max_iter)

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        output_folder = output_folder or osp.join(cfg.OUTPUT_DIR, "inference")
        return COCOEvaluator(dataset_name, output_dir=output_folder,
                             use_fast_impl=_has_fast_coco_eval())

    @classmethod
    def build_optimizer(cls, cfg, model):
        if cfg.SOLVER.OPTIMIZER.upper() == "SGD":
            return super().build_optimizer(cfg, model)
        if cfg.SOLVER.OPTIMIZER.upper() != "ADAMW":
            raise ValueError(f"SOLVER.OPTIMIZER must be SGD or AdamW, got {cfg.SOLVER.OPTIMIZER}")
        decay, no_decay = [], []
        for module in model.modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad:
                    continue
                is_norm = isinstance(module, (torch.nn.modules.batchnorm._BatchNorm,
                                              torch.nn.GroupNorm, torch.nn.LayerNorm))
                (no_decay if is_norm or name == "bias" else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.SOLVER.WEIGHT_DECAY},
                  {"params": no_decay, "weight_decay": 0.0}]
        opt_cls = maybe_add_gradient_clipping(cfg, torch.optim.AdamW)
        return opt_cls(groups, lr=cfg.SOLVER.BASE_LR, betas=tuple(cfg.SOLVER.BETAS))


def setup_yacs(args):
    cfg = fpd2.get_cfg()
    cfg.SOLVER.OPTIMIZER = "SGD"
    cfg.SOLVER.BETAS = (0.9, 0.999)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if args.data_root:
        n = register_data_root(args.data_root)
        cfg.DATASETS.TRAIN = (TRAIN_NAME,)
        cfg.DATASETS.TEST = (VAL_NAME,)
        cfg.MODEL.RETINANET.NUM_CLASSES = n
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = n
        if "FCOS" in cfg.MODEL:
            cfg.MODEL.FCOS.NUM_CLASSES = n
    if args.max_iter:
        old = cfg.SOLVER.MAX_ITER
        cfg.SOLVER.MAX_ITER = args.max_iter
        steps = {int(s * args.max_iter / old) for s in cfg.SOLVER.STEPS}
        cfg.SOLVER.STEPS = tuple(sorted(s for s in steps if 0 < s < args.max_iter))
        cfg.SOLVER.WARMUP_ITERS = min(cfg.SOLVER.WARMUP_ITERS, max(1, args.max_iter // 4))
        cfg.SOLVER.CHECKPOINT_PERIOD = args.max_iter
        cfg.TEST.EVAL_PERIOD = 0  # evaluates once, after the last iteration
    if not torch.cuda.is_available():
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    setup_run(cfg, args, cfg.OUTPUT_DIR, cfg.SEED)
    return cfg


def main_yacs(args):
    cfg = setup_yacs(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        DetectionCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        return Trainer.test(cfg, model)
    Trainer.ghm_state_mismatch = args.ghm_state_mismatch
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


# ---------------------------------------------------------------------------- LazyConfig
def _lazy_test(cfg, model):
    if "evaluator" in cfg.dataloader:
        ret = inference_on_dataset(model, instantiate(cfg.dataloader.test),
                                   instantiate(cfg.dataloader.evaluator))
        print_csv_format(ret)
        return ret


def main_lazy(args):
    cfg = LazyConfig.load(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    if args.data_root:
        n = register_data_root(args.data_root)
        cfg.dataloader.train.dataset.names = TRAIN_NAME
        cfg.dataloader.test.dataset.names = VAL_NAME
        if "evaluator" in cfg.dataloader:
            cfg.dataloader.evaluator.dataset_name = VAL_NAME
        if "num_classes" in cfg.model:
            cfg.model.num_classes = n
        elif "roi_heads" in cfg.model and "num_classes" in cfg.model.roi_heads:
            cfg.model.roi_heads.num_classes = n
    if args.max_iter:
        old = cfg.train.max_iter
        cfg.train.max_iter = args.max_iter
        sched = cfg.lr_multiplier.get("scheduler", None)
        if sched is not None and "milestones" in sched:
            ms = {int(m * args.max_iter / old) for m in sched.milestones}
            sched.milestones = sorted(m for m in ms if 0 < m < args.max_iter)
            if "values" in sched:
                sched["values"] = list(sched["values"])[: len(sched.milestones) + 1]
            sched.num_updates = args.max_iter
        if "warmup_length" in cfg.lr_multiplier:
            cfg.lr_multiplier.warmup_length = min(cfg.lr_multiplier.warmup_length, 0.25)
        cfg.train.checkpointer.period = args.max_iter
        cfg.train.eval_period = args.max_iter
    ev = cfg.dataloader.get("evaluator", None)
    if ev is not None and "use_fast_impl" not in ev and "COCOEvaluator" in str(ev.get("_target_")):
        ev.use_fast_impl = _has_fast_coco_eval()
    if not torch.cuda.is_available():
        cfg.train.device = "cpu"
    setup_run(cfg, args, cfg.train.output_dir, cfg.train.get("seed", -1))

    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    if args.eval_only:
        DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
        return _lazy_test(cfg, model)

    cfg.optimizer.params.model = model
    optim = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)
    model = defaults.create_ddp_model(model, **cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optim)
    checkpointer = DetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks([
        hooks.IterationTimer(),
        hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
        hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer)
        if comm.is_main_process() else None,
        hooks.EvalHook(cfg.train.eval_period, lambda: _lazy_test(cfg, model)),
        fpd2.build_ghm_stats_hook(cfg.train.get("ghm_stats_period", 0)),
        GHMStateCheckHook(cfg.train.checkpointer.get("period", 0), args.ghm_state_mismatch),
        hooks.PeriodicWriter(_writers(cfg.train.output_dir, cfg.train.max_iter),
                             period=cfg.train.log_period)
        if comm.is_main_process() else None,
    ])
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if args.resume and checkpointer.has_checkpoint() else 0
    trainer.train(start_iter, cfg.train.max_iter)


def main(args):
    if args.config_file.endswith(".py"):
        return main_lazy(args)
    return main_yacs(args)


# ------------------------------------------------------------------- CPU multi-process
_d2_create_ddp_model = defaults.create_ddp_model


def _create_ddp_model_cpu_too(model, *, fp16_compression=False, **kwargs):
    """detectron2's ``create_ddp_model``; a model on the CPU gets no device ids (DDP takes
    none for a CPU module; detectron2 passes its local rank)."""
    if comm.get_world_size() > 1 and "device_ids" not in kwargs and \
            all(p.device.type == "cpu" for p in model.parameters()):
        kwargs["device_ids"] = None
    return _d2_create_ddp_model(model, fp16_compression=fp16_compression, **kwargs)


def _cpu_worker(local_rank, main_func, world_size, num_procs, machine_rank, dist_url, args,
                timeout):
    """One CPU process: what detectron2's ``_distributed_worker`` does, with gloo and
    without CUDA (the process group, comm's per-machine group, a barrier)."""
    import torch.distributed as dist

    rank = machine_rank * num_procs + local_rank
    if "OMP_NUM_THREADS" not in os.environ:  # as torchrun: no more threads than cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // num_procs))
    try:
        dist.init_process_group("gloo", init_method=dist_url, world_size=world_size,
                                rank=rank, timeout=timeout)
    except Exception:
        logger.error(f"Process group URL: {dist_url}")
        raise
    assert comm._LOCAL_PROCESS_GROUP is None
    for i in range(world_size // num_procs):
        pg = dist.new_group(list(range(i * num_procs, (i + 1) * num_procs)))
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = pg
    defaults.create_ddp_model = _create_ddp_model_cpu_too  # DefaultTrainer looks it up there
    comm.synchronize()
    main_func(*args)


def launch_cpu(main_func, num_procs, num_machines=1, machine_rank=0, dist_url=None, args=(),
               timeout=timedelta(minutes=30)):
    """detectron2's ``launch`` for a machine without CUDA: ``num_procs`` processes per
    machine with gloo (one process: ``main_func(*args)`` here)."""
    world_size = num_machines * num_procs
    if world_size == 1:
        return main_func(*args)
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only; give tcp://HOST:PORT")
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            dist_url = f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    import torch.multiprocessing as mp

    mp.spawn(_cpu_worker, nprocs=num_procs, daemon=False,
             args=(main_func, world_size, num_procs, machine_rank, dist_url, args, timeout))


def parser():
    p = default_argument_parser()
    p.add_argument("--data-root", help="a COCO-format dataset root (see the module doc)")
    p.add_argument("--max-iter", type=int,
                   help="train this many iterations (schedule scaled, one eval at the end)")
    p.add_argument("--ghm-state-mismatch", choices=["error", "warn"], default="error",
                   help="GHM state that differs across ranks at a checkpoint or after the "
                   "last iteration of a multi-process run: an error (default) or a warning")
    return p


def cli(argv=None):
    args = parser().parse_args(argv)
    if args.data_root:
        args.data_root = osp.abspath(args.data_root)
    print("Command Line Args:", args)
    # detectron2 0.6's launch initialises NCCL: without CUDA, gloo processes (launch_cpu)
    run = launch if torch.cuda.is_available() else launch_cpu
    return run(main, args.num_gpus, num_machines=args.num_machines,
               machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))


if __name__ == "__main__":
    cli()
