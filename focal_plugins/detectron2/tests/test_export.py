"""Exporting models with the plugin's detectron2 components, as detectron2 exports its own:
TorchScript scripting (detectron2's scripting_with_instances) of FocalPluginsRPN,
FocalPluginsROIHeads and FocalPluginsRetinaNet with every loss NAME empty and with each plugin
loss, and tracing of the RoI box predictor's inference scores with a dynamic box count.

detectron2 0.6's own FCOS does not script (its FCOSHead.forward has no type annotation, and
LazyConfig-built models hold omegaconf lists), so FocalPluginsFCOS is not tested here."""
import os
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("detectron2")

import detectron2  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.structures import Boxes, Instances  # noqa: E402

from focal_plugins.detectron2 import get_cfg  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CONFIG_DIR = os.path.join(ROOT, "configs", "detectron2")
SMALL = ["MODEL.RESNETS.DEPTH", 18, "MODEL.RESNETS.RES2_OUT_CHANNELS", 64, "MODEL.WEIGHTS", "",
         "MODEL.DEVICE", "cpu", "MODEL.PIXEL_STD", [57.375, 57.12, 58.395]]
FIELDS = {"proposal_boxes": Boxes, "objectness_logits": torch.Tensor, "pred_boxes": Boxes,
          "scores": torch.Tensor, "pred_classes": torch.Tensor}
SIZE = 128


def _scripting_with_instances():
    try:
        from detectron2.export import scripting_with_instances
    except ImportError:
        # detectron2 0.6's export package imports caffe2 (gone from torch); its main branch
        # makes that optional. Load the TorchScript part alone, as main does.
        pkg = types.ModuleType("detectron2.export")
        pkg.__path__ = [os.path.join(os.path.dirname(detectron2.__file__), "export")]
        sys.modules["detectron2.export"] = pkg
        try:
            from detectron2.export.torchscript import scripting_with_instances
        finally:
            del sys.modules["detectron2.export"]
    return scripting_with_instances


def _model(config, opts):
    cfg = get_cfg()
    cfg.merge_from_file(os.path.join(CONFIG_DIR, config))
    cfg.merge_from_list(SMALL + list(opts))
    torch.manual_seed(0)
    return build_model(cfg).eval()


def _names(head, cls, box):
    p = f"MODEL.FOCAL_PLUGINS.{head}."
    return [p + "CLS_LOSS.NAME", cls, p + "BOX_LOSS.NAME", box]


def _batch():
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randint(0, 256, (3, SIZE, SIZE), generator=g).float()}]


def _fields(inst):
    f = inst.get_fields()  # a scripted Instances gives its boxes as a tensor
    boxes = f["pred_boxes"]
    return getattr(boxes, "tensor", boxes), f["scores"], f["pred_classes"]


def _assert_same_detections(model, scripted):
    batch = _batch()
    with torch.no_grad():
        if hasattr(model, "inference"):  # R-CNN
            want = model.inference(batch, do_postprocess=False)[0]
            got = scripted.inference(batch, do_postprocess=False)[0]
        else:  # a dense detector: a scripted one returns its detections unscaled
            images = model.preprocess_image(batch)
            feats = model.backbone(images.tensor)
            feats = [feats[f] for f in model.head_in_features]
            want = model.forward_inference(images, feats, model.head(feats))[0]
            got = scripted(batch)[0]
    assert len(_fields(want)[1]) > 0
    torch.testing.assert_close(_rows(got), _rows(want))


def _rows(inst):
    """(score, box, class) rows in a fixed order (top-k may order equal scores either way)."""
    boxes, scores, classes = _fields(inst)
    rows = torch.cat([scores[:, None], boxes, classes[:, None].to(boxes.dtype)], dim=1)
    order = np.lexsort(rows.numpy().T[::-1])
    return rows[torch.from_numpy(order)]


RCNN = "faster_rcnn_R_50_FPN_1x_ghm.yaml"
RCNN_LOSSES = [("", ""), ("SigmoidFocalLoss", "GHMR"), ("SoftmaxFocalLoss", "ASL1Loss"),
               ("GHMC", "GHMR")]


@pytest.mark.slow
@pytest.mark.parametrize("cls,box", RCNN_LOSSES)
def test_script_focal_plugins_roi_heads(cls, box):
    model = _model(RCNN, _names("ROI_BOX_HEAD", cls, box) + _names("RPN", "", "")
                   + ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0])
    assert type(model.roi_heads).__name__ == "FocalPluginsROIHeads"
    loss = model.roi_heads.box_predictor.cls_loss
    assert (loss.NAME if loss is not None else "") == cls
    script = _scripting_with_instances()
    assert isinstance(script(model.roi_heads, FIELDS), torch.jit.ScriptModule)
    _assert_same_detections(model, script(model, FIELDS))


@pytest.mark.slow
@pytest.mark.parametrize("cls,box", [("", ""), ("SigmoidFocalLoss", "ASL1Loss"),
                                     ("GHMC", "GHMR")])
def test_script_focal_plugins_rpn(cls, box):
    model = _model(RCNN, _names("RPN", cls, box) + _names("ROI_BOX_HEAD", "", "")
                   + ["MODEL.PROPOSAL_GENERATOR.NAME", "FocalPluginsRPN",
                      "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0])
    assert type(model.proposal_generator).__name__ == "FocalPluginsRPN"
    script = _scripting_with_instances()
    assert isinstance(script(model.proposal_generator, FIELDS), torch.jit.ScriptModule)
    _assert_same_detections(model, script(model, FIELDS))


@pytest.mark.slow
@pytest.mark.parametrize("cls,box", RCNN_LOSSES)
def test_script_focal_plugins_retinanet(cls, box):
    model = _model("retinanet_R_50_FPN_1x_ghm.yaml", _names("RETINANET", cls, box)
                   + ["MODEL.RETINANET.SCORE_THRESH_TEST", 0.0])
    assert type(model).__name__ == "FocalPluginsRetinaNet"
    _assert_same_detections(model, _scripting_with_instances()(model, FIELDS))


class _Scores(nn.Module):
    """The box predictor's inference scores for one image of R boxes (features (R, D))."""

    def __init__(self, predictor):
        super().__init__()
        self.predictor = predictor

    def forward(self, x):
        inst = Instances((SIZE, SIZE))
        inst.proposal_boxes = Boxes(x.new_zeros(x.shape[0], 4))
        return self.predictor.predict_probs(self.predictor(x), [inst])[0]


@pytest.mark.slow
@pytest.mark.parametrize("cls", ["SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC", ""])
def test_trace_box_predictor_keeps_the_box_count(cls):
    model = _model(RCNN, _names("ROI_BOX_HEAD", cls, "") + _names("RPN", "", ""))
    scores = _Scores(model.roi_heads.box_predictor).eval()
    dim = model.roi_heads.box_head.output_shape.channels
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        traced = torch.jit.trace(scores, torch.randn(10, dim, generator=g))
        for n in (7, 23):
            x = torch.randn(n, dim, generator=g)
            want = scores(x)
            assert want.shape == (n, 81)
            torch.testing.assert_close(traced(x), want)
    if cls == "SigmoidFocalLoss":  # sigmoid scores, background column 0
        assert float(want[:, 80].abs().max()) == 0.0
        torch.testing.assert_close(want[:, :80], torch.sigmoid(model.roi_heads.box_predictor(x)[0][:, :80]))
