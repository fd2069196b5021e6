"""The shipped softmax-focal mmdet configs hold no dataset constant: inheriting one with another
num_classes builds, starts at the softmax prior for that many classes and trains a step."""
import os

import pytest
import torch

pytest.importorskip("mmdet")

from focal_plugins.configs import get_config_file, list_configs  # noqa: E402

SOFTMAX = [n for n in list_configs("mmdet") if "softmax-focal" in n]


def test_no_hard_coded_class_count():
    assert len(SOFTMAX) == 3
    for name in SOFTMAX:
        with open(get_config_file(name)) as f:
            text = f.read()
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        assert "num_classes" not in code and "80" not in code, name


@pytest.mark.slow
@pytest.mark.parametrize("name", SOFTMAX, ids=os.path.basename)
def test_inheriting_with_8_classes_builds_and_starts_at_the_prior(name, tmp_path):
    from mmengine.config import Config

    from focal_plugins.mmdet.tests._helpers import build_model, make_batch

    dense = "faster" not in name
    head = "bbox_head=dict(num_classes=8)" if dense else "roi_head=dict(bbox_head=dict(num_classes=8))"
    cfg_file = tmp_path / "mine.py"
    cfg_file.write_text(f"_base_ = {get_config_file(name)!r}\n"
                        f"model = dict(backbone=dict(depth=18, init_cfg=None),\n"
                        f"             neck=dict(in_channels=[64, 128, 256, 512]), {head})\n")
    cfg = Config.fromfile(str(cfg_file))
    model = build_model(cfg)
    if dense:
        h = model.bbox_head
        conv = h.retina_cls if hasattr(h, "retina_cls") else h.conv_cls
        assert h.num_classes == 8 and conv.out_channels % 9 == 0
        probs = conv.bias.detach().view(-1, 9).softmax(-1)
        torch.testing.assert_close(probs[:, -1], torch.full_like(probs[:, -1], 0.99))
        torch.testing.assert_close(probs[:, :-1], torch.full_like(probs[:, :-1], 0.01 / 8))
    else:
        assert model.roi_head.bbox_head.fc_cls.out_features == 9
    model.train()
    with torch.no_grad():
        losses = model(**make_batch(model, sizes=((64, 96), (96, 64)), num_classes=8), mode="loss")
    loss_cls = [v for k, v in losses.items() if k.endswith("loss_cls")]
    assert loss_cls and all(torch.isfinite(torch.as_tensor(v).sum()) for v in loss_cls)
