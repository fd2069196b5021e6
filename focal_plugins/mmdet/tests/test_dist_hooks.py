"""GHMStateCheckHook (mmengine): checks at the CheckpointHook's iterations and at the end,
logs the equality line, raises or warns on a difference (the cross-rank comparison itself is
focal_plugins.core.collective, tested with 2 processes in core/tests/test_collective.py;
both train fronts end to end in tests/test_distributed_train.py)."""
import types

import pytest
import torch

pytest.importorskip("mmdet")

from mmengine.hooks import CheckpointHook  # noqa: E402

from focal_plugins import GHMC  # noqa: E402
from focal_plugins.core import collective  # noqa: E402
from focal_plugins.mmdet.dist_hooks import GHMStateCheckHook  # noqa: E402


def _runner(max_iters, interval):
    log = types.SimpleNamespace(lines=[])
    logger = types.SimpleNamespace(info=lambda m: log.lines.append(("info", m)),
                                   warning=lambda m: log.lines.append(("warning", m)))
    return types.SimpleNamespace(iter=0, max_iters=max_iters, logger=logger,
                                 model=torch.nn.Linear(1, 1),
                                 hooks=[CheckpointHook(interval=interval, by_epoch=False)]), log


def _train(hook, runner):
    hook.before_train(runner)
    for i in range(runner.max_iters):
        runner.iter = i
        hook.after_train_iter(runner, i)
    runner.iter = runner.max_iters
    hook.after_train(runner)


def test_checks_at_each_checkpoint_and_at_the_end(monkeypatch):
    calls = []
    monkeypatch.setattr(collective, "state_report",
                        lambda m: calls.append(1) or (True, "GHM state equal across 2 ranks (x)"))
    for max_iters, interval, want in ((5, 2, ["iteration 2", "iteration 4", "iteration 5"]),
                                      (4, 2, ["iteration 2", "iteration 4"])):
        calls.clear()
        hook = GHMStateCheckHook()
        runner, log = _runner(max_iters, interval)
        _train(hook, runner)
        assert len(calls) == len(want)
        assert [lvl for lvl, _ in log.lines] == ["info"] * len(want)
        for (_, line), w in zip(log.lines, want):
            assert line.startswith("GHM state equal across 2 ranks (x) (") and w in line, line


def test_a_difference_is_an_error_or_a_warning(monkeypatch):
    monkeypatch.setattr(collective, "state_report",
                        lambda m: (False, "GHM state differs across 2 ranks: "
                                   "a.acc_sum: rank(s) 1 ..."))
    runner, log = _runner(2, 1)
    with pytest.raises(collective.GHMStateMismatchError,
                       match=r"a\.acc_sum: rank\(s\) 1 .* \(checkpoint at iteration 1\)"):
        _train(GHMStateCheckHook(), runner)
    runner, log = _runner(2, 1)
    _train(GHMStateCheckHook(on_mismatch="warn"), runner)
    assert [lvl for lvl, _ in log.lines] == ["warning", "warning"]
    with pytest.raises(ValueError, match="on_mismatch"):
        GHMStateCheckHook(on_mismatch="ignore")


def test_one_process_logs_nothing():
    runner, log = _runner(2, 1)
    runner.model = torch.nn.ModuleDict({"loss_cls": GHMC(momentum=0.5)})
    _train(GHMStateCheckHook(), runner)
    assert log.lines == []
