"""detectron2 adapter: config switches for the focal-plugins losses in RetinaNet, FCOS and
Faster R-CNN (RPN and RoI box head).

Importing this package registers, in detectron2's registries, the meta-architecture
"FocalPluginsRetinaNet", the proposal generator "FocalPluginsRPN" and the RoI heads
"FocalPluginsROIHeads". YACS users call :func:`add_focal_plugins_config` (or use
:func:`get_cfg`, which also resolves ``_BASE_: "model_zoo://..."``); LazyConfig users put
``L(build_loss)(name=..., ...)`` objects into the components' ``cls_loss`` / ``box_loss``.
"""
from .config import (
    MODEL_ZOO_PREFIX,
    FocalPluginsCfgNode,
    add_focal_plugins_config,
    get_cfg,
    get_model_zoo_config,
    model_zoo_config_file,
)
from .checks import check_loss_keys_are_read, unread_loss_keys
from .fcos import FocalPluginsFCOS, GroupNormFactory
from .losses import (
    ASL1Loss,
    GHMC,
    GHMR,
    SLOT_NAMES,
    SigmoidFocalLoss,
    SoftmaxFocalLoss,
    build_loss,
    check_loss_for_slot,
)
from .rcnn import FocalPluginsFastRCNNOutputLayers, FocalPluginsROIHeads, FocalPluginsRPN
from .retinanet import FocalPluginsRetinaNet

__all__ = [
    "MODEL_ZOO_PREFIX", "FocalPluginsCfgNode", "add_focal_plugins_config", "get_cfg",
    "get_model_zoo_config", "model_zoo_config_file", "build_loss", "check_loss_for_slot",
    "SLOT_NAMES", "SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC", "GHMR", "ASL1Loss",
    "FocalPluginsRetinaNet", "FocalPluginsFCOS", "GroupNormFactory", "FocalPluginsRPN",
    "FocalPluginsROIHeads", "FocalPluginsFastRCNNOutputLayers", "check_loss_keys_are_read",
    "unread_loss_keys",
]
