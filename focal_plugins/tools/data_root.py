"""Points an mmdet config at a COCO-format dataset root (the tools' ``--data-root DIR``).

Two layouts are recognised:

* COCO 2017: ``annotations/instances_{train,val}2017.json`` with ``train2017/``, ``val2017/``
* the embedded synthetic dataset: ``annotations/instances_{train,val}.json`` with
  ``train/``, ``val/`` (``python -m focal_plugins.data.synthetic --out DIR``)

The train, val and test datasets get ``data_root``, annotation file and image folder (the test
split uses the val annotations), the COCO evaluators their ``ann_file``; the class names are
read from the train annotation file and every ``num_classes`` in the model is set to their
number. The same rules as the checkout's ``tools/train.py --data-root``.
"""
from __future__ import annotations

import json
import os
import os.path as osp

__all__ = ["LAYOUTS", "detect_layout", "apply_data_root", "resolve_config"]

# (train ann, train images, val ann, val images)
LAYOUTS = (
    ("annotations/instances_train2017.json", "train2017/",
     "annotations/instances_val2017.json", "val2017/"),
    ("annotations/instances_train.json", "train/",
     "annotations/instances_val.json", "val/"),
)


def detect_layout(root: str):
    """The entry of :data:`LAYOUTS` found under ``root``; FileNotFoundError naming
    ``--data-root`` otherwise."""
    for layout in LAYOUTS:
        if osp.isfile(osp.join(root, layout[0])) and osp.isfile(osp.join(root, layout[2])):
            return layout
    expected = "; or ".join(f"{a} + {b} and {c} + {d}" for a, b, c, d in LAYOUTS)
    raise FileNotFoundError(f"--data-root {root}: no COCO layout found (expected {expected})")


def _innermost(ds):
    """Unwraps RepeatDataset/ClassBalancedDataset-style wrappers (``dataset=`` inside)."""
    while isinstance(ds, dict) and "dataset" in ds and isinstance(ds["dataset"], dict):
        ds = ds["dataset"]
    return ds


def _datasets(cfg, key):
    loader = cfg.get(key)
    if not loader or "dataset" not in loader:
        return []
    ds = _innermost(loader["dataset"])
    return [_innermost(d) for d in (ds["datasets"] if "datasets" in ds else [ds])]


def _set_num_classes(node, n):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "num_classes" and isinstance(v, int):
                node[k] = n
            else:
                _set_num_classes(v, n)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _set_num_classes(v, n)


def apply_data_root(cfg, root: str):
    """Points the mmengine ``cfg``'s datasets and COCO evaluators at ``root`` (in place;
    returns ``cfg``)."""
    root = root.rstrip("/") + "/"
    train_ann, train_img, val_ann, val_img = detect_layout(root)
    cfg.data_root = root
    with open(osp.join(root, train_ann)) as f:
        cats = sorted(json.load(f)["categories"], key=lambda c: c["id"])
    classes = tuple(c["name"] for c in cats)
    for key, ann, img in (("train_dataloader", train_ann, train_img),
                          ("val_dataloader", val_ann, val_img),
                          ("test_dataloader", val_ann, val_img)):
        for d in _datasets(cfg, key):
            d["data_root"] = root
            d["ann_file"] = ann
            d["data_prefix"] = dict(img=img)
            d["metainfo"] = dict(d.get("metainfo") or {}, classes=classes)
    for key in ("val_evaluator", "test_evaluator"):
        ev = cfg.get(key)
        for e in ev if isinstance(ev, (list, tuple)) else [ev]:
            if isinstance(e, dict) and "ann_file" in e:
                e["ann_file"] = root + val_ann
    _set_num_classes(cfg.model, len(classes))
    return cfg


def resolve_config(config: str) -> str:
    """``config`` if it is a file, else the shipped config of that name
    (``python -m focal_plugins.configs`` lists them)."""
    if os.path.isfile(config):
        return config
    from ..configs import get_config_file, list_configs

    if config in list_configs():
        return get_config_file(config)
    raise FileNotFoundError(f"CONFIG {config!r}: no such file, and no shipped config of that "
                            "name (python -m focal_plugins.configs lists them)")
