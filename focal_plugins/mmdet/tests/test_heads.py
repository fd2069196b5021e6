"""focal_plugins.mmdet.heads: SoftmaxFocalLoss in a dense head starts at the softmax prior
without extra config; the build log names each head loss's implementation."""
import math
import os

import pytest
import torch

pytest.importorskip("mmdet")

from mmengine.logging import MMLogger  # noqa: E402

import focal_plugins.mmdet  # noqa: E402, F401
from focal_plugins.mmdet.tests._helpers import (CONFIG_DIR, build_model, load_config,  # noqa: E402
                                                make_batch)

HEADS = {"retinanet_r50_fpn_softmax-focal_1x_coco.py": "retina_cls",
         "fcos_r50-caffe_fpn_gn-head_softmax-focal_1x_coco.py": "conv_cls"}


def _stock_init(cfg, conv):
    """The config with the head's stock init (bias_prob=0.01), no SoftmaxPriorInit (the
    shipped configs set none since ef010f8: this spells mmdet's default out)."""
    cfg.model.bbox_head.init_cfg = dict(type="Normal", layer="Conv2d", std=0.01, override=dict(
        type="Normal", name=conv, std=0.01, bias_prob=0.01))
    return cfg


def _loss_cls(model, data):
    model.train()
    with torch.no_grad():
        losses = model(**data, mode="loss")
    v = losses["loss_cls"]
    return float(sum(v)) if isinstance(v, list) else float(v)


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(HEADS))
def test_softmax_focal_dense_head_gets_the_softmax_prior(config):
    conv_name = HEADS[config]
    cfg = _stock_init(load_config(os.path.join(CONFIG_DIR, config)), conv_name)
    model = build_model(cfg)
    conv = getattr(model.bbox_head, conv_name)
    probs = conv.bias.detach().view(-1, 81).softmax(-1)
    torch.testing.assert_close(probs[:, -1], torch.full((probs.shape[0],), 0.99))
    torch.testing.assert_close(probs[:, :-1], torch.full((probs.shape[0], 80), 0.01 / 80))
    data = make_batch(model)
    # iteration 0: alpha 0.25 x -ln(0.01 / 80) = 2.25 per positive, normalised by positives
    first = _loss_cls(model, data)
    assert 1.5 < first < 3.0, first
    with torch.no_grad():  # the sigmoid prior the head's init_cfg gave, read by a softmax
        conv.bias.fill_(-math.log(99))
    assert _loss_cls(model, data) > 10 * first


@pytest.mark.slow
def test_an_explicit_prior_is_kept():
    cfg = load_config(os.path.join(CONFIG_DIR, "retinanet_r50_fpn_softmax-focal_1x_coco.py"))
    cfg.model.bbox_head.init_cfg = dict(type="Normal", layer="Conv2d", std=0.01, override=dict(
        type="SoftmaxPriorInit", name="retina_cls", std=0.01, num_classes=80,
        background_prob=0.9))
    model = build_model(cfg)
    probs = model.bbox_head.retina_cls.bias.detach().view(-1, 81).softmax(-1)
    torch.testing.assert_close(probs[:, -1], torch.full((probs.shape[0],), 0.9))


def test_sigmoid_heads_and_roi_heads_are_untouched():
    from mmdet.models.dense_heads import RetinaHead
    from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead

    head = RetinaHead(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1,
                      anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4,
                                            scales_per_octave=1, ratios=[1.0],
                                            strides=[8]))
    head.init_weights()
    torch.testing.assert_close(head.retina_cls.bias.detach(),
                               torch.full((3,), -math.log(99)))
    roi = Shared2FCBBoxHead(num_classes=3, in_channels=4, fc_out_channels=8, roi_feat_size=2,
                            loss_cls=dict(type="SoftmaxFocalLoss", use_sigmoid=False))
    roi.init_weights()
    torch.testing.assert_close(roi.fc_cls.bias.detach(), torch.zeros(4))


def test_a_head_whose_classifier_is_ambiguous_says_what_to_add():
    from mmdet.models.dense_heads import RetinaHead

    class TwoClassifiers(RetinaHead):
        def _init_layers(self):
            super()._init_layers()
            self.extra_cls = torch.nn.Conv2d(8, 4, 1)

    head = TwoClassifiers(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1,
                          anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4,
                                                scales_per_octave=1, ratios=[1.0],
                                                strides=[8]),
                          loss_cls=dict(type="SoftmaxFocalLoss", use_sigmoid=False))
    with pytest.raises(ValueError, match=r"TwoClassifiers.*'retina_cls', 'extra_cls'"
                                         r".*SoftmaxPriorInit.*num_classes=3"):
        head.init_weights()


def test_build_log_names_each_head_loss_implementation(tmp_path):
    from mmdet.models.dense_heads import RetinaHead

    log = tmp_path / "build.log"
    MMLogger.get_instance("focal_plugins_heads_test", log_file=str(log), log_level="INFO")
    for loss in ("GHMC", "MMDetGHMC"):
        RetinaHead(num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1,
                   anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4,
                                         scales_per_octave=1, ratios=[1.0], strides=[8]),
                   loss_cls=dict(type=loss, use_sigmoid=True, bins=10))
    text = log.read_text()
    assert "RetinaHead.loss_cls: focal_plugins.mmdet.losses.GHMC" in text
    assert "RetinaHead.loss_cls: mmdet.models.losses.ghm_loss.GHMC" in text
    assert "RetinaHead.loss_bbox: mmdet.models.losses.smooth_l1_loss.SmoothL1Loss" in text
