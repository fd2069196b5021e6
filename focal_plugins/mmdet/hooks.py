"""``GHMStatsHook``: the GHM losses' bins, logged while training (mmengine runners).

Enable it from a config::

    custom_hooks = [dict(type='GHMStatsHook', interval=50)]

Every ``interval`` iterations it logs, for each GHM loss module of the model (named as in
``model.named_modules()``, e.g. ``bbox_head.loss_cls``), per bin i the scalars
``ghm/<module>/{density,count,loss_share,grad_share}_<i>`` (see
``focal_plugins.core.ghm_stats``) through the runner's visualizer, so they land in
``vis_data/scalars.json`` (one line with ``step``) and in TensorBoard where its backend is
on; with TensorBoard also histograms over g of the density and of the gradient share
(``ghm/<module>/density``, ``.../grad_share``). ``python -m focal_plugins.tools.plot_ghm_stats`` draws them.
Other iterations run without any hook on the losses.
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from focal_plugins.core.ghm_stats import GHMStats, histogram, scalars

__all__ = ["GHMStatsHook"]


class GHMStatsHook(Hook):
    """Log the GHM losses' per-bin statistics every ``interval`` training iterations.

    Args:
        interval: log every this many iterations (>= 1).
        histograms: also write TensorBoard histograms when a TensorBoard backend is on.
        log_text: also write one line per module (gradient shares) to the runner's logger.
    """

    priority = "NORMAL"

    def __init__(self, interval: int = 50, histograms: bool = True, log_text: bool = True):
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"interval must be an int >= 1, got {interval!r}")
        self.interval = interval
        self.histograms = bool(histograms)
        self.log_text = bool(log_text)
        self.stats = None

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        self.stats = GHMStats(model)
        if not self.stats.modules:
            runner.logger.warning("GHMStatsHook: the model has no GHM loss; nothing to log")

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self.stats is not None and self.stats.modules and \
                self.every_n_train_iters(runner, self.interval):
            self.stats.start()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.stats is None or not self.stats.active:
            return
        stats = self.stats.stop()
        if not stats:
            return
        step = runner.iter + 1
        runner.visualizer.add_scalars(scalars(stats), step=step)
        if self.histograms:
            self._histograms(runner, stats, step)
        if self.log_text:
            for name, s in stats.items():
                shares = " ".join(f"{v:.3f}" for v in s["grad_share"].tolist())
                runner.logger.info(f"Iter(train) [{step}] ghm/{name} grad_share per bin: {shares}")

    def after_train(self, runner) -> None:
        if self.stats is not None and self.stats.active:
            self.stats.stop()

    @staticmethod
    def _histograms(runner, stats, step):
        from mmengine.visualization import TensorboardVisBackend

        for backend in getattr(runner.visualizer, "_vis_backends", {}).values():
            if not isinstance(backend, TensorboardVisBackend):
                continue
            writer = backend.experiment
            for name, s in stats.items():
                for key in ("density", "grad_share"):
                    writer.add_histogram_raw(f"ghm/{name}/{key}", global_step=step,
                                             **histogram(s[key], len(s[key])))


def register() -> None:
    """Register ``GHMStatsHook`` in mmengine's HOOKS (mmdet's HOOKS is its child, so
    ``type='GHMStatsHook'`` builds under either scope); idempotent."""
    HOOKS.register_module(name="GHMStatsHook", module=GHMStatsHook, force=True)


register()
