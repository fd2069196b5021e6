"""The mmdet wrappers read the loss spec: signature defaults, checks, the registered names;
an mmdet 2.x-style override without _delete_ gets a hint; a per-class alpha of the wrong
length fails when the head is built."""
import inspect

import pytest

pytest.importorskip("mmdet")

import focal_plugins.mmdet as plugin  # noqa: E402
from focal_plugins import spec  # noqa: E402
from focal_plugins.mmdet import losses  # noqa: E402


def test_registered_losses_are_the_spec():
    assert tuple(plugin.PLUGIN_LOSSES) == spec.LOSS_NAMES


@pytest.mark.parametrize("name", spec.LOSS_NAMES)
def test_signature_defaults_are_the_spec(name):
    params = inspect.signature(getattr(losses, name)).parameters
    for k, d in spec.LOSSES[name].defaults.items():
        assert params[k].default == d, (name, k)


def test_override_without_delete_hints_at_delete():
    from mmdet.registry import MODELS
    from mmengine.config import Config

    base = dict(model=dict(loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0,
                                         alpha=0.25, loss_weight=1.0)))
    cfg = Config(base)
    cfg.merge_from_dict(dict(model=dict(loss_cls=dict(type="GHMC", bins=30))))
    with pytest.raises(TypeError) as err:
        MODELS.build(cfg.model.loss_cls)
    msg = str(err.value)
    assert "GHMC: unexpected keyword arguments 'alpha' (a setting of SigmoidFocalLoss, " \
           "SoftmaxFocalLoss), 'gamma' (a setting of SigmoidFocalLoss, SoftmaxFocalLoss)" in msg
    assert "dict(_delete_=True, type='GHMC', ...)" in msg
    with pytest.raises(TypeError, match=r"^GHMR: unexpected keyword argument 'beta'\. .*_delete_"):
        losses.GHMR(beta=1.0)


def test_wrong_alpha_length_fails_when_the_head_is_built():
    from mmdet.registry import MODELS

    head = dict(type="RetinaHead", num_classes=3, in_channels=8, feat_channels=8,
                stacked_convs=1,
                anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4,
                                      scales_per_octave=1, ratios=[1.0], strides=[8]),
                bbox_coder=dict(type="DeltaXYWHBBoxCoder"),
                loss_bbox=dict(type="L1Loss"))
    with pytest.raises(ValueError, match=r"RetinaHead\.loss_cls\.alpha has 3 entries; "
                       r"SoftmaxFocalLoss needs one per logit column: num_classes \+ 1 "
                       r"\(background\) = 4"):
        MODELS.build(dict(head, loss_cls=dict(type="SoftmaxFocalLoss", alpha=[1.0, 1.0, 1.0])))
    with pytest.raises(ValueError, match=r"loss_cls\.alpha has 2 entries; SigmoidFocalLoss "
                       r"needs one per logit column: num_classes = 3"):
        MODELS.build(dict(head, loss_cls=dict(type="SigmoidFocalLoss", use_sigmoid=True,
                                              alpha=[0.5, 0.5], alpha_mode="uniform")))
    built = MODELS.build(dict(head, loss_cls=dict(type="SoftmaxFocalLoss", alpha=[1.0] * 4)))
    assert built.loss_cls.alpha == [1.0] * 4


def _roi_bbox_head():
    from mmdet.registry import MODELS

    return MODELS.build(dict(
        type="Shared2FCBBoxHead", in_channels=4, fc_out_channels=8, roi_feat_size=2,
        num_classes=3, bbox_coder=dict(type="DeltaXYWHBBoxCoder"), reg_class_agnostic=True,
        loss_cls=dict(type="CrossEntropyLoss", loss_weight=1.0),
        loss_bbox=dict(type="GHMR", mu=0.02, bins=10, momentum=0.7)))


def _roi_loss_args(labels):
    import torch

    n = len(labels)
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g),
            torch.zeros(n, 5), torch.tensor(labels), torch.ones(n),
            torch.randn(n, 4, generator=g), torch.ones(n, 4))


def test_distributed_ghmr_is_called_on_every_rank(monkeypatch):
    import copy

    from focal_plugins.mmdet import heads

    head = _roi_bbox_head()
    calls = []
    head.loss_bbox.register_forward_hook(lambda m, a, o: calls.append(len(a[0])))
    # not distributed: mmdet's own behaviour, no call without positives
    assert "loss_bbox" in head.loss(*_roi_loss_args([3, 3]))
    assert calls == []
    monkeypatch.setattr(heads, "_distributed", lambda loss: True)
    out = head.loss(*_roi_loss_args([3, 3]))  # no positive: one call on empty inputs
    assert calls == [0] and float(out["loss_bbox"]) == 0.0
    head.loss(*_roi_loss_args([0, 3, 2]))  # positives: mmdet's one call, no extra
    assert calls == [0, 2]
    copied = copy.deepcopy(head)  # an EMA copy calls its own loss
    copied.loss(*_roi_loss_args([3]))
    assert calls == [0, 2, 0] and copied.loss.__self__ is copied  # (hooks are copied too)


def test_impl_choices_are_the_cores():
    import torch

    from focal_plugins.core import sigmoid_focal_loss

    x, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 3])
    for impl in losses.IMPLS:
        sigmoid_focal_loss(x, t, impl=impl)
    with pytest.raises(ValueError, match="impl must be one of"):
        sigmoid_focal_loss(x, t, impl="cuda")


def _fcos_head_and_batch(boxes):
    import torch
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    head = MODELS.build(dict(
        type="FCOSHead", num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1,
        norm_cfg=None,
        strides=[8, 16], regress_ranges=((-1, 16), (16, 1e8)),
        loss_cls=dict(type="GHMC", bins=10, momentum=0.0),
        loss_bbox=dict(type="GHMR", mu=0.02, bins=10, momentum=0.7)))
    g = torch.Generator().manual_seed(0)
    feats = (torch.randn(1, 8, 8, 8, generator=g), torch.randn(1, 8, 4, 4, generator=g))
    s = DetDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64),
                                    batch_input_shape=(64, 64)))
    b = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    s.gt_instances = InstanceData(bboxes=b, labels=torch.zeros(len(b), dtype=torch.long))
    return head, feats, [s]


def test_distributed_ghmr_is_called_on_every_rank_in_fcos(monkeypatch):
    from focal_plugins.mmdet import heads

    head, feats, empty = _fcos_head_and_batch([])
    calls = []
    head.loss_bbox.register_forward_hook(lambda m, a, o: calls.append(len(a[0])))
    # not distributed: mmdet's own FCOSHead skips loss_bbox without positive points
    assert "loss_bbox" in head.loss(feats, empty)
    assert calls == []
    monkeypatch.setattr(heads, "_distributed", lambda loss: True)
    out = head.loss(feats, empty)          # no positive: one call on empty inputs
    assert calls == [0] and float(out["loss_bbox"]) == 0.0
    _, _, one_box = _fcos_head_and_batch([[8.0, 8.0, 40.0, 40.0]])
    head.loss(feats, one_box)              # positives: FCOS's own one call, no extra
    assert len(calls) == 2 and calls[1] > 0
