"""Shared test helpers: build a detector from a config file on CPU and a random batch."""
import glob
import os

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CONFIG_DIR = os.path.join(REPO, "configs", "mmdet")


def plugin_configs():
    return sorted(glob.glob(os.path.join(CONFIG_DIR, "*.py")))


def load_config(path, small_backbone=True):
    """The config, with random init (no checkpoint download) and, for speed, a ResNet-18
    backbone (the neck's input channels follow); heads and losses stay as configured."""
    from mmengine.config import Config

    try:
        import pkg_resources  # noqa: F401
    except ImportError as e:  # pragma: no cover - an environment problem, said plainly
        raise RuntimeError("mmengine 0.10 resolves the configs' `mmdet::` base paths with "
                           "pkg_resources, which setuptools >= 81 no longer has: install "
                           "setuptools<81 (pinned by focal-plugins[mmdet])") from e
    cfg = Config.fromfile(path)
    cfg.model.backbone.init_cfg = None
    if small_backbone:
        cfg.model.backbone.depth = 18
        cfg.model.neck.in_channels = [64, 128, 256, 512]
    return cfg


def build_model(cfg, seed=0):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def make_batch(model, sizes=((96, 128), (128, 96)), num_classes=80, seed=0, training=True):
    """Random uint8 images with 1-3 random gt boxes each, through the model's preprocessor."""
    from mmengine.structures import InstanceData
    from mmdet.structures import DetDataSample

    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for h, w in sizes:
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        n = int(torch.randint(1, 4, (1,), generator=g))
        xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 16 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.35, h * 0.35])
        boxes = torch.cat([xy, (xy + wh).minimum(torch.tensor([w - 1.0, h - 1.0]))], 1)
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=boxes, labels=torch.randint(0, num_classes, (n,), generator=g))
        samples.append(sample)
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), training=training)


def loss_heads(model):
    """(name, head) pairs of the heads that own loss_cls / loss_bbox."""
    out = []
    for name in ("bbox_head", "rpn_head"):
        if getattr(model, name, None) is not None:
            out.append((name, getattr(model, name)))
    roi = getattr(model, "roi_head", None)
    if roi is not None:
        out.append(("roi_head.bbox_head", roi.bbox_head))
    return out
