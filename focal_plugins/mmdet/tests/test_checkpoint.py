"""Checkpoints of the plugin's configs load with torch's weights_only loader once
focal_plugins.mmdet is imported: in-process, and through mmdet's stock tools/test.py and
tools/train.py --resume (the copies shipped inside the mmdet wheel)."""
import io
import os
import pickle
import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import pytest
import torch

pytest.importorskip("mmdet")

from mmengine.logging import HistoryBuffer  # noqa: E402

import focal_plugins.mmdet  # noqa: E402, F401  (registers the allowlist)
from focal_plugins.data.synthetic import SyntheticConfig, generate  # noqa: E402
from focal_plugins.mmdet.checkpoint import history_buffer_method  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
GHM_CONFIG = os.path.join(REPO, "configs", "demo", "retinanet_r18_synthetic_ghm.py")


def _roundtrip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_message_hub_objects_load_weights_only():
    hb = HistoryBuffer()
    for v in (0.5, 1.5, 2):
        hb.update(v)
    ints = HistoryBuffer([1, 2], [1, 1])
    out = _roundtrip({"lr": hb, "n": ints, "eta": np.float64(3.25), "i": np.int64(7),
                      "a": np.arange(3, dtype=np.float32), "ok": np.bool_(True)})
    assert out["lr"].mean() == pytest.approx(4 / 3) and out["lr"].max() == 2
    assert out["n"].current() == 2
    assert out["eta"] == 3.25 and out["i"] == 7 and bool(out["ok"])
    np.testing.assert_array_equal(out["a"], np.arange(3, dtype=np.float32))


class _Lookup:
    """Pickles as getattr(HistoryBuffer, name)."""

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return (getattr, (HistoryBuffer, self.name))


def test_nothing_broader_is_allowed():
    # the stand-in for getattr gives HistoryBuffer's statistics methods only
    assert history_buffer_method(HistoryBuffer, "mean") is HistoryBuffer.mean
    for obj, name in ((HistoryBuffer, "update"), (os, "system"), (np, "load")):
        with pytest.raises(pickle.UnpicklingError, match="statistics methods"):
            history_buffer_method(obj, name)
    assert _roundtrip({"m": _Lookup("max")})["m"] is HistoryBuffer.max
    buf = io.BytesIO()
    torch.save({"m": _Lookup("__init__")}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError, match="statistics methods"):
        torch.load(buf, weights_only=True)
    buf = io.BytesIO()
    torch.save({"x": np.complex128(1j), "y": np.arange(2, dtype=np.uint16)}, buf)
    buf.seek(0)
    with pytest.raises(pickle.UnpicklingError):  # dtypes no log holds
        torch.load(buf, weights_only=True)


def _stock_tool(name):
    spec = find_spec("mmdet")
    for root in spec.submodule_search_locations or []:
        path = os.path.join(root, ".mim", "tools", name)
        if os.path.isfile(path):
            return path
    pytest.skip(f"this mmdet install has no .mim/tools/{name}")


def _run(tool, *args, cwd):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    env.pop("TORCH_FORCE_WEIGHTS_ONLY_LOAD", None)
    out = subprocess.run([sys.executable, _stock_tool(tool), *args], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=900)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    return log


def _config(tmp_path, max_iters):
    data = str(tmp_path / "data") + "/"
    path = tmp_path / f"ghm_{max_iters}.py"
    path.write_text(
        f"_base_ = {GHM_CONFIG!r}\n"
        f"data_root = {data!r}\n"
        "train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))\n"
        "val_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))\n"
        "test_dataloader = val_dataloader\n"
        "val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')\n"
        "test_evaluator = val_evaluator\n"
        f"train_cfg = dict(max_iters={max_iters}, val_interval={max_iters})\n"
        "param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False,\n"
        "                        begin=0, end=4)]\n"
        "default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))\n")
    return str(path)


@pytest.mark.slow
def test_stock_mmdet_tools_load_a_plugin_checkpoint(tmp_path):
    generate(SyntheticConfig(seed=0, num_train=8, num_val=2), str(tmp_path / "data"))
    work = tmp_path / "work"
    _run("train.py", _config(tmp_path, 2), "--work-dir", str(work), cwd=tmp_path)
    ckpt = work / "iter_2.pth"
    assert ckpt.is_file()
    # the file holds more than tensors, and loads weights_only here
    assert "message_hub" in torch.load(ckpt, map_location="cpu", weights_only=True)

    log = _run("test.py", _config(tmp_path, 2), str(ckpt), "--work-dir",
               str(tmp_path / "test"), cwd=tmp_path)
    assert "Load checkpoint from" in log and "Unsupported global" not in log

    log = _run("train.py", _config(tmp_path, 4), "--work-dir", str(work), "--resume",
               cwd=tmp_path)
    assert "resumed epoch: 0, iter: 2" in log
    resumed = torch.load(work / "iter_4.pth", map_location="cpu", weights_only=True)
    assert resumed["meta"]["iter"] == 4
    assert resumed["state_dict"]["bbox_head.loss_cls.acc_sum"].sum() > 0
