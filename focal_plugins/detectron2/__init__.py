"""detectron2 adapter: config switches for the focal-plugins losses in RetinaNet, FCOS and
Faster R-CNN (RPN and RoI box head).

Importing this package registers, in detectron2's registries, the meta-architecture
"FocalPluginsRetinaNet", the proposal generator "FocalPluginsRPN" and the RoI heads
"FocalPluginsROIHeads". YACS users call :func:`add_focal_plugins_config` (or use
:func:`get_cfg`, which also resolves ``_BASE_: "model_zoo://..."``); LazyConfig users put
``L(build_loss)(name=..., ...)`` objects into the components' ``cls_loss`` / ``box_loss``.
``GHMStatsHook`` (``focal_plugins.detectron2.hooks``) logs the GHM losses' bins while
training (YACS: ``MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD``).
"""
from .. import _compat  # noqa: F401  (before detectron2: Pillow >= 10)
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
from .hooks import (
    GHMStatsHook,
    build_ghm_stats_hook,
    insert_ghm_stats_hook,
    register_ghm_stats_hook,
)
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
    "FocalPluginsROIHeads", "FocalPluginsFastRCNNOutputLayers", "GHMStatsHook",
    "build_ghm_stats_hook", "insert_ghm_stats_hook", "register_ghm_stats_hook",
    "check_loss_keys_are_read", "unread_loss_keys",
]
