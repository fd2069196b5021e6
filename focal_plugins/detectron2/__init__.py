"""detectron2 adapter: config switches for the focal-plugins losses in RetinaNet, FCOS and
Faster R-CNN (RPN and RoI box head).

Importing this package registers, in detectron2's registries, the meta-architecture
"FocalPluginsRetinaNet", the proposal generator "FocalPluginsRPN" and the RoI heads
"FocalPluginsROIHeads". YACS users call :func:`add_focal_plugins_config` (or use
:func:`get_cfg`, which also resolves ``_BASE_: "model_zoo://..."``); LazyConfig users put
``L(build_loss)(name=..., ...)`` objects into the components' ``cls_loss`` / ``box_loss``.
``GHMStatsHook`` (``focal_plugins.detectron2.hooks``) logs the GHM losses' bins while
training (YACS: ``MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD``).

The components are thin: each overrides only its loss call. ``losses()`` calls detectron2's
own ``losses()`` while the loss functions it looks up in its module (``sigmoid_focal_loss_jit``,
``_dense_box_regression_loss``, ``F.binary_cross_entropy_with_logits``, ``cross_entropy``,
``smooth_l1_loss``) are routed to the plugin loss (``focal_plugins.detectron2.route``); the
masks, normalisers, logging and loss weights are detectron2's code.

Process-wide effects of importing this package (all of them):

* **Registration**: ``FocalPluginsRetinaNet`` in ``META_ARCH_REGISTRY``, ``FocalPluginsRPN``
  in ``PROPOSAL_GENERATOR_REGISTRY``, ``FocalPluginsROIHeads`` in ``ROI_HEADS_REGISTRY``.
* **Pillow**: ``PIL.Image.LINEAR`` is restored as an alias of ``BILINEAR`` where Pillow >= 10
  removed it, so that detectron2 0.6's ``detectron2.data`` imports (``focal_plugins._compat``).
* **Config classes**: only when called, :func:`add_focal_plugins_config` turns a detectron2
  ``CfgNode`` tree it is given into :class:`FocalPluginsCfgNode` in place; nothing global.
* **While a plugin component computes its losses** (and only then), the attributes named
  above of detectron2's ``retinanet``, ``fcos``, ``rpn`` and ``fast_rcnn`` modules are a
  dispatcher that sends the calls of that thread's routed block to the plugin loss and every
  other call to the original; the originals are back when the last such call returns.

Nothing else is patched: stock detectron2 models, trainers and tools behave as without it.
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
