"""``GHMStateCheckHook``: the GHM losses' state compared across ranks (detectron2 trainers).

In a multi-process run the GHM losses all-reduce their bin counts in every call, so every
rank should hold the same GHM state (``acc_sum``, the EMA of the bin counts; ``edges``).
This hook checks it on every rank at each checkpoint of the ``PeriodicCheckpointer``'s
schedule (after iteration ``k * period``, ``SOLVER.CHECKPOINT_PERIOD`` /
``train.checkpointer.period``) and after the last iteration, with
``focal_plugins.core.collective.check_state``, and logs ``GHM state equal across N ranks
(box_loss.acc_sum, ...)`` on the ``focal_plugins.detectron2`` logger; a difference names
each buffer and the ranks that differ and raises ``GHMStateMismatchError``
(``on_mismatch="warn"``: a logged warning instead). It also names the model's GHM modules
for the collective checks' errors and, before the first iteration, compares their
settings across ranks (``collective.check_settings``). One process, or a model without
GHM losses: nothing.

detectron2 registers its ``PeriodicCheckpointer`` on the main process only; this hook runs
on every rank (a collective), at the same iterations. ``tools/train_net.py`` adds it to
every run (``--ghm-state-mismatch warn`` for the warning); elsewhere::

    trainer.register_hooks([GHMStateCheckHook(cfg.SOLVER.CHECKPOINT_PERIOD)])
"""
import logging

from detectron2.engine import HookBase
from torch.nn.parallel import DistributedDataParallel

from focal_plugins.core import collective

__all__ = ["GHMStateCheckHook"]

logger = logging.getLogger("focal_plugins.detectron2")


class GHMStateCheckHook(HookBase):
    """Compare the GHM buffers across ranks every ``period`` iterations (the checkpoint
    period; 0: only after the last iteration) and after the last iteration.

    Args:
        period: the checkpoint period in iterations (>= 0).
        on_mismatch: ``"error"`` (raise ``GHMStateMismatchError``) or ``"warn"``.
    """

    def __init__(self, period: int, on_mismatch: str = "error"):
        if isinstance(period, bool) or not isinstance(period, int) or period < 0:
            raise ValueError(f"period must be an int >= 0, got {period!r}")
        if on_mismatch not in ("error", "warn"):
            raise ValueError(f"on_mismatch must be 'error' or 'warn', got {on_mismatch!r}")
        self.period = period
        self.on_mismatch = on_mismatch
        self.messages = []

    def _model(self):
        model = self.trainer.model
        return model.module if isinstance(model, DistributedDataParallel) else model

    def before_train(self):
        # names the GHM modules for the errors, and names GHM settings that differ
        collective.check_settings(self._model())

    def after_step(self):
        done = self.trainer.iter + 1
        last = done >= self.trainer.max_iter
        if last or (self.period > 0 and done % self.period == 0):
            self._check("end of training" if last else "checkpoint", done)

    def _check(self, where: str, done: int) -> None:
        report = collective.state_report(self._model())
        if report is None:
            return
        equal, msg = report
        self.messages.append(f"{msg} ({where}, iteration {done})")
        if equal:
            logger.info(self.messages[-1])
        elif self.on_mismatch == "error":
            raise collective.GHMStateMismatchError(self.messages[-1])
        else:
            logger.warning(self.messages[-1])
