"""tools/train.py: a GHM run checkpointed at iteration 2 and resumed to 4 ends with the same
GHM state (GHM-C / GHM-R running histograms, buffers of the loss modules) and the same
weights as an uninterrupted 4-iteration run. CPU, tiny generated dataset, subprocesses."""
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.slow
pytest.importorskip("mmdet")

from focal_plugins.data.synthetic import SyntheticConfig, generate  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GHM_CONFIG = os.path.join(ROOT, "configs", "demo", "retinanet_r18_synthetic_ghm.py")


def _config(tmp_path, max_iters):
    # explicit schedule ends, so the interrupted run (max_iters 2) has the same learning
    # rates at iterations 1-2 as the uninterrupted one
    path = tmp_path / f"ghm_{max_iters}.py"
    path.write_text(
        f"_base_ = {GHM_CONFIG!r}\n"
        f"data_root = {str(tmp_path / 'data') + '/'!r}\n"
        "train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))\n"
        "val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')\n"
        "test_evaluator = val_evaluator\n"
        f"train_cfg = dict(max_iters={max_iters}, val_interval=4)\n"
        "param_scheduler = [dict(type='LinearLR', start_factor=0.5,\n"
        "                   by_epoch=False, begin=0, end=4)]\n"
        "default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=3),\n"
        "                     logger=dict(interval=1))\n"
        "randomness = dict(seed=0, deterministic=False)\n"
    )
    return str(path)


def _train(config, work_dir, *extra):
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train.py"), config,
           "--work-dir", str(work_dir), *extra]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    generate(SyntheticConfig(seed=0, num_train=8, num_val=2), str(tmp / "data"))
    straight = tmp / "straight"
    _train(_config(tmp, 4), straight)
    resumed = tmp / "resumed"
    _train(_config(tmp, 2), resumed)
    assert (resumed / "iter_2.pth").is_file() and not (resumed / "iter_4.pth").exists()
    log = _train(_config(tmp, 4), resumed, "--resume")
    return straight, resumed, log


def test_resume_continues_from_the_checkpoint(runs):
    _, resumed, log = runs
    assert "resumed" in log.lower() or "resume" in log.lower()
    assert (resumed / "iter_4.pth").is_file()
    assert _state(resumed / "iter_2.pth").keys() == _state(resumed / "iter_4.pth").keys()


def test_resumed_ghm_state_equals_uninterrupted(runs):
    straight, resumed, _ = runs
    a, b = _state(straight / "iter_4.pth"), _state(resumed / "iter_4.pth")
    ghm_keys = [k for k in a if k.startswith("bbox_head.loss_") and k.endswith("acc_sum")]
    assert sorted(ghm_keys) == ["bbox_head.loss_bbox.acc_sum", "bbox_head.loss_cls.acc_sum"]
    mid = _state(resumed / "iter_2.pth")
    for k in ghm_keys:
        assert a[k].sum() > 0, f"{k} never updated"
        assert not torch.equal(mid[k], a[k]), f"{k} did not change after the resume"
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    for k in a:  # and the whole model (weights, BN statistics) followed the same path
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5, msg=k)
