"""Both train fronts with 2 CPU processes (gloo) through the frameworks' own machinery
(torchrun + mmengine's Runner and DDP wrapper; tools/train_net.py --num-gpus 2 with
detectron2's trainer and comm): a few iterations of the demo GHM configs, the GHM state
checked equal across the ranks at each checkpoint and at the end, and after the first
iteration equal to one process fed the concatenated batch (same initial weights, no batch
coupling: backbone BN frozen, no random flip; the 2 ranks' batches {p0, p2} and {p1, p3} of
the shared shuffled order are the single process's batch {p0, ..., p3})."""
import os
import socket
import subprocess
import sys

import pytest
import torch

from focal_plugins.data.synthetic import SyntheticConfig, generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
EQUAL = "GHM state equal across 2 ranks"

pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason="tests the CPU (gloo) path of the train fronts")


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("FOCAL_PLUGINS_DIST_TIMEOUT", None)
    return env


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(cmd, timeout=600, ok=True):
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                         timeout=timeout)
    assert (out.returncode == 0) == ok, out.stdout[-4000:] + out.stderr[-4000:]
    return out.stdout + out.stderr


# a train front whose GHM-C has bins=30 on rank 0 and bins=20 on rank 1; before, gloo
# aborted a process (SIGABRT) in mmengine's broadcast of the initial weights
MMDET_BINS_BY_RANK = """
import os, sys
sys.path.insert(0, {tools!r})
import train
bins = 30 if os.environ["RANK"] == "0" else 20
train.main(sys.argv[1:] + [f"model.bbox_head.loss_cls.bins={{bins}}"])
"""
D2_BINS_BY_RANK = """
import sys
sys.path.insert(0, {tools!r})
import train_net
from detectron2.utils import comm
_setup = train_net.setup_yacs


def _bins_by_rank(args):
    args.opts = list(args.opts) + ["MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.BINS",
                                   "30" if comm.get_rank() == 0 else "20"]
    return _setup(args)


train_net.setup_yacs = _bins_by_rank  # also in the spawned processes (they import this)
if __name__ == "__main__":
    train_net.cli()
"""


def _ghm_state(path):
    sd = torch.load(path, map_location="cpu", weights_only=False)
    sd = sd.get("state_dict", sd.get("model", sd))
    state = {k: v for k, v in sd.items() if k.endswith("acc_sum")}
    assert len(state) == 2, sorted(sd)[:20]
    return state


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate(SyntheticConfig(seed=0, num_train=8, num_val=4), str(root))
    return root


def test_mmdet_cpu_launchers_other_than_torchrun_are_refused(monkeypatch):
    pytest.importorskip("mmengine")
    from mmengine.config import Config

    import train

    cfg = Config(dict(model=dict()))
    assert train.init_cpu_distributed(cfg, "none") is False
    with pytest.raises(SystemExit, match="--launcher slurm on a machine without CUDA"):
        train.init_cpu_distributed(cfg, "slurm")
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(SystemExit, match="RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT not set"):
        train.init_cpu_distributed(cfg, "pytorch")


@pytest.mark.slow
def test_mmdet_two_cpu_processes_torchrun(tmp_path, tiny_data):
    pytest.importorskip("mmdet")
    cfg = tmp_path / "ghm_dist.py"
    cfg.write_text(
        f"_base_ = {os.path.join(ROOT, 'configs/demo/retinanet_r18_synthetic_ghm.py')!r}\n"
        "model = dict(backbone=dict(norm_eval=True))\n"
        "train_dataloader = dict(sampler=dict(seed=0), dataset=dict(pipeline=[\n"
        "    dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),\n"
        "    dict(type='Resize', scale=(128, 128), keep_ratio=True),\n"
        "    dict(type='PackDetInputs')]))\n"
        "val_dataloader = val_cfg = val_evaluator = None\n"
        "test_dataloader = test_cfg = test_evaluator = None\n"
        "train_cfg = dict(max_iters=2, val_interval=1000)\n"
        "default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))\n")
    two, one = tmp_path / "two", tmp_path / "one"
    log = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(_free_port()), os.path.join(ROOT, "tools", "train.py"),
                str(cfg), "--launcher", "pytorch", "--data-root", str(tiny_data),
                "--work-dir", str(two), "--cfg-options", "train_dataloader.batch_size=2"])
    assert "no CUDA: rank 0 of 2 on the CPU (gloo process group)" in log
    assert log.count(EQUAL) == 2, log[-4000:]  # after each checkpoint (the last is the end)
    assert f"{EQUAL} (bbox_head.loss_bbox.acc_sum, bbox_head.loss_bbox.edges, " \
        "bbox_head.loss_cls.acc_sum, bbox_head.loss_cls.edges) (checkpoint at iteration 2)" in log
    _run([sys.executable, os.path.join(ROOT, "tools", "train.py"), str(cfg),
          "--data-root", str(tiny_data), "--work-dir", str(one), "--cfg-options",
          "train_dataloader.batch_size=4", "train_cfg.max_iters=1"])
    a, b = _ghm_state(two / "iter_1.pth"), _ghm_state(one / "iter_1.pth")
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].sum() > 0, k
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(_ghm_state(two / "iter_2.pth")[k], a[k])  # it kept counting


@pytest.mark.slow
def test_detectron2_two_cpu_processes(tmp_path, tiny_data):
    pytest.importorskip("detectron2")
    common = ["--config-file",
              os.path.join(ROOT, "configs/demo/d2_retinanet_r18_synthetic_ghm.yaml"),
              "--data-root", str(tiny_data), "SOLVER.IMS_PER_BATCH", "4",
              "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.WARMUP_ITERS", "1", "SEED", "0",
              "MODEL.RESNETS.NORM", "FrozenBN", "INPUT.RANDOM_FLIP", "none"]
    two, one = tmp_path / "two", tmp_path / "one"
    log = _run([sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--num-gpus", "2",
                "--dist-url", f"tcp://127.0.0.1:{_free_port()}", *common,
                "SOLVER.MAX_ITER", "2", "OUTPUT_DIR", str(two)])
    assert "Rank 0 of 2" in log
    assert log.count(EQUAL) == 2, log[-4000:]
    assert f"{EQUAL} (box_loss.ghm.acc_sum, box_loss.ghm.edges, cls_loss.ghm.acc_sum, " \
        "cls_loss.ghm.edges) (end of training, iteration 2)" in log
    _run([sys.executable, os.path.join(ROOT, "tools", "train_net.py"), *common,
          "SOLVER.MAX_ITER", "1", "OUTPUT_DIR", str(one)])
    a, b = _ghm_state(two / "model_0000000.pth"), _ghm_state(one / "model_0000000.pth")
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].sum() > 0, k
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert not torch.equal(_ghm_state(two / "model_final.pth")[k], a[k])


@pytest.mark.slow
def test_mmdet_settings_that_differ_across_ranks_are_named(tmp_path, tiny_data):
    pytest.importorskip("mmdet")
    script = tmp_path / "bins_by_rank.py"
    script.write_text(MMDET_BINS_BY_RANK.format(tools=os.path.join(ROOT, "tools")))
    log = _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                "--master_port", str(_free_port()), str(script),
                os.path.join(ROOT, "configs/demo/retinanet_r18_synthetic_ghm.py"),
                "--launcher", "pytorch", "--data-root", str(tiny_data), "--max-iters", "2",
                "--work-dir", str(tmp_path / "wd"), "--cfg-options",
                "train_dataloader.batch_size=2"], timeout=300, ok=False)
    assert log.count("GHMCollectiveError: GHM settings differ across ranks: "
                     "bbox_head.loss_cls.bins: rank 0 = 30, rank 1 = 20") == 2, log[-4000:]
    assert "SIGABRT" not in log and "terminate called" not in log, log[-4000:]


@pytest.mark.slow
def test_detectron2_settings_that_differ_across_ranks_are_named(tmp_path, tiny_data):
    pytest.importorskip("detectron2")
    script = tmp_path / "bins_by_rank.py"
    script.write_text(D2_BINS_BY_RANK.format(tools=os.path.join(ROOT, "tools")))
    log = _run([sys.executable, str(script), "--num-gpus", "2",
                "--dist-url", f"tcp://127.0.0.1:{_free_port()}", "--config-file",
                os.path.join(ROOT, "configs/demo/d2_retinanet_r18_synthetic_ghm.yaml"),
                "--data-root", str(tiny_data), "--max-iter", "2", "SOLVER.IMS_PER_BATCH", "4",
                "OUTPUT_DIR", str(tmp_path / "out")], timeout=300, ok=False)
    assert "ProcessRaisedException" in log, log[-4000:]
    assert "GHMCollectiveError: GHM settings differ across ranks: cls_loss.ghm.bins: " \
        "rank 0 = 30, rank 1 = 20" in log, log[-4000:]
