"""GHMStatsHook in an mmengine Runner: a few iterations of the demo GHM RetinaNet on a tiny
synthetic dataset; the logged scalars equal the losses' state and an independent replay of
the logged iterations' calls; no hook on the losses in the other iterations."""
import copy
import json
import os
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("mmdet")

from mmengine.hooks import Hook  # noqa: E402
from mmengine.visualization import TensorboardVisBackend  # noqa: E402

import focal_plugins.mmdet  # noqa: E402,F401
from focal_plugins.core.ghm_stats import KEYS, ghm_modules  # noqa: E402
from focal_plugins.core.tests._stats_reference import replay  # noqa: E402
from focal_plugins.data.synthetic import SyntheticConfig, generate  # noqa: E402
from focal_plugins.mmdet import GHMStatsHook  # noqa: E402

from ._helpers import REPO  # noqa: E402

INTERVAL, ITERS = 2, 5


class Probe(Hook):
    """Runs after GHMStatsHook: counts the forward hooks on the GHM losses, and on logged
    iterations keeps a copy of each loss before the iteration and every call it gets."""

    priority = "LOWEST"

    def __init__(self):
        self.hooks_seen, self.logged, self._rec = [], {}, []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        mods = ghm_modules(runner.model)
        self.hooks_seen.append(sum(len(m._forward_hooks) for _, m in mods))
        if (runner.iter + 1) % INTERVAL:
            return
        entry = {}
        for name, m in mods:
            calls = []
            entry[name] = (copy.deepcopy(m), calls, m)

            def rec(module, args, kwargs, out, calls=calls):
                calls.append((tuple(a.detach().clone() if torch.is_tensor(a) else a for a in args),
                              dict(kwargs)))
            self._rec.append(m.register_forward_hook(rec, with_kwargs=True))
        self.logged[runner.iter + 1] = entry

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        for h in self._rec:
            h.remove()
        self._rec = []
        for name, (before, calls, live) in self.logged.get(runner.iter + 1, {}).items():
            self.logged[runner.iter + 1][name] = (before, calls, copy.deepcopy(live))


def _runner(tmp_path, hook_cfg):
    from mmengine.config import Config
    from mmengine.runner import Runner

    data = tmp_path / "data"
    generate(SyntheticConfig(seed=0, num_train=8, num_val=2), str(data))
    cfg = Config.fromfile(os.path.join(REPO, "configs/demo/retinanet_r18_synthetic_ghm.py"))
    cfg.train_dataloader.dataset.data_root = str(data) + "/"
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=ITERS, val_interval=1000)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
    cfg.param_scheduler = None
    cfg.default_hooks.checkpoint = None
    cfg.default_hooks.pop("visualization")
    cfg.custom_hooks = [hook_cfg]
    cfg.work_dir = str(tmp_path / "work")
    return Runner.from_cfg(cfg)


@pytest.mark.slow
def test_logged_stats_equal_state_and_replay(tmp_path):
    runner = _runner(tmp_path, dict(type="GHMStatsHook", interval=INTERVAL))
    probe = Probe()
    runner.register_hook(probe)
    runner.train()

    # zero cost off the logged iterations: no hook on the losses there
    assert probe.hooks_seen == [0, 2, 0, 2, 0]  # 2 GHM losses, one hook each when logging
    logs = [json.loads(x) for x in open(os.path.join(runner.log_dir, "vis_data", "scalars.json"))]
    rows = {r["step"]: r for r in logs if any(k.startswith("ghm/") for k in r)}
    assert sorted(rows) == [2, 4]
    for step, entry in probe.logged.items():
        row = rows[step]
        assert set(entry) == {"bbox_head.loss_cls", "bbox_head.loss_bbox"}
        for name, (before, calls, after) in entry.items():
            assert len(calls) == 3  # one call per FPN level
            got = {k: torch.tensor([row[f"ghm/{name}/{k}_{i}"] for i in range(after.bins)])
                   for k in KEYS}
            # the density is the EMA state after the iteration
            torch.testing.assert_close(got["density"], after.acc_sum.float())
            cnt, loss_share, grad_share, _ = replay(before, calls)
            torch.testing.assert_close(before.acc_sum, after.acc_sum)  # a faithful replay
            torch.testing.assert_close(got["count"], cnt.float())
            torch.testing.assert_close(got["loss_share"], loss_share.float(), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(got["grad_share"], grad_share.float(), atol=1e-5, rtol=1e-4)
            for key in ("loss_share", "grad_share"):
                assert abs(got[key].sum() - 1) < 1e-4
    # the mmdet loss keys are still logged by the LoggerHook as before
    assert any("loss_cls" in r for r in logs)


def test_hook_validates_interval_and_builds_from_the_registry():
    from mmengine.registry import HOOKS as MMENGINE_HOOKS
    from mmdet.registry import HOOKS

    for reg in (MMENGINE_HOOKS, HOOKS):
        hook = reg.build(dict(type="GHMStatsHook", interval=7))
        assert isinstance(hook, GHMStatsHook) and hook.interval == 7
    for bad in (0, 2.0, True, None):
        with pytest.raises(ValueError, match="interval"):
            GHMStatsHook(interval=bad)


def test_histograms_go_to_a_tensorboard_backend(tmp_path):
    seen = []

    class Writer:
        def add_histogram_raw(self, tag, **kw):
            seen.append((tag, kw))

    class TB(TensorboardVisBackend):
        @property
        def experiment(self):
            return Writer()

    vis = SimpleNamespace(_vis_backends={"local": object(), "tb": TB(str(tmp_path))})
    stats = {"bbox_head.loss_bbox": {k: torch.tensor([3.0, 1.0]) for k in KEYS}}
    GHMStatsHook._histograms(SimpleNamespace(visualizer=vis), stats, 10)
    assert [t for t, _ in seen] == ["ghm/bbox_head.loss_bbox/density",
                                    "ghm/bbox_head.loss_bbox/grad_share"]
    kw = seen[0][1]
    assert kw["global_step"] == 10 and kw["bucket_counts"] == [3.0, 1.0]
    assert kw["bucket_limits"] == [0.5, 1.0] and kw["num"] == 4.0
