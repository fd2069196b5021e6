"""Faster R-CNN parts with configurable losses: the proposal generator "FocalPluginsRPN", the
RoI heads "FocalPluginsROIHeads" and their box predictor
:class:`FocalPluginsFastRCNNOutputLayers`."""
from typing import List, Tuple

import torch
from torch.nn import functional as F

from detectron2.config import configurable
from detectron2.modeling import PROPOSAL_GENERATOR_REGISTRY, ROI_HEADS_REGISTRY
from detectron2.modeling.proposal_generator import rpn as _d2_rpn
from detectron2.modeling.proposal_generator.rpn import RPN
from detectron2.modeling.roi_heads import StandardROIHeads
from detectron2.modeling.roi_heads import fast_rcnn as _d2_fast_rcnn
from detectron2.modeling.roi_heads.fast_rcnn import FastRCNNOutputLayers
from detectron2.structures import Instances

from .checks import check_loss_keys_are_read
from .dense import focal_plugins_node, plugin_box_loss
from .losses import build_loss, check_loss_for_slot
from .route import routed

__all__ = ["FocalPluginsRPN", "FocalPluginsROIHeads", "FocalPluginsFastRCNNOutputLayers"]


def _build(cfg, head, num_classes):
    """The head's two loss objects from its YACS node (the component building them reads
    these keys, so they are not reported unread); a per-class ALPHA is checked against the
    head's ``num_classes`` now, naming its key."""
    node = focal_plugins_node(cfg, head)
    check_loss_keys_are_read(cfg, reader=head)
    prefix = f"MODEL.FOCAL_PLUGINS.{head}"
    return (build_loss(node.CLS_LOSS, slot=f"{head}.CLS_LOSS", key=prefix + ".CLS_LOSS",
                       num_classes=num_classes),
            build_loss(node.BOX_LOSS, slot=f"{head}.BOX_LOSS", key=prefix + ".BOX_LOSS"))


def _check_delta_loss(box_loss, box_reg_loss_type, option):
    if box_loss is not None and box_reg_loss_type != "smooth_l1":
        raise ValueError(
            f"{option} = {box_reg_loss_type!r} conflicts with the plugin box loss "
            f"{box_loss.NAME!r}, which works on box deltas: use 'smooth_l1'")


@PROPOSAL_GENERATOR_REGISTRY.register()
class FocalPluginsRPN(RPN):
    """detectron2's RPN with plugin objectness (SigmoidFocalLoss or GHMC on the single
    objectness logit) and box losses (GHMR, ASL1Loss on the anchor deltas). Sampling,
    the normaliser (batch_size_per_image x images) and loss weights are detectron2's.

    YACS: ``MODEL.PROPOSAL_GENERATOR.NAME: "FocalPluginsRPN"`` and
    ``MODEL.FOCAL_PLUGINS.RPN.{CLS_LOSS,BOX_LOSS}``; LazyConfig: ``cls_loss=``, ``box_loss=``.

    Scripting (``detectron2.export.scripting_with_instances``) works as for detectron2's RPN:
    the loss modules train only, so TorchScript leaves them out of the exported model.
    """

    __jit_ignored_attributes__ = ["cls_loss", "box_loss"]
    _focal_plugins_reads = "RPN"  # focal_plugins.detectron2.checks

    @configurable
    def __init__(self, *, cls_loss=None, box_loss=None, **kwargs):
        super().__init__(**kwargs)
        self.cls_loss = check_loss_for_slot(cls_loss, "RPN.CLS_LOSS", key="cls_loss",
                                            num_classes=1)
        self.box_loss = check_loss_for_slot(box_loss, "RPN.BOX_LOSS", key="box_loss")
        _check_delta_loss(self.box_loss, self.box_reg_loss_type,
                          "box_reg_loss_type (MODEL.RPN.BBOX_REG_LOSS_TYPE)")

    @classmethod
    def from_config(cls, cfg, input_shape):
        cls_loss, box_loss = _build(cfg, "RPN", num_classes=1)
        ret = super().from_config(cfg, input_shape)
        ret.update(cls_loss=cls_loss, box_loss=box_loss)
        return ret

    @torch.jit.unused
    def losses(self, anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes):
        """detectron2's ``RPN.losses`` with its objectness and box loss calls routed to the
        plugin losses (``focal_plugins.detectron2.route``); masks, the normaliser
        (batch_size_per_image x images), logging and loss weights are detectron2's code."""
        args = (anchors, pred_objectness_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        if self.cls_loss is None and self.box_loss is None:
            return super().losses(*args)
        n = self.batch_size_per_image * len(gt_labels)  # detectron2's normaliser
        routes = {}
        if self.cls_loss is not None:
            def cls_loss(logits, target, **kwargs):  # objectness logits, 1 object / 0 bg
                # one class ("object", index 0); index 1 = background
                return self.cls_loss(logits[:, None], (1 - target).long(), 1, n) * n

            routes["F.binary_cross_entropy_with_logits"] = cls_loss
        if self.box_loss is not None:
            def box_loss(anchors, box2box_transform, pred_anchor_deltas, gt_boxes, fg_mask,
                         **kwargs):
                return n * plugin_box_loss(self.box_loss, box2box_transform, anchors,
                                           pred_anchor_deltas, gt_boxes, fg_mask, n)

            routes["_dense_box_regression_loss"] = box_loss
        with routed(_d2_rpn, routes):
            return super().losses(*args)


class FocalPluginsFastRCNNOutputLayers(FastRCNNOutputLayers):
    """detectron2's box predictor (num_classes + 1 scores, background last) with plugin
    classification (SoftmaxFocalLoss or softmax GHMC over all columns; SigmoidFocalLoss
    on the foreground columns) and box losses (GHMR, ASL1Loss on the deltas of the
    foreground proposals). The normaliser is the number of sampled proposals, as for
    detectron2's own losses. Inference scores: softmax, or sigmoid for SigmoidFocalLoss.

    It scripts and traces as detectron2's predictor does: the loss modules train only
    (TorchScript leaves them out), and the inference path calls no ``len()`` on a tensor, so
    a trace keeps the number of boxes dynamic.
    """

    __jit_ignored_attributes__ = ["cls_loss", "box_loss"]

    @configurable
    def __init__(self, input_shape, *, cls_loss=None, box_loss=None, **kwargs):
        super().__init__(input_shape, **kwargs)
        self.cls_loss = check_loss_for_slot(cls_loss, "ROI_BOX_HEAD.CLS_LOSS", key="cls_loss",
                                            num_classes=self.num_classes)
        self.box_loss = check_loss_for_slot(box_loss, "ROI_BOX_HEAD.BOX_LOSS", key="box_loss")
        _check_delta_loss(self.box_loss, self.box_reg_loss_type,
                          "box_reg_loss_type (MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE)")
        if self.cls_loss is not None and (getattr(self, "use_sigmoid_ce", False)
                                          or getattr(self, "use_fed_loss", False)):
            raise ValueError(
                f"MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE / USE_FED_LOSS conflict with the plugin "
                f"classification loss {self.cls_loss.NAME!r}: turn them off")
        # inference scores: 0 softmax, 1 sigmoid on every column (detectron2's
        # USE_SIGMOID_CE), 2 sigmoid on the foreground columns (SigmoidFocalLoss)
        self._score_mode = 1 if getattr(self, "use_sigmoid_ce", False) else 0
        if (self.cls_loss is not None and not self.cls_loss.softmax_scores
                and self.cls_loss.NAME != "GHMC"):
            self._score_mode = 2

    @classmethod
    def from_config(cls, cfg, input_shape):
        cls_loss, box_loss = _build(cfg, "ROI_BOX_HEAD", cfg.MODEL.ROI_HEADS.NUM_CLASSES)
        ret = super().from_config(cfg, input_shape)
        ret.update(cls_loss=cls_loss, box_loss=box_loss)
        return ret

    @torch.jit.unused
    def losses(self, predictions, proposals):
        """detectron2's ``FastRCNNOutputLayers.losses`` (and its ``box_reg_loss``) with the
        classification and smooth-L1 calls routed to the plugin losses
        (``focal_plugins.detectron2.route``); the foreground selection, the normaliser (the
        number of sampled proposals), logging and loss weights are detectron2's code."""
        if self.cls_loss is None and self.box_loss is None:
            return super().losses(predictions, proposals)
        n = max(sum(len(p) for p in proposals), 1)  # detectron2's normaliser
        routes = {}
        if self.cls_loss is not None:
            def cls_loss(scores, gt_classes, **kwargs):  # detectron2: mean cross-entropy
                return self.cls_loss(scores, gt_classes.long(), self.num_classes, n)

            routes["cross_entropy"] = cls_loss
        if self.box_loss is not None:
            def box_loss(fg_pred_deltas, gt_pred_deltas, beta, **kwargs):  # summed smooth L1
                return self.box_loss(fg_pred_deltas, gt_pred_deltas, n) * n

            routes["smooth_l1_loss"] = box_loss
        with routed(_d2_fast_rcnn, routes):
            return super().losses(predictions, proposals)

    def predict_probs(self, predictions: Tuple[torch.Tensor, torch.Tensor],
                      proposals: List[Instances]):
        scores, _ = predictions
        if self._score_mode == 2:  # background column 0
            probs = torch.cat([torch.sigmoid(scores[:, : self.num_classes]),
                               torch.zeros_like(scores[:, :1])], dim=1)
        elif self._score_mode == 1:
            probs = torch.sigmoid(scores)
        else:
            probs = F.softmax(scores, dim=-1)
        if len(proposals) == 1:  # one image: no split, so a trace keeps the box count
            return [probs]
        return probs.split([len(p) for p in proposals], dim=0)


@ROI_HEADS_REGISTRY.register()
class FocalPluginsROIHeads(StandardROIHeads):
    """detectron2's StandardROIHeads with :class:`FocalPluginsFastRCNNOutputLayers` as its box
    predictor, configured by ``MODEL.FOCAL_PLUGINS.ROI_BOX_HEAD``. (In a LazyConfig use
    StandardROIHeads with ``box_predictor=L(FocalPluginsFastRCNNOutputLayers)(...)``.)

    Scripts like StandardROIHeads (``detectron2.export.scripting_with_instances``)."""

    # detectron2's scripting patch marks these constants on StandardROIHeads' own
    # annotations, which a subclass does not inherit
    mask_on: torch.jit.Final[bool]
    keypoint_on: torch.jit.Final[bool]
    _focal_plugins_reads = "ROI_BOX_HEAD"  # focal_plugins.detectron2.checks

    @classmethod
    def _init_box_head(cls, cfg, input_shape):
        ret = super()._init_box_head(cfg, input_shape)
        ret["box_predictor"] = FocalPluginsFastRCNNOutputLayers(cfg, ret["box_head"].output_shape)
        return ret
