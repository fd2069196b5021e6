"""The detectron2 components run detectron2's own losses() bodies with only the loss calls
routed to the plugin losses; the routing leaves detectron2's modules as they were and other
threads' calls alone."""
import threading
import types

import pytest
import torch

pytest.importorskip("detectron2")

import fvcore.nn  # noqa: E402
from detectron2.layers import ShapeSpec  # noqa: E402
from detectron2.modeling.meta_arch import retinanet as d2_retinanet  # noqa: E402
from detectron2.modeling.proposal_generator import rpn as d2_rpn  # noqa: E402
from detectron2.modeling.roi_heads import fast_rcnn as d2_fast_rcnn  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402

from focal_plugins.detectron2 import FocalPluginsRPN, get_cfg  # noqa: E402
from focal_plugins.detectron2.rcnn import FocalPluginsFastRCNNOutputLayers  # noqa: E402
from focal_plugins.detectron2.route import routed  # noqa: E402

FP = "MODEL.FOCAL_PLUGINS."


def test_routed_calls_only_this_threads_block_and_restores():
    mod = types.ModuleType("fake_d2")
    mod.loss = lambda x: ("original", x)
    mod.F = types.SimpleNamespace(bce=lambda x: ("F original", x), other=lambda: "other")
    original = mod.loss
    seen = {}
    with routed(mod, {"loss": lambda x: ("routed", x), "F.bce": lambda x: ("F routed", x)}):
        assert mod.loss(1) == ("routed", 1)
        assert mod.F.bce(2) == ("F routed", 2) and mod.F.other() == "other"
        t = threading.Thread(target=lambda: seen.update(loss=mod.loss(3), bce=mod.F.bce(4)))
        t.start()
        t.join()
        with routed(mod, {"loss": lambda x: ("inner", x)}):
            assert mod.loss(5) == ("inner", 5)
        assert mod.loss(6) == ("routed", 6)
    assert seen == {"loss": ("original", 3), "bce": ("F original", 4)}
    assert mod.loss is original and mod.F.bce(7) == ("F original", 7)


def _count(monkeypatch, cls):
    calls = []
    orig = cls.losses

    def counted(self, *args, **kwargs):
        calls.append(1)
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(cls, "losses", counted)
    return calls


def test_rpn_runs_detectron2s_losses_with_the_plugin_calls(monkeypatch):
    calls = _count(monkeypatch, d2_rpn.RPN)
    cfg = get_cfg()
    cfg.merge_from_list([FP + "RPN.CLS_LOSS.NAME", "GHMC", FP + "RPN.BOX_LOSS.NAME", "ASL1Loss"])
    rpn = FocalPluginsRPN(cfg, {"res4": ShapeSpec(channels=8, stride=16)})
    got = []
    rpn.cls_loss.register_forward_hook(lambda m, a, o: got.append(("cls", o)))
    rpn.box_loss.register_forward_hook(lambda m, a, o: got.append(("box", o)))
    g = torch.Generator().manual_seed(0)
    N, R = 2, 30
    anchors = [Boxes(torch.rand(R, 4, generator=g) * 10 + torch.tensor([0, 0, 20, 20.0]))]
    gt_labels = [torch.randint(-1, 2, (R,), generator=g) for _ in range(N)]
    gt_boxes = [a + 1.0 for a in [anchors[0].tensor] * N]
    logits = [torch.randn(N, R, generator=g)]
    deltas = [torch.randn(N, R, 4, generator=g) * 0.1]
    with EventStorage(0) as storage:
        losses = rpn.losses(anchors, logits, gt_labels, deltas, gt_boxes)
        assert "rpn/num_pos_anchors" in storage.latest()
    assert calls == [1]  # detectron2's own body ran
    assert [k for k, _ in got] == ["box", "cls"]  # detectron2's order of the two calls
    out = dict(got)
    torch.testing.assert_close(losses["loss_rpn_cls"], out["cls"])
    torch.testing.assert_close(losses["loss_rpn_loc"], out["box"])
    assert d2_rpn.F is torch.nn.functional
    assert d2_rpn._dense_box_regression_loss.__module__ == "detectron2.modeling.box_regression"


def test_roi_predictor_runs_detectron2s_losses_with_the_plugin_calls(monkeypatch):
    calls = _count(monkeypatch, d2_fast_rcnn.FastRCNNOutputLayers)
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "GeneralizedRCNN", "MODEL.ROI_HEADS.NAME",
                         "FocalPluginsROIHeads", "MODEL.ROI_HEADS.NUM_CLASSES", 3,
                         FP + "ROI_BOX_HEAD.CLS_LOSS.NAME", "SoftmaxFocalLoss",
                         FP + "ROI_BOX_HEAD.BOX_LOSS.NAME", "GHMR"])
    head = FocalPluginsFastRCNNOutputLayers(cfg, ShapeSpec(channels=16))
    g = torch.Generator().manual_seed(0)
    props = Instances((64, 64))
    props.proposal_boxes = Boxes(torch.tensor([[0, 0, 10, 10.0], [5, 5, 30, 30], [1, 2, 8, 9]]))
    props.gt_boxes = Boxes(torch.tensor([[1, 1, 11, 11.0], [4, 6, 28, 31], [0, 0, 9, 9]]))
    props.gt_classes = torch.tensor([0, 2, 3])
    scores, deltas = torch.randn(3, 4, generator=g), torch.randn(3, 12, generator=g) * 0.1
    with EventStorage(0):
        losses = head.losses((scores, deltas), [props])
    assert calls == [1]
    torch.testing.assert_close(losses["loss_cls"], head.cls_loss(scores, props.gt_classes, 3, 3))
    fg = torch.tensor([0, 1])
    target = head.box2box_transform.get_deltas(props.proposal_boxes.tensor[fg],
                                               props.gt_boxes.tensor[fg])
    fresh = type(head.box_loss)()
    torch.testing.assert_close(losses["loss_box_reg"],
                               fresh(deltas.view(3, 3, 4)[fg, props.gt_classes[fg]], target, 3))
    assert d2_fast_rcnn.cross_entropy.__module__ == "detectron2.layers.wrappers"
    assert d2_fast_rcnn.smooth_l1_loss is fvcore.nn.smooth_l1_loss
    assert d2_retinanet.sigmoid_focal_loss_jit is fvcore.nn.sigmoid_focal_loss_jit


def test_empty_inputs_still_make_every_ghm_call():
    # distributed GHM all-reduces its bin counts in each call: a rank with no positives
    # (or no foreground proposals) must make the same calls as the others
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.META_ARCHITECTURE", "GeneralizedRCNN", "MODEL.ROI_HEADS.NAME",
                         "FocalPluginsROIHeads", "MODEL.ROI_HEADS.NUM_CLASSES", 3,
                         "MODEL.PROPOSAL_GENERATOR.NAME", "FocalPluginsRPN",
                         FP + "ROI_BOX_HEAD.CLS_LOSS.NAME", "GHMC",
                         FP + "ROI_BOX_HEAD.BOX_LOSS.NAME", "GHMR",
                         FP + "ROI_BOX_HEAD.BOX_LOSS.MOMENTUM", 0.5,
                         FP + "RPN.CLS_LOSS.NAME", "GHMC", FP + "RPN.BOX_LOSS.NAME", "GHMR"])
    head = FocalPluginsFastRCNNOutputLayers(cfg, ShapeSpec(channels=16))
    seen = []
    head.cls_loss.register_forward_hook(lambda m, a, o: seen.append(("cls", len(a[0]))))
    head.box_loss.register_forward_hook(lambda m, a, o: seen.append(("box", len(a[0]))))
    props = Instances((64, 64))
    props.proposal_boxes = Boxes(torch.tensor([[0, 0, 10, 10.0], [5, 5, 30, 30]]))
    props.gt_classes = torch.tensor([3, 3])  # background only: no gt_boxes
    with EventStorage(0):
        losses = head.losses((torch.randn(2, 4), torch.randn(2, 12)), [props])
    assert seen == [("cls", 2), ("box", 0)]
    assert float(losses["loss_box_reg"]) == 0.0
    seen.clear()
    empty = Instances((64, 64))  # an image with no proposals
    empty.proposal_boxes = Boxes(torch.zeros(0, 4))
    empty.gt_classes = torch.zeros(0, dtype=torch.long)
    with EventStorage(0):
        head.losses((torch.randn(0, 4), torch.randn(0, 12)), [empty])
    assert seen == [("cls", 0), ("box", 0)]

    rpn = FocalPluginsRPN(cfg, {"res4": ShapeSpec(channels=8, stride=16)})
    seen = []
    rpn.cls_loss.register_forward_hook(lambda m, a, o: seen.append(("cls", len(a[0]))))
    rpn.box_loss.register_forward_hook(lambda m, a, o: seen.append(("box", len(a[0]))))
    R = 12
    anchors = [Boxes(torch.rand(R, 4) * 10 + torch.tensor([0, 0, 20, 20.0]))]
    with EventStorage(0):  # no positive anchor
        rpn.losses(anchors, [torch.randn(1, R)], [torch.zeros(R, dtype=torch.long)],
                   [torch.randn(1, R, 4)], [anchors[0].tensor])
    assert seen == [("box", 0), ("cls", R)]
