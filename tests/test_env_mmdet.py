"""The mmdet environment is real: one CPU training step of mmdet's own shipped configs.

RetinaNet, FCOS and Faster R-CNN are built from the config files mmdet 3.3 ships inside its
package (``mmdet/.mim/configs``), changed only where a test must: no pretrained backbone
(there is no network) and a small input image. Each step must give a finite loss and
non-zero gradients in the backbone, the neck and the head(s).
"""
import math
import os

import pytest
import torch

mmdet = pytest.importorskip("mmdet")

from mmengine.config import Config  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

SHIPPED = {
    "retinanet": "retinanet/retinanet_r50_fpn_1x_coco.py",
    "fcos": "fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py",
    "faster_rcnn": "faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py",
}
# parameters that must receive a gradient (prefixes of named_parameters)
HEADS = {
    "retinanet": ("bbox_head.retina_cls", "bbox_head.retina_reg"),
    "fcos": ("bbox_head.conv_cls", "bbox_head.conv_reg", "bbox_head.conv_centerness"),
    "faster_rcnn": ("rpn_head.rpn_cls", "rpn_head.rpn_reg",
                    "roi_head.bbox_head.fc_cls", "roi_head.bbox_head.fc_reg"),
}


def shipped_config_path(rel):
    return os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", rel)


def build_detector(rel):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(shipped_config_path(rel))
    # the only change to the model: random init instead of a downloaded checkpoint
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def make_batch(model, sizes=((96, 128), (128, 96)), num_classes=80, seed=0):
    """Two random uint8 images with 1-3 random gt boxes each, run through the detector's
    own data preprocessor (normalisation, padding to 32)."""
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
    return model.data_preprocessor(dict(inputs=inputs, data_samples=samples), training=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_config_trains_one_step(name):
    model = build_detector(SHIPPED[name])
    model.train()
    data = make_batch(model)
    losses = model(**data, mode="loss")
    loss, log_vars = model.parse_losses(losses)
    assert math.isfinite(loss.item()) and loss.item() > 0, log_vars
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    for prefix in HEADS[name] + ("neck.", "backbone.layer4."):
        hit = [g for n, g in grads.items() if n.startswith(prefix)]
        assert hit, f"no trainable parameter under {prefix}"
        assert all(g is not None and torch.isfinite(g).all() for g in hit), prefix
        assert any(g.abs().sum() > 0 for g in hit), f"zero gradient under {prefix}"
