"""``GHMStateCheckHook``: the GHM losses' state compared across ranks (mmengine runners).

In a multi-process run the GHM losses all-reduce their bin counts in every call, so every
rank should hold the same GHM state (``acc_sum``, the EMA of the bin counts; ``edges``).
This hook checks it where it matters, after each checkpoint the runner's ``CheckpointHook``
writes (same schedule: ``interval``, ``save_begin``, ``save_last``, by epoch or by
iteration) and at the end of training, with ``focal_plugins.core.collective.check_state``
on every rank, and logs ``GHM state equal across N ranks (bbox_head.loss_cls.acc_sum,
...)``; a difference names each buffer and the ranks that differ and raises
``GHMStateMismatchError`` (``on_mismatch='warn'``: a logged warning instead). It also names
the model's GHM modules for the collective checks' errors (``bbox_head.loss_cls``), and
before the run (before the Runner broadcasts the initial weights) compares the GHM losses'
settings across ranks (``collective.check_settings``: differing ``bins`` are named there,
not a gloo abort).
One process, or a model without GHM losses: it does nothing.

``tools/train.py`` adds it to every run of a config that imports ``focal_plugins.mmdet``
(``--ghm-state-mismatch warn`` for the warning); elsewhere::

    custom_imports = dict(imports=['focal_plugins.mmdet', 'focal_plugins.mmdet.dist_hooks'],
                          allow_failed_imports=False)
    custom_hooks = [dict(type='GHMStateCheckHook', on_mismatch='error')]
"""
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from focal_plugins.core import collective

__all__ = ["GHMStateCheckHook"]


@HOOKS.register_module()
class GHMStateCheckHook(Hook):
    """Compare the GHM buffers across ranks at each checkpoint and at the end of training.

    Args:
        on_mismatch: ``'error'`` (raise ``GHMStateMismatchError``) or ``'warn'`` (log a
            warning and go on).
    """

    # after the CheckpointHook (VERY_LOW too, registered before): the checkpoint is written
    # first, then checked
    priority = "VERY_LOW"

    def __init__(self, on_mismatch: str = "error"):
        if on_mismatch not in ("error", "warn"):
            raise ValueError(f"on_mismatch must be 'error' or 'warn', got {on_mismatch!r}")
        self.on_mismatch = on_mismatch
        self.last_checked = None
        self.messages = []

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    @staticmethod
    def _checkpoint_hook(runner):
        for h in runner.hooks:
            if isinstance(h, CheckpointHook):
                return h
        return None

    def before_run(self, runner) -> None:
        # before the Runner broadcasts the initial weights (buffers of different sizes: gloo
        # aborts): GHM settings that differ across ranks are named here
        collective.check_settings(self._model(runner))

    def before_train(self, runner) -> None:
        collective.name_modules(self._model(runner))

    def _check(self, runner, done: int, where: str) -> None:
        """``done``: the number of iterations trained when checking."""
        self.last_checked = done
        report = collective.state_report(self._model(runner))
        if report is None:
            return
        equal, msg = report
        self.messages.append(f"{msg} ({where})")
        if equal:
            runner.logger.info(self.messages[-1])
        elif self.on_mismatch == "error":
            raise collective.GHMStateMismatchError(self.messages[-1])
        else:
            runner.logger.warning(self.messages[-1])

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        ck = self._checkpoint_hook(runner)
        if ck is None or ck.by_epoch:
            return
        if ck.every_n_train_iters(runner, ck.interval, ck.save_begin) or \
                (ck.save_last and ck.is_last_train_iter(runner)):
            self._check(runner, runner.iter + 1, f"checkpoint at iteration {runner.iter + 1}")

    def after_train_epoch(self, runner) -> None:
        ck = self._checkpoint_hook(runner)
        if ck is None or not ck.by_epoch:
            return
        if ck.every_n_epochs(runner, ck.interval, ck.save_begin) or \
                (ck.save_last and ck.is_last_train_epoch(runner)):
            self._check(runner, runner.iter, f"checkpoint at epoch {runner.epoch + 1}")

    def after_train(self, runner) -> None:
        if self.last_checked != runner.iter:
            self._check(runner, runner.iter, f"end of training, iteration {runner.iter}")
