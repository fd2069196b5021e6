"""RetinaNet with configurable losses (meta-architecture "FocalPluginsRetinaNet")."""
from typing import List

import torch
from torch import Tensor

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.modeling.meta_arch import retinanet as _d2_retinanet
from detectron2.modeling.meta_arch.retinanet import RetinaNet, RetinaNetHead
from detectron2.structures import ImageList, Instances

from .checks import check_loss_keys_are_read
from .dense import DenseLossMixin, focal_plugins_node, plugin_box_loss
from .losses import build_loss
from .route import routed

__all__ = ["FocalPluginsRetinaNet"]


@META_ARCH_REGISTRY.register()
class FocalPluginsRetinaNet(DenseLossMixin, RetinaNet):
    """detectron2's RetinaNet whose classification and box losses come from loss objects
    (``cls_loss``, ``box_loss``; None keeps detectron2's own). Everything else, anchors,
    matching, the ``num_pos_anchors`` EMA normaliser and inference, is detectron2's.

    YACS: ``MODEL.META_ARCHITECTURE: "FocalPluginsRetinaNet"`` with
    ``MODEL.FOCAL_PLUGINS.RETINANET.{CLS_LOSS,BOX_LOSS}``. LazyConfig: pass
    ``cls_loss=L(build_loss)(name=...)``. With SoftmaxFocalLoss the head must predict
    num_classes + 1 scores per anchor (background last): from YACS the head is built so;
    in a LazyConfig set ``model.head.num_classes`` to num_classes + 1. Inference then takes
    the softmax, drops the background column and runs detectron2's usual top-k and NMS.
    The classifier starts at the softmax prior of ``MODEL.RETINANET.PRIOR_PROB`` p: background
    1 - p, each class p / num_classes (``focal_plugins.core.prior``, as in the mmdet adapter).

    ``per_level`` (YACS ``MODEL.FOCAL_PLUGINS.RETINANET.PER_LEVEL``, default False) calls
    each plugin loss once per FPN level and sums, as mmdet's RetinaHead does, instead of once
    on all levels. Losses that sum over anchors and divide by the normaliser give the same
    value either way; GHM does not: its gradient density (and its EMA, updated once per
    call) and GHM-C's normaliser become per level. detectron2's own losses are unaffected.

    Scripts like detectron2's RetinaNet (``detectron2.export.scripting_with_instances``).
    """

    _slot = "RETINANET"
    _focal_plugins_reads = "RETINANET"  # focal_plugins.detectron2.checks

    @configurable
    def __init__(self, *, cls_loss=None, box_loss=None, per_level=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(per_level, bool):
            raise ValueError("per_level (MODEL.FOCAL_PLUGINS.RETINANET.PER_LEVEL) must be True "
                             f"or False, got {per_level!r}")
        self.per_level = per_level
        self._init_plugin_losses(cls_loss, box_loss, num_anchors=self._num_anchors())
        if per_level and self.cls_loss is None and self.box_loss is None:
            raise ValueError(
                "per_level (MODEL.FOCAL_PLUGINS.RETINANET.PER_LEVEL) = True has no effect "
                "without a plugin loss: detectron2's own RetinaNet losses are computed on all "
                "levels. Set a CLS_LOSS or BOX_LOSS NAME, or PER_LEVEL to False.")
        if self.box_loss is not None and self.box_reg_loss_type != "smooth_l1":
            raise ValueError(
                f"box_reg_loss_type (MODEL.RETINANET.BBOX_REG_LOSS_TYPE) = "
                f"{self.box_reg_loss_type!r} conflicts with the plugin box loss "
                f"{self.box_loss.NAME!r}, which works on box deltas: use 'smooth_l1'")

    def _num_anchors(self):
        n = getattr(self.anchor_generator, "num_cell_anchors", None)
        return n[0] if n else None

    @classmethod
    def from_config(cls, cfg):
        node = focal_plugins_node(cfg, "RETINANET")
        check_loss_keys_are_read(cfg, reader="RETINANET")
        prefix = "MODEL.FOCAL_PLUGINS.RETINANET"
        cls_loss = build_loss(node.CLS_LOSS, slot="RETINANET.CLS_LOSS", key=prefix + ".CLS_LOSS",
                              num_classes=cfg.MODEL.RETINANET.NUM_CLASSES)
        box_loss = build_loss(node.BOX_LOSS, slot="RETINANET.BOX_LOSS", key=prefix + ".BOX_LOSS")
        ret = super().from_config(cfg)
        if cls_loss is not None and cls_loss.needs_background:
            # the same head with one more score per anchor: the background column
            backbone_shape = ret["backbone"].output_shape()
            shapes = [backbone_shape[f] for f in cfg.MODEL.RETINANET.IN_FEATURES]
            head_args = RetinaNetHead.from_config(cfg, shapes)
            head_args["num_classes"] = cfg.MODEL.RETINANET.NUM_CLASSES + 1
            ret["head"] = RetinaNetHead(**head_args)
        ret["cls_loss"] = cls_loss
        ret["box_loss"] = box_loss
        ret["per_level"] = node.get("PER_LEVEL", False)
        return ret

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_anchor_deltas = self._transpose_dense_predictions(
            predictions, [self._num_cls_outputs, 4]
        )
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes)

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes):
        """detectron2's ``RetinaNet.losses`` with its two loss calls routed to the plugin
        losses (``focal_plugins.detectron2.route``): its masks, its ``num_pos_anchors`` EMA
        normaliser and its logging run unchanged. A plugin loss returns its value already
        normalised, so the route returns it times the normaliser that detectron2 divides by."""
        if self.cls_loss is None and self.box_loss is None:
            return super().losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes)
        routes = {}
        levels = self._level_slices(pred_logits)
        if self.cls_loss is not None:
            labels = torch.stack(gt_labels)  # (N, R), -1 ignore, num_classes background
            valid = labels >= 0
            # each valid anchor's FPN level: the per-level calls get detectron2's rows
            level_of = self._level_ids(pred_logits, labels)[valid] if len(levels) > 1 else None
            labels = labels[valid]

            def cls_loss(logits, target, **kwargs):  # detectron2's cat(pred_logits)[valid]
                n = self.loss_normalizer
                if level_of is None:
                    return self.cls_loss(logits, labels, self.num_classes, n) * n
                return sum(self.cls_loss(logits[level_of == i], labels[level_of == i],
                                         self.num_classes, n)
                           for i in range(len(levels))) * n

            routes["sigmoid_focal_loss_jit"] = cls_loss
        if self.box_loss is not None:
            def box_loss(anchors, box2box_transform, pred_anchor_deltas, gt_boxes, fg_mask,
                         **kwargs):
                n = self.loss_normalizer
                return n * plugin_box_loss(self.box_loss, box2box_transform, anchors,
                                           pred_anchor_deltas, gt_boxes, fg_mask, n, levels)

            routes["_dense_box_regression_loss"] = box_loss
        with routed(_d2_retinanet, routes):
            return super().losses(anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes)

    @staticmethod
    def _level_ids(per_level, like):
        """(N, R) long: the FPN level of each anchor, for the (N, R) tensor ``like``."""
        ids = torch.cat([torch.full((x.shape[1],), i, dtype=torch.long, device=like.device)
                         for i, x in enumerate(per_level)])
        return ids.expand_as(like)

    def _level_slices(self, per_level):
        """The slices of the anchor axis the plugin losses are called on: all levels at once,
        or with ``per_level`` one slice per FPN level (sizes from ``per_level``'s tensors)."""
        if not self.per_level:
            return [slice(None)]
        out, start = [], 0
        for x in per_level:
            out.append(slice(start, start + x.shape[1]))
            start += x.shape[1]
        return out

    def forward_inference(self, images: ImageList, features: List[Tensor],
                          predictions: List[List[Tensor]]):
        pred_logits, pred_anchor_deltas = self._transpose_dense_predictions(
            predictions, [self._num_cls_outputs, 4]
        )
        anchors = self.anchor_generator(features)
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            scores = [self._class_scores(x[img_idx]) for x in pred_logits]
            deltas = [x[img_idx] for x in pred_anchor_deltas]
            results.append(self.inference_single_image(anchors, scores, deltas, image_size))
        return results
