"""FCOS with configurable losses, for LazyConfig (detectron2 has FCOS only as a LazyConfig),
and a GroupNorm factory the FCOS head can use on current torch."""
from typing import List

import torch
from torch import Tensor, nn

from detectron2.modeling.meta_arch import fcos as _d2_fcos
from detectron2.modeling.meta_arch.fcos import FCOS
from detectron2.structures import ImageList, Instances

from .dense import DenseLossMixin, plugin_box_loss
from .route import routed

__all__ = ["FocalPluginsFCOS", "GroupNormFactory"]


class GroupNormFactory:
    """A ``norm`` for detectron2 heads: ``GroupNormFactory(32)(c)`` is ``GroupNorm(32, c)``.

    detectron2 0.6's RetinaNetHead (FCOSHead's base) probes its norm once with
    ``get_norm(norm, 1)``; with ``norm="GN"`` that is ``GroupNorm(32, 1)``, which current
    torch rejects, so the model-zoo FCOS config fails to build. Channel counts that
    ``num_groups`` does not divide (only that probe) get a single group instead, so the head's
    layers are exactly the GN(32) layers of the stock config; on detectron2's main branch
    (which probes with 32 channels) it builds the same model as ``norm="GN"``.
    """

    def __init__(self, num_groups: int = 32):
        if isinstance(num_groups, bool) or not isinstance(num_groups, int) or num_groups < 1:
            raise ValueError(f"num_groups must be an int >= 1, got {num_groups!r}")
        self.num_groups = num_groups

    def __call__(self, channels: int) -> nn.Module:
        groups = self.num_groups if channels % self.num_groups == 0 else 1
        return nn.GroupNorm(groups, channels)

    def __repr__(self):
        return f"GroupNormFactory(num_groups={self.num_groups})"


class FocalPluginsFCOS(DenseLossMixin, FCOS):
    """detectron2's FCOS whose classification and box losses come from loss objects
    (``cls_loss``, ``box_loss``; None keeps detectron2's sigmoid focal / GIoU). The
    centerness loss, matching, the EMA normaliser and inference are detectron2's.

    ``box_loss`` (GHMR or ASL1Loss) works on FCOS's box2box deltas (left/top/right/bottom
    distances divided by the stride) and replaces the GIoU loss. With SoftmaxFocalLoss set
    ``model.head.num_classes`` to num_classes + 1 (background last); inference then scores
    a location by sqrt(softmax class probability x sigmoid centerness).
    """

    _slot = "FCOS"

    def __init__(self, *, cls_loss=None, box_loss=None, **kwargs):
        super().__init__(**kwargs)
        self._init_plugin_losses(cls_loss, box_loss, num_anchors=1)

    def forward_training(self, images, features, predictions, gt_instances):
        pred_logits, pred_anchor_deltas, pred_centerness = self._transpose_dense_predictions(
            predictions, [self._num_cls_outputs, 4, 1]
        )
        anchors = self.anchor_generator(features)
        gt_labels, gt_boxes = self.label_anchors(anchors, gt_instances)
        return self.losses(
            anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_centerness
        )

    def losses(self, anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes,
               pred_centerness):
        """detectron2's ``FCOS.losses`` with its classification and box loss calls routed to
        the plugin losses (``focal_plugins.detectron2.route``); the centerness loss, the EMA
        normaliser and the logging are detectron2's own code."""
        args = (anchors, pred_logits, gt_labels, pred_anchor_deltas, gt_boxes, pred_centerness)
        if self.cls_loss is None and self.box_loss is None:
            return super().losses(*args)
        routes = {}
        if self.cls_loss is not None:
            labels = torch.stack(gt_labels).flatten()  # num_classes = background

            def cls_loss(logits, target, **kwargs):  # detectron2's cat(pred_logits): (N, R, K)
                n = self.loss_normalizer
                return self.cls_loss(logits.flatten(0, 1), labels, self.num_classes, n) * n

            routes["sigmoid_focal_loss_jit"] = cls_loss
        if self.box_loss is not None:
            def box_loss(anchors, box2box_transform, pred_anchor_deltas, gt_boxes, fg_mask,
                         **kwargs):  # replaces the GIoU loss, on the box2box deltas
                n = self.loss_normalizer
                return n * plugin_box_loss(self.box_loss, box2box_transform, anchors,
                                           pred_anchor_deltas, gt_boxes, fg_mask, n)

            routes["_dense_box_regression_loss"] = box_loss
        with routed(_d2_fcos, routes):
            return super().losses(*args)

    def forward_inference(self, images: ImageList, features: List[Tensor],
                          predictions: List[List[Tensor]]):
        pred_logits, pred_anchor_deltas, pred_centerness = self._transpose_dense_predictions(
            predictions, [self._num_cls_outputs, 4, 1]
        )
        anchors = self.anchor_generator(features)
        results: List[Instances] = []
        for img_idx, image_size in enumerate(images.image_sizes):
            # sqrt(class probability x centerness), FCOS's inference score
            scores = [torch.sqrt(self._class_scores(x[img_idx]) * y[img_idx].sigmoid())
                      for x, y in zip(pred_logits, pred_centerness)]
            deltas = [x[img_idx] for x in pred_anchor_deltas]
            results.append(self.inference_single_image(anchors, scores, deltas, image_size))
        return results
