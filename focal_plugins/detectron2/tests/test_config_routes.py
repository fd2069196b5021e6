"""Both YACS routes load the shipped configs (the plugin's get_cfg(), and detectron2's
get_cfg() + add_focal_plugins_config()), and loss keys that no built component reads are an
error naming the key to set."""
import glob
import os

import pytest

pytest.importorskip("detectron2")

from detectron2.config import CfgNode as D2CfgNode  # noqa: E402
from detectron2.config import get_cfg as d2_get_cfg  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402

from focal_plugins.detectron2 import (FocalPluginsCfgNode, add_focal_plugins_config,  # noqa: E402
                                      get_cfg, unread_loss_keys)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
YAMLS = sorted(glob.glob(os.path.join(ROOT, "configs", "detectron2", "*.yaml")))
FP = "MODEL.FOCAL_PLUGINS."


def _d2_route():
    cfg = d2_get_cfg()
    add_focal_plugins_config(cfg)
    return cfg


@pytest.mark.parametrize("path", YAMLS, ids=[os.path.basename(p) for p in YAMLS])
def test_detectron2_get_cfg_route_loads_shipped_yaml_like_the_plugin_route(path):
    a = get_cfg()
    a.merge_from_file(path)
    b = _d2_route()
    b.merge_from_file(path)  # FileNotFoundError on the model_zoo:// base before
    b.merge_from_list(["SOLVER.MAX_ITER", 7])
    a.merge_from_list(["SOLVER.MAX_ITER", 7])
    assert a.dump() == b.dump()
    b.freeze()
    assert b.MODEL.WEIGHTS == a.MODEL.WEIGHTS


def test_add_focal_plugins_config_upgrades_the_whole_tree_in_place():
    plain = d2_get_cfg()
    cfg = d2_get_cfg()
    assert add_focal_plugins_config(cfg) is cfg
    assert type(cfg) is FocalPluginsCfgNode and type(cfg.MODEL.RESNETS) is FocalPluginsCfgNode
    assert type(cfg.MODEL.FOCAL_PLUGINS.RPN.CLS_LOSS) is FocalPluginsCfgNode
    del cfg.MODEL["FOCAL_PLUGINS"]
    assert cfg.dump() == plain.dump()
    add_focal_plugins_config(cfg)
    assert add_focal_plugins_config(cfg).MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.NAME == ""
    cfg.clone().merge_from_other_cfg(get_cfg())  # one node class: yacs merges

    class Mine(D2CfgNode):
        pass

    mine = Mine(d2_get_cfg())
    add_focal_plugins_config(mine)
    assert type(mine) is Mine and type(mine.MODEL.FOCAL_PLUGINS) is Mine


def _cfg(arch, opts=()):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", arch, *opts])
    return cfg


BAD = [
    ("RetinaNet", [FP + "RETINANET.CLS_LOSS.NAME", "SoftmaxFocalLoss"],
     "MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.NAME = 'SoftmaxFocalLoss' is read by no component"
     " of this model: MODEL.META_ARCHITECTURE = 'RetinaNet' trains detectron2's own RetinaNet"
     " losses. Set MODEL.META_ARCHITECTURE to 'FocalPluginsRetinaNet', or MODEL.FOCAL_PLUGINS."
     "RETINANET.CLS_LOSS.NAME to '' (detectron2's own loss)."),
    ("RetinaNet", [FP + "RETINANET.BOX_LOSS.NAME", "GHMR"], "RETINANET.BOX_LOSS.NAME = 'GHMR'"),
    ("GeneralizedRCNN", [FP + "RETINANET.CLS_LOSS.NAME", "GHMC"], "has no RetinaNet head"),
    ("GeneralizedRCNN", [FP + "RPN.CLS_LOSS.NAME", "GHMC"],
     "MODEL.PROPOSAL_GENERATOR.NAME = 'RPN' is not the plugin's RPN. Set "
     "MODEL.PROPOSAL_GENERATOR.NAME to 'FocalPluginsRPN'"),
    ("ProposalNetwork", [FP + "RPN.BOX_LOSS.NAME", "ASL1Loss"], "to 'FocalPluginsRPN'"),
    ("GeneralizedRCNN", [FP + "ROI_BOX_HEAD.CLS_LOSS.NAME", "SoftmaxFocalLoss"],
     "MODEL.ROI_HEADS.NAME = 'Res5ROIHeads' is not the plugin's RoI heads. Set "
     "MODEL.ROI_HEADS.NAME to 'FocalPluginsROIHeads'"),
    ("FocalPluginsRetinaNet", [FP + "ROI_BOX_HEAD.BOX_LOSS.NAME", "GHMR"],
     "MODEL.META_ARCHITECTURE = 'FocalPluginsRetinaNet' builds no RoI heads"),
    ("ProposalNetwork", [FP + "ROI_BOX_HEAD.CLS_LOSS.NAME", "GHMC",
                         "MODEL.ROI_HEADS.NAME", "FocalPluginsROIHeads"], "builds no RoI heads"),
    ("RetinaNet", [FP + "RETINANET.PER_LEVEL", True],
     "MODEL.FOCAL_PLUGINS.RETINANET.PER_LEVEL = True is read by no component of this model: "
     "MODEL.META_ARCHITECTURE = 'RetinaNet' is not the plugin's RetinaNet. Set "
     "MODEL.META_ARCHITECTURE to 'FocalPluginsRetinaNet', or PER_LEVEL to False."),
    ("GeneralizedRCNN", [FP + "RETINANET.PER_LEVEL", True], "RETINANET.PER_LEVEL = True"),
]


@pytest.mark.parametrize("arch,opts,message", BAD)
def test_freeze_refuses_loss_keys_no_component_reads(arch, opts, message):
    cfg = _cfg(arch, opts)
    with pytest.raises(ValueError) as err:
        cfg.freeze()
    assert message in str(err.value)
    assert not cfg.is_frozen()
    d2 = _d2_route()  # detectron2's get_cfg() route checks the same
    d2.merge_from_list(["MODEL.META_ARCHITECTURE", arch, *opts])
    with pytest.raises(ValueError, match="read by no component"):
        d2.freeze()


GOOD = [
    ("RetinaNet", []),
    ("FocalPluginsRetinaNet", [FP + "RETINANET.CLS_LOSS.NAME", "GHMC",
                               FP + "RETINANET.BOX_LOSS.NAME", "GHMR"]),
    ("FocalPluginsRetinaNet", [FP + "RETINANET.CLS_LOSS.NAME", "GHMC",
                               FP + "RETINANET.PER_LEVEL", True]),
    ("GeneralizedRCNN", ["MODEL.PROPOSAL_GENERATOR.NAME", "FocalPluginsRPN",
                         "MODEL.ROI_HEADS.NAME", "FocalPluginsROIHeads",
                         FP + "RPN.CLS_LOSS.NAME", "GHMC",
                         FP + "ROI_BOX_HEAD.CLS_LOSS.NAME", "SoftmaxFocalLoss"]),
    ("ProposalNetwork", ["MODEL.PROPOSAL_GENERATOR.NAME", "FocalPluginsRPN",
                         FP + "RPN.BOX_LOSS.NAME", "GHMR"]),
    # a meta-architecture detectron2 does not know (yet): not judged
    ("SomeoneElsesDetector", [FP + "RETINANET.CLS_LOSS.NAME", "GHMC"]),
]


@pytest.mark.parametrize("arch,opts", GOOD)
def test_freeze_accepts_loss_keys_that_are_read(arch, opts):
    cfg = _cfg(arch, opts)
    assert unread_loss_keys(cfg) == []
    cfg.freeze()
    assert cfg.is_frozen()


def test_several_unread_keys_are_all_named():
    cfg = _cfg("RetinaNet", [FP + "RETINANET.CLS_LOSS.NAME", "GHMC", FP + "RPN.CLS_LOSS.NAME",
                             "GHMC"])
    msgs = unread_loss_keys(cfg)
    assert len(msgs) == 2 and "RETINANET.CLS_LOSS" in msgs[0] and "RPN.CLS_LOSS" in msgs[1]


def test_building_a_plugin_component_checks_too():
    # not frozen: the plugin RPN's from_config sees the RoI keys the stock RoI heads ignore
    cfg = _cfg("GeneralizedRCNN", ["MODEL.PROPOSAL_GENERATOR.NAME", "FocalPluginsRPN",
                                   "MODEL.ROI_HEADS.NAME", "StandardROIHeads",
                                   FP + "ROI_BOX_HEAD.CLS_LOSS.NAME", "GHMC",
                                   "MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", 18,
                                   "MODEL.RESNETS.RES2_OUT_CHANNELS", 64])
    with pytest.raises(ValueError, match="MODEL.ROI_HEADS.NAME to 'FocalPluginsROIHeads'"):
        build_model(cfg)
