"""SoftmaxPriorInit: the background column of every group starts at background_prob."""
import math

import pytest
import torch
from torch import nn

pytest.importorskip("mmdet")

from mmengine.model.weight_init import initialize  # noqa: E402

from focal_plugins.mmdet import SoftmaxPriorInit  # noqa: E402


def test_override_sets_background_prior_per_anchor_group():
    head = nn.Module()
    head.cls = nn.Conv2d(8, 3 * 6, 3)  # 3 anchors x (5 classes + background)
    initialize(head, dict(type="Normal", layer="Conv2d", std=0.01,
                          override=dict(type="SoftmaxPriorInit", name="cls", std=0.01,
                                        num_classes=5, background_prob=0.9)))
    probs = head.cls.bias.detach().view(3, 6).softmax(-1)
    torch.testing.assert_close(probs[:, -1], torch.full((3,), 0.9))
    torch.testing.assert_close(probs[:, :-1], torch.full((3, 5), 0.02))
    assert 0.005 < float(head.cls.weight.detach().std()) < 0.02
    assert math.isclose(SoftmaxPriorInit(num_classes=5, background_prob=0.9).background_bias(),
                        math.log(0.9 / 0.02))


def test_layer_mode_and_bad_arguments():
    lin = nn.Linear(4, 12)
    SoftmaxPriorInit(num_classes=3, layer="Linear")(lin)
    assert torch.allclose(lin.bias.view(3, 4)[:, :3], torch.zeros(3, 3))
    with pytest.raises(ValueError, match="num_classes"):
        SoftmaxPriorInit(num_classes=4, layer="Linear")(lin)  # 12 % 5 != 0
    with pytest.raises(ValueError, match="background_prob"):
        SoftmaxPriorInit(num_classes=3, background_prob=1.0)
    with pytest.raises(ValueError, match="num_classes"):
        SoftmaxPriorInit(num_classes=0)
