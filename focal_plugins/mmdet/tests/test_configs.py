"""Every config in configs/mmdet/ builds and trains one step on CPU through the plugin's losses;
parity with mmdet's GHM losses in a real RetinaNet head; the plugin works in FCOS and the RoI
head, where mmdet's GHMC fails."""
import math
import os

import pytest
import torch

pytest.importorskip("mmdet")

import focal_plugins.mmdet as plugin  # noqa: E402
from focal_plugins.mmdet import losses as plugin_losses  # noqa: E402
from focal_plugins.mmdet.tests._helpers import (build_model, load_config, loss_heads,  # noqa: E402
                                                make_batch, plugin_configs)

SIZES = ((64, 96), (96, 64))
CONFIGS = plugin_configs()
PLUGIN_CLASSES = tuple(plugin.PLUGIN_LOSSES.values())
# the layers that must get a gradient, per head
PREDICTORS = {
    "bbox_head": ("retina_cls", "retina_reg", "conv_cls", "conv_reg"),
    "rpn_head": ("rpn_cls", "rpn_reg"),
    "roi_head.bbox_head": ("fc_cls", "fc_reg"),
}


def test_there_are_configs_for_each_detector_and_variant():
    names = {os.path.basename(p) for p in CONFIGS}
    for det in ("retinanet_r50_fpn", "fcos_r50-caffe_fpn_gn-head", "faster-rcnn_r50_fpn"):
        for variant in ("ghm", "softmax-focal"):
            assert f"{det}_{variant}_1x_coco.py" in names


def test_configs_import_the_plugin_and_inherit_mmdet():
    from mmengine.config import Config
    for path in CONFIGS:
        text = open(path).read()
        assert "_base_ = 'mmdet::" in text, path
        cfg = Config.fromfile(path)
        assert cfg.custom_imports == dict(imports=["focal_plugins.mmdet"],
                                          allow_failed_imports=False), path


def test_retinanet_ghm_config_uses_the_paper_settings():
    cfg = load_config([p for p in CONFIGS if p.endswith("retinanet_r50_fpn_ghm_1x_coco.py")][0])
    cls, box = cfg.model.bbox_head.loss_cls, cfg.model.bbox_head.loss_bbox
    assert (cls.type, cls.bins, cls.momentum, cls.use_sigmoid) == ("GHMC", 30, 0.75, True)
    assert (box.type, box.mu, box.bins, box.momentum, box.loss_weight) == \
        ("GHMR", 0.02, 10, 0.7, 10.0)


def _train_step(model, data):
    model.train()
    losses = model(**data, mode="loss")
    loss, log_vars = model.parse_losses(losses)
    loss.backward()
    return loss, log_vars


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.basename(p) for p in CONFIGS])
def test_config_trains_one_step_with_plugin_losses(path):
    cfg = load_config(path)
    model = build_model(cfg)
    # the configured plugin losses are the plugin's classes
    plugin_cfgs = 0
    for name, head in loss_heads(model):
        head_cfg = cfg.model
        for part in name.split("."):
            head_cfg = head_cfg[part]
        for attr in ("loss_cls", "loss_bbox"):
            want = head_cfg[attr]["type"]
            if want in plugin.PLUGIN_LOSSES:
                plugin_cfgs += 1
                assert type(getattr(head, attr)) is plugin.PLUGIN_LOSSES[want], (name, attr)
    assert plugin_cfgs > 0
    data = make_batch(model, sizes=SIZES)
    loss, log_vars = _train_step(model, data)
    assert math.isfinite(loss.item()) and loss.item() > 0, log_vars
    for name, head in loss_heads(model):
        for layer in PREDICTORS[name]:
            if not hasattr(head, layer):
                continue
            for pname, p in getattr(head, layer).named_parameters():
                assert p.grad is not None and torch.isfinite(p.grad).all(), (name, layer, pname)
                assert p.grad.abs().sum() > 0, f"no gradient reaches {name}.{layer}.{pname}"
    # softmax classifiers: num_classes + 1 outputs, accuracy reported through the hooks
    for name, head in loss_heads(model):
        if isinstance(head.loss_cls, PLUGIN_CLASSES) and not head.loss_cls.use_sigmoid:
            assert head.loss_cls.get_cls_channels(80) == 81
            if name == "bbox_head":
                assert head.cls_out_channels == 81
            else:
                assert head.fc_cls.out_features == 81
            if name != "bbox_head" or "fcos" in os.path.basename(path):
                assert "acc" in log_vars


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in CONFIGS if "softmax-focal" in p
                                  and "faster" not in p],
                         ids=lambda p: os.path.basename(p))
def test_softmax_dense_head_predicts_with_mmdet_postprocessing(path):
    model = build_model(load_config(path))
    data = make_batch(model, sizes=SIZES, training=False)
    model.eval()
    with torch.no_grad():
        results = model(**data, mode="predict")
    assert len(results) == 2
    for r in results:
        pred = r.pred_instances
        assert pred.bboxes.shape[-1] == 4 and len(pred.scores) == len(pred.labels)
        if len(pred.labels):
            assert int(pred.labels.max()) < 80  # the background column is never a class
            assert float(pred.scores.max()) <= 1.0 and float(pred.scores.min()) >= 0.0


def _config(suffix):
    return [p for p in CONFIGS if p.endswith(suffix)][0]


@pytest.mark.slow
def test_retinanet_head_plugin_ghm_equals_mmdet_ghm():
    """Same model, same batch, two successive steps (momentum state carried): the plugin's
    GHMC/GHMR give mmdet's GHMC/GHMR losses in a real RetinaHead (called once per level)."""
    from mmdet.registry import MODELS

    model = build_model(load_config(_config("retinanet_r50_fpn_ghm_1x_coco.py")))
    model.train()
    head = model.bbox_head
    cls_cfg = dict(bins=30, momentum=0.75, use_sigmoid=True, loss_weight=1.0)
    box_cfg = dict(mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)
    pairs = {
        "plugin": (MODELS.build(dict(type="GHMC", **cls_cfg)),
                   MODELS.build(dict(type="GHMR", **box_cfg))),
        "mmdet": (MODELS.build(dict(type="MMDetGHMC", **cls_cfg)),
                  MODELS.build(dict(type="MMDetGHMR", **box_cfg))),
    }
    assert type(pairs["plugin"][0]) is plugin_losses.GHMC
    assert type(pairs["mmdet"][0]).__module__.startswith("mmdet.")
    batches = [make_batch(model, sizes=SIZES, seed=s) for s in (0, 1)]
    out = {}
    for who, (cls_loss, box_loss) in pairs.items():
        head.loss_cls, head.loss_bbox = cls_loss, box_loss
        out[who] = []
        for data in batches:
            with torch.no_grad():
                losses = model(**data, mode="loss")
            out[who].append({k: torch.stack(v) for k, v in losses.items()})
    for a, b in zip(out["plugin"], out["mmdet"]):
        assert a.keys() == b.keys() == {"loss_cls", "loss_bbox"}
        for k in a:
            assert a[k].shape == (5,)  # one value per FPN level
            torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
        assert (a["loss_cls"] > 0).all() and a["loss_bbox"].sum() > 0
    torch.testing.assert_close(pairs["plugin"][0].acc_sum, pairs["mmdet"][0].acc_sum,
                               check_dtype=False)   # ours float64 (exact counts), mmdet fp32
    torch.testing.assert_close(pairs["plugin"][1].acc_sum, pairs["mmdet"][1].acc_sum,
                               check_dtype=False)   # ours float64 (exact counts), mmdet fp32


@pytest.mark.slow
def test_fcos_mmdet_ghmc_fails_where_plugin_trains():
    from mmdet.registry import MODELS

    model = build_model(load_config(_config("fcos_r50-caffe_fpn_gn-head_ghm_1x_coco.py")))
    model.train()
    data = make_batch(model, sizes=SIZES)
    plugin_cls = model.bbox_head.loss_cls
    assert type(plugin_cls) is plugin_losses.GHMC
    model.bbox_head.loss_cls = MODELS.build(dict(type="MMDetGHMC", bins=30, momentum=0.75))
    with pytest.raises(TypeError, match="label_weight"):
        model(**data, mode="loss")
    model.bbox_head.loss_cls = plugin_cls
    loss, _ = _train_step(model, data)
    assert math.isfinite(loss.item())
    assert model.bbox_head.conv_cls.weight.grad.abs().sum() > 0


def test_roi_head_softmax_ghmc_mmdet_raises_plugin_builds():
    from mmdet.registry import MODELS

    with pytest.raises(NotImplementedError):
        MODELS.build(dict(type="MMDetGHMC", use_sigmoid=False))
    loss = MODELS.build(dict(type="GHMC", use_sigmoid=False))
    assert type(loss) is plugin_losses.GHMC and loss.custom_activation
    # the RoI-head training step itself: faster-rcnn_r50_fpn_ghm_1x_coco.py above


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in CONFIGS if "softmax-focal" in p
                                  and "faster" not in p],
                         ids=lambda p: os.path.basename(p))
def test_softmax_dense_head_starts_from_the_background_prior(path):
    model = build_model(load_config(path))
    head = model.bbox_head
    cls_layer = head.retina_cls if hasattr(head, "retina_cls") else head.conv_cls
    assert cls_layer.out_channels % 81 == 0
    # an all-zero feature gives the bias: softmax of each group puts 0.99 on background
    probs = cls_layer.bias.detach().view(-1, 81).softmax(-1)
    torch.testing.assert_close(probs[:, -1], torch.full_like(probs[:, -1], 0.99))
    torch.testing.assert_close(probs[:, :-1], torch.full_like(probs[:, :-1], 0.01 / 80))
    model.train()
    with torch.no_grad():
        losses = model(**make_batch(model, sizes=SIZES), mode="loss")
    loss_cls = sum(v.sum() for k, v in losses.items() if k == "loss_cls"
                   for v in (v if isinstance(v, list) else [v]))
    # about alpha * log(80 / 0.01) per positive; the uniform start gave hundreds
    assert 0 < float(loss_cls) < 10
