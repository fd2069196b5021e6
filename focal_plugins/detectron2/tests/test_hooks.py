"""GHMStatsHook in a detectron2 trainer: a few iterations of the GHM RetinaNet (ResNet-18,
128-pixel images); metrics.json holds the losses' state and values equal to an independent
replay of the logged iterations' calls; no hook on the losses in the other iterations."""
import copy
import json
import os

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.engine import HookBase, SimpleTrainer, hooks  # noqa: E402
from detectron2.utils.events import EventWriter, JSONWriter  # noqa: E402

import focal_plugins.detectron2.hooks as fph  # noqa: E402
from focal_plugins.core.ghm_stats import KEYS, ghm_modules  # noqa: E402
from focal_plugins.core.tests._stats_reference import replay  # noqa: E402
from focal_plugins.detectron2 import (  # noqa: E402
    GHMStatsHook, add_focal_plugins_config, build_ghm_stats_hook, insert_ghm_stats_hook,
    register_ghm_stats_hook)

from .test_detectron2_adapter import CONFIG_DIR, _batch, _build, _yaml_cfg  # noqa: E402

PERIOD, ITERS = 2, 5


class Probe(HookBase):
    """Counts the forward hooks on the GHM losses; on logged iterations keeps a copy of each
    loss before the step, every call it gets, and a copy after."""

    def __init__(self, model):
        self.mods = [(fph._name(n), m) for n, m in ghm_modules(model)]
        self.hooks_seen, self.logged, self._rec = [], {}, []

    def before_step(self):
        self.hooks_seen.append(sum(len(m._forward_hooks) for _, m in self.mods))
        if (self.trainer.iter + 1) % PERIOD:
            return
        entry = self.logged[self.trainer.iter] = {}
        for name, m in self.mods:
            calls = []
            entry[name] = [copy.deepcopy(m), calls, m]

            def rec(module, args, kwargs, out, calls=calls):
                calls.append((tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args),
                              dict(kwargs)))
            self._rec.append(m.register_forward_hook(rec, with_kwargs=True))

    def after_step(self):
        for h in self._rec:
            h.remove()
        self._rec = []
        for e in self.logged.get(self.trainer.iter, {}).values():
            e[2] = copy.deepcopy(e[2])


class FakeTB(EventWriter):  # stands in for TensorboardXWriter (no tensorboard needed)
    def write(self):
        pass


def _loader():
    i = 0
    while True:
        yield _batch(seed=i)
        i += 1


@pytest.mark.slow
@pytest.mark.parametrize("per_level", [False, True])
def test_logged_stats_equal_state_and_replay(tmp_path, monkeypatch, per_level):
    monkeypatch.setattr(fph, "TensorboardXWriter", FakeTB)
    cfg = _yaml_cfg(os.path.join(CONFIG_DIR, "retinanet_R_50_FPN_1x_ghm.yaml"),
                    ["MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD", PERIOD,
                     "MODEL.FOCAL_PLUGINS.RETINANET.PER_LEVEL", per_level])
    model = _build(cfg)
    trainer = SimpleTrainer(model, _loader(), torch.optim.SGD(model.parameters(), lr=1e-3))
    probe = Probe(model)
    metrics = str(tmp_path / "metrics.json")
    trainer.register_hooks([hooks.PeriodicWriter([JSONWriter(metrics), FakeTB()],
                                                 period=PERIOD)])
    hook = register_ghm_stats_hook(trainer, cfg)
    assert isinstance(hook, GHMStatsHook) and hook.period == PERIOD
    assert trainer._hooks.index(hook) == 0  # before the writer
    trainer.register_hooks([probe])  # runs after ours
    trainer.train(0, ITERS)

    assert probe.hooks_seen == [0, 2, 0, 2, 0]  # ours, one per loss, only when logging
    rows = [json.loads(x) for x in open(metrics)]
    by_iter = {r["iteration"]: r for r in rows if any(k.startswith("ghm/") for k in r)}
    assert sorted(by_iter) == [1, 3] == sorted(probe.logged)
    for it, entry in probe.logged.items():
        row = by_iter[it]
        assert set(entry) == {"cls_loss", "box_loss"}
        for name, (before, calls, after) in entry.items():
            # detectron2 concatenates the 5 levels; per_level calls once per level
            assert len(calls) == (5 if per_level else 1)
            got = {k: torch.tensor([row[f"ghm/{name}/{k}_{i}"] for i in range(after.bins)])
                   for k in KEYS}
            torch.testing.assert_close(got["density"], after.acc_sum.float())
            cnt, loss_share, grad_share, _ = replay(before, calls)
            torch.testing.assert_close(before.acc_sum, after.acc_sum)  # a faithful replay
            torch.testing.assert_close(got["count"], cnt.float())
            torch.testing.assert_close(got["loss_share"], loss_share.float(), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(got["grad_share"], grad_share.float(), atol=1e-5, rtol=1e-4)
            assert abs(got["grad_share"].sum() - 1) < 1e-4
    hist = trainer.storage._histograms
    assert sorted({(h["tag"], h["global_step"]) for h in hist}) == sorted(
        (f"ghm/{n}/{k}", it) for it in (1, 3) for n in ("cls_loss", "box_loss")
        for k in ("density", "grad_share"))


def test_config_key_and_install_functions():
    from detectron2.config import get_cfg as d2_get_cfg

    cfg = add_focal_plugins_config(d2_get_cfg())
    assert cfg.MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD == 0
    assert build_ghm_stats_hook(cfg) is None and build_ghm_stats_hook(0) is None
    assert build_ghm_stats_hook(d2_get_cfg()) is None  # no plugin keys: off
    cfg.MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD = 20
    writer = hooks.PeriodicWriter([], period=20)
    timer = hooks.IterationTimer()
    out = insert_ghm_stats_hook([timer, writer], cfg)
    assert out[0] is timer and isinstance(out[1], GHMStatsHook) and out[2] is writer
    assert out[1].period == 20
    assert insert_ghm_stats_hook([timer], 0) == [timer]
    assert isinstance(insert_ghm_stats_hook([timer], 5)[1], GHMStatsHook)
    for bad in (-1, 2.5, True):
        cfg.MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD = bad
        with pytest.raises(ValueError, match="GHM_STATS_PERIOD"):
            build_ghm_stats_hook(cfg)
    with pytest.raises(ValueError, match="period"):
        GHMStatsHook(0)
