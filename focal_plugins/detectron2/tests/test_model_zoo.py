"""focal_plugins.detectron2.model_zoo: the shipped detectron2 configs, reached as detectron2's
own model_zoo reaches its configs."""
import os

import pytest

pytest.importorskip("detectron2")

from detectron2.config import CfgNode  # noqa: E402

from focal_plugins import configs  # noqa: E402
from focal_plugins.detectron2 import model_zoo  # noqa: E402


def test_lists_every_shipped_detectron2_config():
    names = model_zoo.list_configs()
    assert names == [n[len("detectron2/"):] for n in configs.list_configs("detectron2")]
    assert {"retinanet_R_50_FPN_1x_ghm.yaml", "fcos_R_50_FPN_1x_ghm.py",
            "faster_rcnn_R_50_FPN_1x_softmax_focal.yaml"} <= set(names)


def test_get_config_file():
    path = model_zoo.get_config_file("retinanet_R_50_FPN_1x_ghm.yaml")
    assert os.path.samefile(path, os.path.join(configs.config_dir(), "detectron2",
                                               "retinanet_R_50_FPN_1x_ghm.yaml"))
    with pytest.raises(ValueError, match="config_path must be one of .*got 'nope.yaml'"):
        model_zoo.get_config_file("nope.yaml")
    with pytest.raises(TypeError, match="config_path must be a str, got None"):
        model_zoo.get_config_file(None)


def test_yaml_config_merges_detectron2s_base_and_the_plugin_keys():
    cfg = model_zoo.get_config("retinanet_R_50_FPN_1x_ghm.yaml")
    assert isinstance(cfg, CfgNode)
    assert cfg.MODEL.META_ARCHITECTURE == "FocalPluginsRetinaNet"
    assert cfg.MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.NAME == "GHMC"
    assert cfg.MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.BINS == 30
    assert cfg.MODEL.RETINANET.NUM_CLASSES == 80  # from detectron2's model-zoo base
    assert cfg.SOLVER.MAX_ITER == 90000


def test_lazy_config():
    cfg = model_zoo.get_config("fcos_R_50_FPN_1x_ghm.py")
    assert cfg.model.cls_loss.name == "GHMC" and cfg.model.cls_loss.bins == 30
    assert cfg.model.num_classes == 80


def test_no_trained_weights():
    with pytest.raises(ValueError, match="trained=True: focal-plugins publishes no trained"):
        model_zoo.get_config("retinanet_R_50_FPN_1x_ghm.yaml", trained=True)
