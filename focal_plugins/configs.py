"""The config files shipped with focal-plugins.

``mmdet/`` (mmdetection 3.x: RetinaNet, FCOS, Faster R-CNN with GHM or softmax focal losses),
``detectron2/`` (YACS ``.yaml`` and LazyConfig ``.py``) and ``demo/`` (the demo's small
RetinaNets). An installed package holds them in ``focal_plugins/.mim/configs`` (the folder
OpenMMLab packages use); a checkout (editable install) in its own ``configs/``.

mmengine resolves package scopes (``_base_ = 'mmdet::...'``) only for the OpenMMLab
packages it lists, so an mmdet config of this package is used by its path::

    python -m focal_plugins.configs                       # list the shipped configs
    python -m focal_plugins.configs mmdet/retinanet_r50_fpn_ghm_1x_coco.py   # print its path
    python tools/train.py "$(python -m focal_plugins.configs mmdet/retinanet_r50_fpn_ghm_1x_coco.py)"

or in a config of your own, ``_base_ = '/path/printed/above.py'``. detectron2 users call
``focal_plugins.detectron2.model_zoo.get_config(...)``, as ``detectron2.model_zoo``.
"""
import os
import sys

from .core.checks import check_choice

__all__ = ["config_dir", "list_configs", "get_config_file"]

_SUFFIXES = (".py", ".yaml", ".yml")


def config_dir() -> str:
    """The folder holding the shipped configs."""
    here = os.path.dirname(os.path.abspath(__file__))
    for path in (os.path.join(here, ".mim", "configs"),
                 os.path.join(os.path.dirname(here), "configs")):
        if os.path.isdir(path):
            return path
    raise FileNotFoundError(
        f"no configs next to {here}: this focal_plugins was installed without them")


def list_configs(subdir: str = "") -> list:
    """Paths, relative to :func:`config_dir` and with ``/``, of the shipped config files
    (under ``subdir``, e.g. ``"mmdet"``, when given), sorted."""
    root = config_dir()
    if subdir:
        check_choice("subdir", subdir, sorted(
            d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))))
    found = []
    for folder, dirs, files in os.walk(os.path.join(root, subdir)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = os.path.relpath(folder, root)
        found += [os.path.normpath(os.path.join(rel, f)).replace(os.sep, "/")
                  for f in files if f.endswith(_SUFFIXES)]
    return sorted(found)


def get_config_file(name: str) -> str:
    """The absolute path of a shipped config, ``name`` relative to :func:`config_dir`,
    e.g. ``"mmdet/retinanet_r50_fpn_ghm_1x_coco.py"``; ValueError for any other name."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {name!r}")
    check_choice("name", name, list_configs())
    return os.path.join(config_dir(), *name.split("/"))


def main(argv=None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in ([], ["--list"]):
        print("\n".join(list_configs()))
        return 0
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m focal_plugins.configs [NAME]\n"
              "  without NAME: list the shipped configs; with NAME: print its path",
              file=sys.stderr)
        return 2
    try:
        print(get_config_file(args[0]))
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
