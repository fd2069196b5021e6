"""Messages name the key the user wrote, in detectron2's spelling, at build time: a wrong-
length ALPHA (YACS and LazyConfig), the softmax background column, LazyConfig keys in lower
case, GHM_STATS_PERIOD without a GHM loss, and a plugin component built on its own."""
import logging
import os

import pytest

pytest.importorskip("detectron2")

from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

from focal_plugins.detectron2 import (  # noqa: E402
    FocalPluginsRPN, build_ghm_stats_hook, get_cfg)

from .test_detectron2_adapter import CONFIG_DIR, _yaml_cfg  # noqa: E402

FP = "MODEL.FOCAL_PLUGINS."


def test_yacs_alpha_of_the_wrong_length_fails_at_build_naming_the_key():
    cfg = _yaml_cfg(os.path.join(CONFIG_DIR, "retinanet_R_50_FPN_1x_ghm.yaml"),
                    [FP + "RETINANET.CLS_LOSS.NAME", "SigmoidFocalLoss",
                     FP + "RETINANET.CLS_LOSS.ALPHA", [0.25, 0.25, 0.25],
                     FP + "RETINANET.CLS_LOSS.ALPHA_MODE", "uniform"])
    with pytest.raises(ValueError) as err:
        build_model(cfg)
    assert str(err.value) == ("MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.ALPHA has 3 entries; "
                              "SigmoidFocalLoss needs one per logit column: num_classes = 80")


def test_softmax_alpha_of_length_num_classes_names_the_background_column():
    cfg = _yaml_cfg(os.path.join(CONFIG_DIR, "faster_rcnn_R_50_FPN_1x_softmax_focal.yaml"),
                    [FP + "ROI_BOX_HEAD.CLS_LOSS.NAME", "SoftmaxFocalLoss",
                     FP + "ROI_BOX_HEAD.CLS_LOSS.ALPHA", [1.0] * 80])
    with pytest.raises(ValueError) as err:
        build_model(cfg)
    assert str(err.value) == (
        "MODEL.FOCAL_PLUGINS.ROI_BOX_HEAD.CLS_LOSS.ALPHA has 80 entries; SoftmaxFocalLoss "
        "needs one per logit column: num_classes + 1 (background) = 81")


def test_lazyconfig_errors_use_the_lazyconfig_key_names():
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, "retinanet_R_50_FPN_1x_ghm.py"))
    cfg = LazyConfig.apply_overrides(cfg, ["model.cls_loss.bins=0"])
    with pytest.raises(ValueError) as err:
        instantiate(cfg.model.cls_loss)
    assert str(err.value).startswith("bins (BINS in a YACS node) must be an int >= 1, got 0")
    # the component checks a per-class alpha against its num_classes: key cls_loss.alpha
    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, "faster_rcnn_R_50_FPN_1x_softmax_focal.py"))
    cfg.model.roi_heads.box_predictor.cls_loss.alpha = [1.0] * 80
    with pytest.raises(ValueError) as err:
        instantiate(cfg.model.roi_heads.box_predictor)
    assert str(err.value) == ("cls_loss.alpha has 80 entries; SoftmaxFocalLoss needs one per "
                              "logit column: num_classes + 1 (background) = 81")


def test_ghm_stats_period_without_a_ghm_loss_warns(caplog):
    cfg = get_cfg()
    cfg.merge_from_list([FP + "GHM_STATS_PERIOD", 20,
                         FP + "RETINANET.CLS_LOSS.NAME", "SigmoidFocalLoss"])
    with caplog.at_level(logging.WARNING, logger="focal_plugins.detectron2.hooks"):
        assert build_ghm_stats_hook(cfg).period == 20
    assert [r.getMessage() for r in caplog.records] == [
        "MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD = 20 but no MODEL.FOCAL_PLUGINS.*.*_LOSS.NAME is "
        "a GHM loss (GHMC, GHMR): the hook will have nothing to log"]
    caplog.clear()
    cfg.merge_from_list([FP + "RPN.BOX_LOSS.NAME", "GHMR"])
    with caplog.at_level(logging.WARNING, logger="focal_plugins.detectron2.hooks"):
        build_ghm_stats_hook(cfg)
    assert caplog.records == []


def test_plugin_rpn_built_directly_reads_its_own_keys():
    cfg = get_cfg()  # META_ARCHITECTURE GeneralizedRCNN, PROPOSAL_GENERATOR.NAME "RPN"
    cfg.merge_from_list([FP + "RPN.CLS_LOSS.NAME", "GHMC", FP + "RPN.BOX_LOSS.NAME", "GHMR"])
    rpn = FocalPluginsRPN(cfg, {"res4": ShapeSpec(channels=64, stride=16)})
    assert (rpn.cls_loss.NAME, rpn.box_loss.NAME) == ("GHMC", "GHMR")
    # another head's unread key is still reported
    cfg.merge_from_list([FP + "ROI_BOX_HEAD.CLS_LOSS.NAME", "GHMC"])
    with pytest.raises(ValueError, match=r"ROI_BOX_HEAD\.CLS_LOSS\.NAME = 'GHMC' is read by no "
                                         r"component"):
        FocalPluginsRPN(cfg, {"res4": ShapeSpec(channels=64, stride=16)})
