"""focal_plugins.tools.data_root: the tools' --data-root, the same rules as tools/train.py's."""
import importlib.util
import json
import os

import pytest

from focal_plugins.data.synthetic import SyntheticConfig, generate
from focal_plugins.tools.data_root import LAYOUTS, apply_data_root, detect_layout, resolve_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    generate(SyntheticConfig(seed=0, num_train=4, num_val=2), str(root))
    return root


def _coco_root(tmp_path):
    (tmp_path / "annotations").mkdir()
    for split in ("train2017", "val2017"):
        (tmp_path / split).mkdir()
        (tmp_path / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": [], "annotations": [],
             "categories": [{"id": 2, "name": "b"}, {"id": 1, "name": "a"}]}))
    return tmp_path


def test_points_every_dataset_and_evaluator_and_sets_the_classes(tiny, tmp_path):
    pytest.importorskip("mmengine")
    from mmengine.config import Config

    for root, tr, va, classes in ((tiny, "train/", "val/", 8),
                                  (_coco_root(tmp_path), "train2017/", "val2017/", 2)):
        cfg = Config.fromfile(resolve_config("demo/retinanet_r18_synthetic_ghm.py"))
        apply_data_root(cfg, str(root))
        r = str(root).rstrip("/") + "/"
        assert cfg.train_dataloader.dataset.data_root == r
        assert cfg.train_dataloader.dataset.data_prefix == dict(img=tr)
        for key in ("val_dataloader", "test_dataloader"):
            assert cfg[key].dataset.data_prefix == dict(img=va)
            assert cfg[key].dataset.ann_file.endswith(va.rstrip("/") + ".json")
            assert len(cfg[key].dataset.metainfo["classes"]) == classes
        assert cfg.val_evaluator.ann_file == r + cfg.val_dataloader.dataset.ann_file
        assert cfg.model.bbox_head.num_classes == classes
    assert cfg.train_dataloader.dataset.metainfo["classes"] == ("a", "b")  # by category id
    with pytest.raises(FileNotFoundError, match="--data-root"):
        detect_layout(str(tmp_path / "nowhere"))


def test_same_config_as_the_checkouts_train_py(tiny):
    """tools/train.py takes --data-root's rules from this module (one copy, not two), and
    gives the same config."""
    pytest.importorskip("mmengine")
    path = os.path.join(REPO, "tools", "train.py")
    if not os.path.isfile(path):
        pytest.skip("not a checkout")
    from mmengine.config import Config

    spec = importlib.util.spec_from_file_location("_checkout_train", path)
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    assert train.apply_data_root is apply_data_root and train.LAYOUTS is LAYOUTS
    for name in ("demo/retinanet_r18_synthetic_ghm.py", "mmdet/retinanet_r50_fpn_ghm_1x_coco.py"):
        a = Config.fromfile(resolve_config(name))
        b = Config.fromfile(resolve_config(name))
        apply_data_root(a, str(tiny))
        train.apply_data_root(b, str(tiny))
        assert a.to_dict() == b.to_dict(), name


def test_resolve_config_takes_a_path_or_a_shipped_name(tmp_path):
    f = tmp_path / "c.py"
    f.write_text("x = 1\n")
    assert resolve_config(str(f)) == str(f)
    assert resolve_config("demo/retinanet_r18_synthetic_ghm.py").endswith(
        os.path.join("demo", "retinanet_r18_synthetic_ghm.py"))
    with pytest.raises(FileNotFoundError, match="'nope.py'.*focal_plugins.configs"):
        resolve_config("nope.py")
