"""GHMStateCheckHook (detectron2): checks at the checkpoint period and after the last
iteration, logs the equality line, raises or warns on a difference (the comparison itself:
core/tests/test_collective.py; the train front end to end: tests/test_distributed_train.py)."""
import logging
import types

import pytest
import torch

pytest.importorskip("detectron2")

from focal_plugins import GHMC  # noqa: E402
from focal_plugins.core import collective  # noqa: E402
from focal_plugins.detectron2.dist_hooks import GHMStateCheckHook  # noqa: E402


def _train(hook, max_iter, model=None):
    hook.trainer = types.SimpleNamespace(iter=0, max_iter=max_iter,
                                         model=model or torch.nn.Linear(1, 1))
    hook.before_train()
    for i in range(max_iter):
        hook.trainer.iter = i
        hook.after_step()


def test_checks_at_the_period_and_after_the_last_iteration(monkeypatch, caplog):
    monkeypatch.setattr(collective, "state_report",
                        lambda m: (True, "GHM state equal across 2 ranks (x)"))
    for period, max_iter, want in ((2, 5, [2, 4, 5]), (2, 4, [2, 4]), (0, 3, [3])):
        hook = GHMStateCheckHook(period)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="focal_plugins.detectron2"):
            _train(hook, max_iter)
        assert [m.rsplit("iteration ", 1)[1] for m in hook.messages] == [f"{w})" for w in want]
        assert all(m.startswith("GHM state equal across 2 ranks (x) (") for m in hook.messages)
        assert [r.getMessage() for r in caplog.records] == hook.messages


def test_a_difference_is_an_error_or_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(collective, "state_report",
                        lambda m: (False, "GHM state differs across 2 ranks: "
                                   "cls_loss.ghm.acc_sum ..."))
    with pytest.raises(collective.GHMStateMismatchError,
                       match=r"cls_loss\.ghm\.acc_sum \.\.\. \(checkpoint, iteration 1\)"):
        _train(GHMStateCheckHook(1), 3)
    with caplog.at_level(logging.WARNING, logger="focal_plugins.detectron2"):
        _train(GHMStateCheckHook(1, on_mismatch="warn"), 2)
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING"]
    for bad in (dict(period=-1), dict(period=True), dict(period=1, on_mismatch="no")):
        with pytest.raises(ValueError):
            GHMStateCheckHook(**bad)


def test_one_process_logs_nothing():
    hook = GHMStateCheckHook(1)
    _train(hook, 2, torch.nn.ModuleDict({"cls_loss": GHMC(momentum=0.5)}))
    assert hook.messages == []
