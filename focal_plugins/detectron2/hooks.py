"""``GHMStatsHook``: the GHM losses' bins, logged while training (detectron2 trainers).

YACS: set ``MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD 20`` (0, the default, is off); the
plugin's ``tools/train_net.py`` installs the hook. In a train_net.py of your own::

    class Trainer(DefaultTrainer):
        def build_hooks(self):
            return insert_ghm_stats_hook(super().build_hooks(), self.cfg)

or, with a trainer already built, ``register_ghm_stats_hook(trainer, cfg_or_period)``.

Every ``period`` iterations it puts, for each GHM loss of the model (named as in
``model.named_modules()`` without the adapter's ``.ghm``, e.g. ``cls_loss``), per bin i the
scalars ``ghm/<loss>/{density,count,loss_share,grad_share}_<i>`` (see
``focal_plugins.core.ghm_stats``) into the EventStorage, unsmoothed, so detectron2's writers
put them in ``metrics.json`` and TensorBoard; with a ``TensorboardXWriter`` also histograms
over g of the density and of the gradient share. The hook must run before the
``PeriodicWriter`` (the functions above place it there), and a period that is a multiple
of the writer's (20 in ``DefaultTrainer``) writes every value: the writers keep only the
latest value of a scalar. Other iterations run without any hook on the losses.
"""
import logging

from detectron2.engine import HookBase
from detectron2.engine.hooks import PeriodicWriter
from detectron2.utils.events import TensorboardXWriter
from torch.nn.parallel import DataParallel, DistributedDataParallel

from focal_plugins.core.ghm_stats import GHMStats, histogram, scalars

__all__ = ["GHMStatsHook", "build_ghm_stats_hook", "insert_ghm_stats_hook",
           "register_ghm_stats_hook"]

_SUFFIX = ".ghm"  # the adapter's losses hold the core module as ``.ghm``
_KEY = "MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD"
_GHM_NAMES = ("GHMC", "GHMR")
logger = logging.getLogger(__name__)


def _name(n: str) -> str:
    return n[: -len(_SUFFIX)] if n.endswith(_SUFFIX) else n


def _period(value, key="period") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be an int >= 0 (0 = off), got {value!r}")
    return value


class GHMStatsHook(HookBase):
    """Put the GHM losses' per-bin statistics into the EventStorage every ``period``
    iterations (>= 1). ``histograms``: also TensorBoard histograms, when the trainer has a
    ``TensorboardXWriter``."""

    def __init__(self, period: int, histograms: bool = True):
        if _period(period) == 0:
            raise ValueError("period must be an int >= 1, got 0")
        self.period = period
        self.histograms = bool(histograms)
        self.stats = None
        self._tb = False

    def before_train(self):
        model = self.trainer.model
        if isinstance(model, (DistributedDataParallel, DataParallel)):
            model = model.module
        self.stats = GHMStats(model, rename=_name)
        if not self.stats.modules:
            logger.warning("GHMStatsHook: the model has no GHM loss; nothing to log")
        self._tb = self.histograms and any(
            isinstance(w, TensorboardXWriter) for h in getattr(self.trainer, "_hooks", [])
            if isinstance(h, PeriodicWriter) for w in h._writers)

    def before_step(self):
        if self.stats is not None and self.stats.modules and \
                (self.trainer.iter + 1) % self.period == 0:
            self.stats.start()

    def after_step(self):
        if self.stats is None or not self.stats.active:
            return
        stats = self.stats.stop()
        storage = self.trainer.storage
        storage.put_scalars(smoothing_hint=False, **scalars(stats))
        if self._tb:
            for name, s in stats.items():
                for key in ("density", "grad_share"):
                    storage._histograms.append(dict(  # what put_histogram stores
                        tag=f"ghm/{name}/{key}", global_step=storage.iter,
                        **histogram(s[key], len(s[key]))))

    def after_train(self):
        if self.stats is not None and self.stats.active:
            self.stats.stop()


def build_ghm_stats_hook(cfg_or_period):
    """A :class:`GHMStatsHook` for ``MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD`` of a YACS
    config (or for a period given as an int); None when it is 0."""
    if isinstance(cfg_or_period, int) and not isinstance(cfg_or_period, bool):
        period = _period(cfg_or_period)
    else:
        node = cfg_or_period.MODEL.get("FOCAL_PLUGINS", None)
        period = _period(node.get("GHM_STATS_PERIOD", 0) if node is not None else 0, _KEY)
        if period and not _names_ghm_loss(node):
            logger.warning(f"{_KEY} = {period} but no MODEL.FOCAL_PLUGINS.*.*_LOSS.NAME is a "
                           f"GHM loss ({', '.join(_GHM_NAMES)}): the hook will have nothing to "
                           f"log")
    return GHMStatsHook(period) if period else None


def _names_ghm_loss(node) -> bool:
    return any(isinstance(v, dict) and v.get(slot, {}).get("NAME", "") in _GHM_NAMES
               for v in node.values() for slot in ("CLS_LOSS", "BOX_LOSS")
               if isinstance(v, dict) and isinstance(v.get(slot), dict))


def insert_ghm_stats_hook(hooks, cfg_or_period):
    """``hooks`` (a list of hooks) with a :class:`GHMStatsHook` before the first
    ``PeriodicWriter`` (at the end if there is none), when enabled; else ``hooks``."""
    hook = build_ghm_stats_hook(cfg_or_period)
    return list(hooks) if hook is None else _before_writer(hooks, hook)


def register_ghm_stats_hook(trainer, cfg_or_period):
    """Register a :class:`GHMStatsHook` on a built trainer, before its first
    ``PeriodicWriter``, when enabled; returns the hook or None."""
    hook = build_ghm_stats_hook(cfg_or_period)
    if hook is not None:
        trainer.register_hooks([hook])  # sets hook.trainer
        trainer._hooks[:] = _before_writer(trainer._hooks, hook)
    return hook


def _before_writer(hooks, hook):
    """``hooks`` without ``hook``, then ``hook`` put before the first PeriodicWriter."""
    rest = [h for h in hooks if h is not hook]
    at = next((i for i, h in enumerate(rest) if isinstance(h, PeriodicWriter)), len(rest))
    return rest[:at] + [hook] + rest[at:]
