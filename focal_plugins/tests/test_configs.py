"""focal_plugins.configs: the shipped configs by name, from a checkout (here) and the CLI.
The installed layout (focal_plugins/.mim/configs) is checked on a built wheel in
tests/test_env_package.py."""
import os
import subprocess
import sys

import pytest

from focal_plugins import configs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _repo_configs():
    found = []
    for folder, _, files in os.walk(os.path.join(REPO, "configs")):
        found += [os.path.relpath(os.path.join(folder, f), os.path.join(REPO, "configs"))
                  for f in files if f.endswith((".py", ".yaml"))]
    return sorted(found)


def test_a_checkout_reads_its_configs_folder():
    assert os.path.samefile(configs.config_dir(), os.path.join(REPO, "configs"))
    assert configs.list_configs() == _repo_configs()
    assert "mmdet/retinanet_r50_fpn_ghm_1x_coco.py" in configs.list_configs()


def test_list_by_subfolder():
    mm = configs.list_configs("mmdet")
    assert mm and all(n.startswith("mmdet/") for n in mm)
    assert len(mm) == 6
    with pytest.raises(ValueError, match=r"subdir must be one of .*got 'nope'"):
        configs.list_configs("nope")


def test_get_config_file():
    path = configs.get_config_file("detectron2/retinanet_R_50_FPN_1x_ghm.yaml")
    assert os.path.samefile(path, os.path.join(REPO, "configs", "detectron2",
                                               "retinanet_R_50_FPN_1x_ghm.yaml"))
    for bad in ("mmdet/nope.py", "../pyproject.toml", "mmdet", ""):
        with pytest.raises(ValueError, match=f"name must be one of .*got {bad!r}"):
            configs.get_config_file(bad)
    with pytest.raises(TypeError, match="name must be a str, got 3"):
        configs.get_config_file(3)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "focal_plugins.configs", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_cli_lists_and_prints_paths():
    out = _cli()
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == configs.list_configs()
    out = _cli("mmdet/retinanet_r50_fpn_ghm_1x_coco.py")
    assert out.returncode == 0 and out.stdout.strip() == \
        configs.get_config_file("mmdet/retinanet_r50_fpn_ghm_1x_coco.py")
    out = _cli("mmdet/nope.py")
    assert out.returncode == 1 and "got 'mmdet/nope.py'" in out.stderr


def test_mmdet_config_by_path_and_no_package_scope(tmp_path):
    """mmengine resolves `pkg::` only for the OpenMMLab packages it lists, so the docs give
    the path helper. If this starts to fail, mmengine learnt third-party scopes: document
    `focal_plugins::mmdet/...` as well."""
    pytest.importorskip("mmdet")
    from mmengine.config import Config

    own = tmp_path / "mine.py"
    own.write_text(f"_base_ = {configs.get_config_file('mmdet/retinanet_r50_fpn_ghm_1x_coco.py')!r}\n"
                   "model = dict(bbox_head=dict(loss_cls=dict(bins=20)))\n")
    cfg = Config.fromfile(str(own))
    assert cfg.model.bbox_head.loss_cls.type == "GHMC"
    assert cfg.model.bbox_head.loss_cls.bins == 20
    assert cfg.model.type == "RetinaNet"  # from mmdet's own base, through `mmdet::`
    scoped = tmp_path / "scoped.py"
    scoped.write_text("_base_ = 'focal_plugins::mmdet/retinanet_r50_fpn_ghm_1x_coco.py'\n")
    with pytest.raises(AssertionError, match="does not support to load focal_plugins"):
        Config.fromfile(str(scoped))
