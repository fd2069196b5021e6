"""NoPauseIterBasedTrainLoop: the same batches in the same order as mmengine's
IterBasedTrainLoop across epoch ends, without its pause when the dataloader has no workers."""
import os
import time

import pytest
import torch

pytest.importorskip("mmdet")

from mmengine.dataset import DefaultSampler, pseudo_collate  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.runner.loops import _InfiniteDataloaderIterator  # noqa: E402
from torch.utils.data import BatchSampler, DataLoader  # noqa: E402

import focal_plugins.mmdet  # noqa: E402,F401
from focal_plugins.data.synthetic import SyntheticConfig, generate  # noqa: E402
from focal_plugins.mmdet import loops  # noqa: E402
from focal_plugins.mmdet.loops import NoPauseIterBasedTrainLoop, RestartingIterator  # noqa: E402

from ._helpers import REPO  # noqa: E402


@pytest.fixture
def sleeps(monkeypatch):
    """Records time.sleep calls instead of sleeping."""
    calls = []
    monkeypatch.setattr(time, "sleep", calls.append)
    return calls


def _loader(n=10, batch=3, batch_sampler=False, workers=0, seed=5):
    data = list(range(n))
    sampler = DefaultSampler(data, shuffle=True, seed=seed)
    if batch_sampler:
        return DataLoader(data, batch_sampler=BatchSampler(sampler, batch, drop_last=False),
                          collate_fn=pseudo_collate, num_workers=workers)
    return DataLoader(data, batch_size=batch, sampler=sampler, collate_fn=pseudo_collate,
                      num_workers=workers)


def _take(it, k):
    return [list(next(it)) for _ in range(k)]


@pytest.mark.parametrize("batch_sampler", [False, True])
def test_same_batches_as_mmengine_over_epoch_ends_without_pause(sleeps, batch_sampler):
    ours = _take(RestartingIterator(_loader(batch_sampler=batch_sampler)), 13)  # 4 a epoch
    assert sleeps == []
    ref = _take(_InfiniteDataloaderIterator(_loader(batch_sampler=batch_sampler)), 13)
    assert sleeps == [2, 2, 2]  # mmengine's pause at each of the 3 epoch ends
    assert ours == ref
    epochs = [sum(ours[4 * e:4 * e + 4], []) for e in range(3)]
    assert all(sorted(e) == list(range(10)) for e in epochs)  # each epoch a full pass
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled: set_epoch reached the sampler


def test_pauses_when_the_dataloader_has_workers(sleeps):
    it = RestartingIterator(_loader(n=4, batch=2, workers=1))
    _take(it, 5)
    assert sleeps == [loops.PAUSE_S, loops.PAUSE_S]


class Batches(Hook):
    """Records the image ids of every training batch."""

    def __init__(self):
        self.ids = []

        self.rng = None

    def before_train(self, runner):
        # after the loop is built and the weights initialised
        self.rng = torch.get_rng_state()

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.ids.append([d.img_id for d in data_batch["data_samples"]])


@pytest.mark.slow
def test_demo_config_trains_on_the_batches_of_iterbasedtrainloop(tmp_path, sleeps):
    """The demo RetinaNet over 2.5 epochs under each loop: the same batches, in order, and
    the same state of torch's global RNG when training starts (so the same initial weights)."""
    from mmengine.config import Config
    from mmengine.runner import Runner

    data = tmp_path / "data"
    generate(SyntheticConfig(seed=0, num_train=4, num_val=2), str(data))
    batches, rngs = {}, []
    for loop in ("NoPauseIterBasedTrainLoop", "IterBasedTrainLoop"):
        cfg = Config.fromfile(os.path.join(REPO, "configs/demo/retinanet_r18_synthetic_bce.py"))
        assert cfg.train_cfg.type == "NoPauseIterBasedTrainLoop"
        cfg.train_dataloader.dataset.data_root = str(data) + "/"
        cfg.train_dataloader.batch_size = 2
        cfg.train_cfg = dict(type=loop, max_iters=5, val_interval=1000)
        cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
        cfg.test_dataloader = cfg.test_evaluator = cfg.test_cfg = None
        cfg.param_scheduler = None
        cfg.default_hooks.checkpoint = None
        cfg.default_hooks.pop("visualization")
        cfg.work_dir = str(tmp_path / loop)
        cfg.randomness = dict(seed=3)
        runner = Runner.from_cfg(cfg)
        probe = Batches()
        runner.register_hook(probe)
        runner.train()
        assert type(runner.train_loop).__name__ == loop and runner.iter == 5
        batches[loop] = probe.ids
        rngs.append(probe.rng)
        sleeps.append(loop)
    assert sleeps == ["NoPauseIterBasedTrainLoop", 2, 2, "IterBasedTrainLoop"]
    ours, ref = batches.values()
    assert ours == ref and len(ours) == 5
    assert torch.equal(*rngs)
    epochs = [sorted(sum(ours[2 * e:2 * e + 2], [])) for e in range(2)]
    assert epochs[0] == epochs[1] == sorted(set(epochs[0])) and len(epochs[0]) == 4
