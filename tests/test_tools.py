"""tools/: --data-root layouts, --max-iters, both frameworks' training fronts on a tiny dataset
(the packaged tools are tested in focal_plugins/tools/tests; the demo in tests/test_demo.py).
CPU; the training ones are subprocesses."""
import json
import os
import subprocess
import sys

import pytest

from focal_plugins.data.synthetic import SyntheticConfig, generate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

TINY = dict(num_train=8, num_val=4)


def _env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate(SyntheticConfig(seed=0, **TINY), str(root))
    return root


def _coco_root(tmp_path):
    (tmp_path / "annotations").mkdir()
    for split in ("train2017", "val2017"):
        (tmp_path / split).mkdir()
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    return tmp_path


def test_mmdet_data_root_points_every_dataset_and_evaluator(tmp_path, tiny_data):
    pytest.importorskip("mmengine")
    from mmengine.config import Config

    import train

    for root, tr, va in ((tiny_data, "train/", "val/"),
                         (_coco_root(tmp_path), "train2017/", "val2017/")):
        cfg = Config.fromfile(os.path.join(ROOT, "configs/demo/retinanet_r18_synthetic_ghm.py"))
        train.apply_data_root(cfg, str(root))
        r = str(root).rstrip("/") + "/"
        assert cfg.train_dataloader.dataset.data_root == r
        assert cfg.train_dataloader.dataset.data_prefix == dict(img=tr)
        for key in ("val_dataloader", "test_dataloader"):
            assert cfg[key].dataset.data_prefix == dict(img=va)
            assert cfg[key].dataset.ann_file.endswith(va.rstrip("/") + ".json")
        assert cfg.val_evaluator.ann_file == r + cfg.val_dataloader.dataset.ann_file
    with pytest.raises(FileNotFoundError):
        train.apply_data_root(cfg, str(tmp_path / "nowhere"))


def test_mmdet_max_iters_rescales_the_schedule():
    pytest.importorskip("mmengine")
    from mmengine.config import Config

    import train

    cfg = Config.fromfile(os.path.join(ROOT, "configs/demo/retinanet_r18_synthetic_bce.py"))
    train.apply_max_iters(cfg, 300)
    assert cfg.train_cfg.type == "NoPauseIterBasedTrainLoop"  # the config's own loop is kept
    assert cfg.train_cfg.max_iters == 300 and cfg.train_cfg.val_interval == 300
    assert cfg.default_hooks.checkpoint.interval == 300
    warmup, cosine = cfg.param_scheduler
    assert warmup.end == 50  # the warm-up keeps its length
    assert cosine.end == 300


def test_mmdet_ghm_stats_flag_adds_one_hook(capsys):
    pytest.importorskip("mmengine")
    import train

    cfg_file = os.path.join(ROOT, "configs/demo/retinanet_r18_synthetic_ghm.py")
    cfg = train.build_cfg(train.parse_args([cfg_file, "--ghm-stats", "20"]))
    assert cfg.custom_hooks == [dict(type="GHMStatsHook", interval=20)]
    assert "custom_hooks" not in train.build_cfg(train.parse_args([cfg_file]))
    with pytest.raises(SystemExit):
        train.parse_args([cfg_file, "--ghm-stats", "0"])
    assert "--ghm-stats" in capsys.readouterr().err


@pytest.mark.slow
def test_train_net_detectron2_two_iterations(tmp_path, tiny_data):
    pytest.importorskip("detectron2")
    out_dir = tmp_path / "d2"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file",
           os.path.join(ROOT, "configs/demo/d2_retinanet_r18_synthetic_ghm.yaml"),
           "--data-root", str(tiny_data), "--max-iter", "2", "SOLVER.IMS_PER_BATCH", "2",
           "OUTPUT_DIR", str(out_dir), "MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD", "1"]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    rows = [json.loads(x) for x in (out_dir / "metrics.json").read_text().splitlines() if x]
    assert any("total_loss" in r for r in rows)
    assert any("bbox/AP" in r for r in rows)  # detectron2's COCOEvaluator ran
    # GHMStatsHook installed from the YACS key: the writer keeps its last iteration's values
    ghm = [r for r in rows if "ghm/cls_loss/grad_share_0" in r]
    assert ghm and ghm[-1]["iteration"] == 1 and "ghm/box_loss/density_9" in ghm[-1]
    assert (out_dir / "model_final.pth").is_file()
    # the GHM state is in the checkpoint
    import torch

    state = torch.load(out_dir / "model_final.pth", map_location="cpu", weights_only=False)
    assert any(k.endswith("acc_sum") for k in state["model"])


@pytest.mark.slow
def test_train_net_lazyconfig_fcos_two_iterations(tmp_path, tiny_data):
    pytest.importorskip("detectron2")
    # the shipped FCOS GHM LazyConfig, shrunk to 128-pixel inputs and batch 2 for the CPU
    cfg = tmp_path / "fcos_tiny.py"
    cfg.write_text(
        "from detectron2.config import LazyCall as L, LazyConfig\n"
        "from detectron2.data import transforms as T\n"
        f"_c = LazyConfig.load({os.path.join(ROOT, 'configs/detectron2/fcos_R_50_FPN_1x_ghm.py')!r})\n"
        "dataloader, optimizer, lr_multiplier, train, model = (\n"
        "    _c.dataloader, _c.optimizer, _c.lr_multiplier, _c.train, _c.model)\n"
        "for part in (dataloader.train, dataloader.test):\n"
        "    part.mapper.augmentations = [L(T.ResizeShortestEdge)(short_edge_length=128, max_size=128)]\n"
        "    part.num_workers = 0\n"
        "del part\n"
        "dataloader.train.total_batch_size = 2\n"
        "train.init_checkpoint = ''\n"
        "train.log_period = 1\n"
    )
    out_dir = tmp_path / "fcos"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train_net.py"), "--config-file",
           str(cfg), "--data-root", str(tiny_data), "--max-iter", "2",
           f"train.output_dir={out_dir}", "train.ghm_stats_period=1"]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    rows = [json.loads(x) for x in (out_dir / "metrics.json").read_text().splitlines() if x]
    assert any("total_loss" in r for r in rows)
    assert any("bbox/AP" in r for r in rows)
    # GHMStatsHook from train.ghm_stats_period: every iteration (log_period 1)
    assert sorted(r["iteration"] for r in rows if "ghm/cls_loss/count_0" in r) == [0, 1]


def test_mmdet_plugin_loss_names_match_the_plugin():
    pytest.importorskip("mmdet")
    import focal_plugins.mmdet as plugin
    import train

    assert train.PLUGIN_LOSS_NAMES == tuple(plugin.PLUGIN_LOSSES)


@pytest.mark.slow
@pytest.mark.parametrize("with_plugin", [False, True])
def test_mmdet_train_warns_of_a_silent_swap_and_logs_the_losses(tmp_path, tiny_data,
                                                                with_plugin):
    pytest.importorskip("mmdet")
    cfg = tmp_path / "ghm.py"
    imports = "['focal_plugins.mmdet']" if with_plugin else "[]"
    # without the plugin, mmengine's own loop (the demo's NoPauseIterBasedTrainLoop is the
    # plugin's: refused, see test_mmdet_train_refuses_plugin_types_without_the_import)
    loop = "" if with_plugin else "train_cfg = dict(type='IterBasedTrainLoop')\n"
    cfg.write_text(
        f"_base_ = {os.path.join(ROOT, 'configs/demo/retinanet_r18_synthetic_ghm_paper.py')!r}\n"
        f"custom_imports = dict(imports={imports}, allow_failed_imports=False)\n"
        "train_dataloader = dict(batch_size=2)\n" + loop)
    cmd = [sys.executable, os.path.join(ROOT, "tools", "train.py"), str(cfg), "--data-root",
           str(tiny_data), "--max-iters", "2", "--work-dir", str(tmp_path / "work")]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    log = out.stdout + out.stderr
    warned = [line for line in out.stderr.splitlines() if line.startswith("[train] WARNING")]
    impl = "focal_plugins.mmdet.losses" if with_plugin else "mmdet.models.losses.ghm_loss"
    for loss, name in (("loss_cls", "GHMC"), ("loss_bbox", "GHMR")):
        assert f"loss implementation: bbox_head.{loss} = {impl}.{name}" in log
        assert any(f"model.bbox_head.{loss}: type='{name}' builds mmdet's own" in w
                   for w in warned) != with_plugin
    if not with_plugin:
        assert len(warned) == 2 and "custom_imports" in warned[0]


@pytest.mark.parametrize("extra, named", [
    ("", ["train_cfg.type='NoPauseIterBasedTrainLoop' (a loop)"]),
    ("train_cfg = dict(type='IterBasedTrainLoop')\n"
     "custom_hooks = [dict(type='GHMStatsHook', interval=5)]\n"
     "model = dict(bbox_head=dict(loss_cls=dict(_delete_=True, type='SoftmaxFocalLoss')))\n",
     ["custom_hooks[0].type='GHMStatsHook' (a hook)",
      "model.bbox_head.loss_cls.type='SoftmaxFocalLoss' (a model)"]),
])
def test_mmdet_train_refuses_plugin_types_without_the_import(tmp_path, extra, named):
    pytest.importorskip("mmdet")
    import train

    cfg = tmp_path / "noimport.py"
    cfg.write_text(
        f"_base_ = {os.path.join(ROOT, 'configs/demo/retinanet_r18_synthetic_bce.py')!r}\n"
        "custom_imports = dict(imports=[], allow_failed_imports=False)\n" + extra)
    with pytest.raises(SystemExit) as e:
        train.main([str(cfg), "--work-dir", str(tmp_path / "work")])
    msg = str(e.value)
    for n in named:
        assert n in msg
    assert "custom_imports = dict(imports=['focal_plugins.mmdet']" in msg
    assert not (tmp_path / "work").exists()


def test_mmdet_train_plugin_only_names_are_the_plugins_and_not_mmdets():
    pytest.importorskip("mmdet")
    import mmdet.models  # noqa: F401
    from mmengine.registry import HOOKS, LOOPS, WEIGHT_INITIALIZERS
    from mmdet.registry import HOOKS as DET_HOOKS, LOOPS as DET_LOOPS, MODELS
    import train

    registries = {"model": [MODELS], "weight initializer": [WEIGHT_INITIALIZERS],
                  "hook": [HOOKS, DET_HOOKS], "loop": [LOOPS, DET_LOOPS]}
    import focal_plugins.mmdet as plugin

    for kind, names in train.PLUGIN_ONLY_NAMES.items():
        for name in names:
            cls = next(r.get(name) for r in registries[kind] if r.get(name) is not None)
            assert cls.__module__.startswith("focal_plugins.") or name.startswith("MMDet"), name
    assert set(plugin.__all__) - {"register", "GHMC", "GHMR"} == {
        n for names in train.PLUGIN_ONLY_NAMES.values() for n in names}
