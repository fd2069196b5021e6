"""``NoPauseIterBasedTrainLoop``: mmengine's ``IterBasedTrainLoop`` without the 2-s pause at
each epoch end when the dataloader has no worker processes.

mmengine's iteration-based loop restarts a finite dataloader at each epoch end and sleeps 2 s
before the restart, against a deadlock of worker processes. With ``num_workers=0`` there are no
workers to wait for, and a short CPU run of many small epochs spends a visible share of its
time asleep: the demo (400 iterations, 50 an epoch) 14 s of an 85-s training loop. This loop
restarts the dataloader the same way (the sampler's ``set_epoch`` with the next epoch, then a
new iterator), so it trains on the same batches in the same order; it still pauses when the
dataloader has workers. Everything else is ``IterBasedTrainLoop``'s::

    train_cfg = dict(type='NoPauseIterBasedTrainLoop', max_iters=400, val_interval=400)
"""
import time

from mmengine.registry import LOOPS
from mmengine.runner import IterBasedTrainLoop

__all__ = ["NoPauseIterBasedTrainLoop", "RestartingIterator"]

PAUSE_S = 2.0


class RestartingIterator:
    """Iterates a dataloader without end: at each epoch end it advances the sampler's epoch
    and starts a new pass, pausing ``PAUSE_S`` first only if the dataloader has workers.
    ``iterator``: a pass over ``dataloader`` already begun, to continue (default: a new one)."""

    def __init__(self, dataloader, iterator=None):
        self._dataloader = dataloader
        self._iterator = iter(dataloader) if iterator is None else iterator
        self._epoch = 0

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._iterator)
        except StopIteration:
            pass
        self._epoch += 1
        sampler = getattr(self._dataloader, "sampler", None)
        if not hasattr(sampler, "set_epoch"):
            # a DataLoader built with a batch_sampler holds the epoch-aware sampler there
            sampler = getattr(getattr(self._dataloader, "batch_sampler", None), "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self._epoch)
        if getattr(self._dataloader, "num_workers", 0) > 0:
            time.sleep(PAUSE_S)
        self._iterator = iter(self._dataloader)
        return next(self._iterator)


class NoPauseIterBasedTrainLoop(IterBasedTrainLoop):
    """``IterBasedTrainLoop`` whose dataloader restarts through ``RestartingIterator``."""

    def __init__(self, runner, dataloader, max_iters, **kwargs):
        super().__init__(runner, dataloader, max_iters, **kwargs)
        # continue the pass IterBasedTrainLoop has begun: a second iter() would draw the
        # loader's base seed from torch's global RNG once more, before the weights are
        # initialised, and so change the run
        self.dataloader_iterator = RestartingIterator(
            self.dataloader, getattr(self.dataloader_iterator, "_iterator", None))


def register() -> None:
    """Register the loop in mmengine's LOOPS (mmdet's LOOPS is its child); idempotent."""
    LOOPS.register_module(name="NoPauseIterBasedTrainLoop", module=NoPauseIterBasedTrainLoop,
                          force=True)


register()
