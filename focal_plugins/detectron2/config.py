"""YACS keys, model-zoo config access and ``_BASE_: model_zoo://...`` resolution.

The yaml configs of this package inherit from detectron2's model-zoo configs with
``_BASE_: "model_zoo://COCO-Detection/retinanet_R_50_FPN_1x.yaml"``: a path relative to
detectron2's shipped ``configs/`` folder, wherever detectron2 is installed. detectron2 (via
fvcore) resolves a relative ``_BASE_`` against the including file's folder, which cannot
reach an installed package, so such configs are loaded through :class:`FocalPluginsCfgNode`,
whose ``merge_from_file`` understands the prefix: the class of :func:`get_cfg`'s config, and
of detectron2's ``get_cfg()`` once :func:`add_focal_plugins_config` has run on it. Plain
relative and absolute ``_BASE_`` paths work as in detectron2.
"""
import os
from importlib.util import find_spec

from detectron2.config import CfgNode as _D2CfgNode
from detectron2.config import LazyConfig
from detectron2.config import get_cfg as _d2_get_cfg

from focal_plugins import spec

from .checks import HEADS, check_loss_keys_are_read

__all__ = [
    "MODEL_ZOO_PREFIX", "add_focal_plugins_config", "get_cfg", "FocalPluginsCfgNode",
    "model_zoo_config_file", "get_model_zoo_config",
]

MODEL_ZOO_PREFIX = "model_zoo://"


def _loss_node(node_cls):
    """NAME ("" keeps detectron2's own loss) and one upper-case key per hyperparameter of
    the loss spec (:mod:`focal_plugins.spec`), with the default the losses share (None where
    they differ, ALPHA: the loss's own; ALPHA < 0 means none, fvcore's convention)."""
    node = node_cls()
    node.NAME = ""
    for field, default in spec.shared_defaults().items():
        node[field.upper()] = default
    return node


def _upgrade(node):
    """Make every node of a detectron2 CfgNode tree a FocalPluginsCfgNode in place (the same
    data, plus ``model_zoo://`` bases and the check on freeze); yacs merges only nodes of one
    class, so the whole tree changes."""
    if type(node) is _D2CfgNode:
        object.__setattr__(node, "__class__", FocalPluginsCfgNode)
    for v in node.values():
        if isinstance(v, _D2CfgNode):
            _upgrade(v)


def add_focal_plugins_config(cfg):
    """Add ``cfg.MODEL.FOCAL_PLUGINS.{RETINANET,RPN,ROI_BOX_HEAD}.{CLS_LOSS,BOX_LOSS}`` with
    fields NAME, ALPHA, ALPHA_MODE, GAMMA, BINS, MOMENTUM, MU, LOSS_WEIGHT (the loss spec's
    hyperparameters, :mod:`focal_plugins.spec`). NAME is one of SigmoidFocalLoss,
    SoftmaxFocalLoss, GHMC (classification), GHMR, ASL1Loss (box regression), or "" for
    detectron2's own loss (the default everywhere);
    ``cfg.MODEL.FOCAL_PLUGINS.RETINANET.PER_LEVEL`` (False: the RetinaNet losses are called
    once on all FPN levels; True: once per level, as mmdet's RetinaHead does). Also
    ``cfg.MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD`` (0 = off): log the GHM losses' bins every
    that many iterations (``focal_plugins.detectron2.hooks``). Idempotent.

    A config of detectron2's own CfgNode class (``detectron2.config.get_cfg()``) becomes a
    :class:`FocalPluginsCfgNode` in place, so that, as with this package's :func:`get_cfg`,
    ``merge_from_file`` resolves ``_BASE_: "model_zoo://..."`` and ``freeze()`` refuses loss
    keys that no built component reads. Configs of other CfgNode subclasses keep their
    class."""
    _upgrade(cfg)
    node_cls = type(cfg)  # yacs merges only nodes of one class
    root = cfg.MODEL.get("FOCAL_PLUGINS", None)
    if root is None:
        root = cfg.MODEL.FOCAL_PLUGINS = node_cls()
    for head in HEADS:
        if head not in root:
            root[head] = node_cls()
        for slot in ("CLS_LOSS", "BOX_LOSS"):
            if slot not in root[head]:
                root[head][slot] = _loss_node(node_cls)
    if "PER_LEVEL" not in root.RETINANET:
        root.RETINANET.PER_LEVEL = False
    if "GHM_STATS_PERIOD" not in root:
        root.GHM_STATS_PERIOD = 0
    return cfg


def model_zoo_config_file(config_path: str) -> str:
    """The file of a config shipped with detectron2, e.g.
    ``"COCO-Detection/retinanet_R_50_FPN_1x.yaml"``; the same file as
    ``detectron2.model_zoo.get_config_file``, found without importing
    ``detectron2.model_zoo`` (which imports ``pkg_resources``, gone in setuptools >= 81)."""
    rel = config_path[len(MODEL_ZOO_PREFIX):] if config_path.startswith(MODEL_ZOO_PREFIX) \
        else config_path
    spec = find_spec("detectron2")
    for root in spec.submodule_search_locations or []:
        path = os.path.join(root, "model_zoo", "configs", rel)
        if os.path.isfile(path):
            return path
    raise ValueError(f"{config_path!r} is not a config of detectron2's model zoo")


def get_model_zoo_config(config_path: str):
    """A model-zoo config: a LazyConfig (``.py``) as ``LazyConfig.load`` gives it, or for a
    ``.yaml`` a :func:`get_cfg` config merged with it. Like
    ``detectron2.model_zoo.get_config(config_path)``."""
    return load_config_file(model_zoo_config_file(config_path))


def load_config_file(path: str):
    """A config file: a ``.py`` LazyConfig as ``LazyConfig.load`` gives it, or a ``.yaml``
    merged into a :func:`get_cfg` config."""
    if path.endswith(".py"):
        return LazyConfig.load(path)
    cfg = get_cfg()
    cfg.merge_from_file(path)
    return cfg


class FocalPluginsCfgNode(_D2CfgNode):
    """detectron2's CfgNode, plus ``_BASE_`` paths of the form ``model_zoo://<path>``."""

    @classmethod
    def load_yaml_with_base(cls, filename, allow_unsafe=False):
        # fvcore joins a relative _BASE_ to the including file's folder before recursing,
        # so the prefix may arrive after a folder part.
        if isinstance(filename, str) and MODEL_ZOO_PREFIX in filename:
            filename = model_zoo_config_file(filename[filename.index(MODEL_ZOO_PREFIX):])
        return super().load_yaml_with_base(filename, allow_unsafe=allow_unsafe)

    def freeze(self):
        """Freeze, after checking that every plugin loss key set is read by a component the
        model builds (``focal_plugins.detectron2.checks``)."""
        if "MODEL" in self and "FOCAL_PLUGINS" in self.MODEL:
            check_loss_keys_are_read(self)
        super().freeze()


def get_cfg():
    """detectron2's default config with the focal-plugins keys, as a
    :class:`FocalPluginsCfgNode` (so ``merge_from_file`` resolves ``model_zoo://``)."""
    cfg = FocalPluginsCfgNode(_d2_get_cfg())
    add_focal_plugins_config(cfg)
    return cfg
