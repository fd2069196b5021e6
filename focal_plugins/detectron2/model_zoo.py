"""The detectron2 configs shipped with focal-plugins, reached as ``detectron2.model_zoo``
reaches detectron2's own::

    from focal_plugins.detectron2 import model_zoo
    cfg = model_zoo.get_config("retinanet_R_50_FPN_1x_ghm.yaml")   # YACS CfgNode
    cfg = model_zoo.get_config("fcos_R_50_FPN_1x_ghm.py")          # LazyConfig
    path = model_zoo.get_config_file("retinanet_R_50_FPN_1x_ghm.yaml")

Names are relative to the package's ``configs/detectron2`` folder. The package publishes no
trained weights, so ``trained=True`` is refused.
"""

from .. import configs
from ..core.checks import check_choice
from .config import load_config_file

__all__ = ["get_config_file", "get_config", "list_configs"]

_SUBDIR = "detectron2"


def list_configs() -> list:
    """Names of the shipped detectron2 configs, sorted."""
    return [n[len(_SUBDIR) + 1:] for n in configs.list_configs(_SUBDIR)]


def get_config_file(config_path: str) -> str:
    """The path of a shipped detectron2 config, e.g. ``"retinanet_R_50_FPN_1x_ghm.yaml"``."""
    if not isinstance(config_path, str):
        raise TypeError(f"config_path must be a str, got {config_path!r}")
    check_choice("config_path", config_path, list_configs())
    return configs.get_config_file(f"{_SUBDIR}/{config_path}")


def get_config(config_path: str, trained: bool = False):
    """A shipped config: for ``.yaml`` a :func:`focal_plugins.detectron2.get_cfg` config
    merged with it, for ``.py`` the LazyConfig as ``LazyConfig.load`` gives it."""
    if trained:
        raise ValueError(f"trained={trained!r}: focal-plugins publishes no trained weights; "
                         "set MODEL.WEIGHTS (YACS) or train.init_checkpoint (LazyConfig)")
    return load_config_file(get_config_file(config_path))
