"""FCOS with configurable losses, for LazyConfig (detectron2 has FCOS only as a LazyConfig),
and a GroupNorm factory the FCOS head can use on current torch."""
from typing import List

import torch
from fvcore.nn import sigmoid_focal_loss_jit
from torch import Tensor, nn
from torch.nn import functional as F

from detectron2.modeling.box_regression import _dense_box_regression_loss
from detectron2.modeling.meta_arch.fcos import FCOS
from detectron2.structures import ImageList, Instances
from detectron2.utils.events import get_event_storage

from .dense import DenseLossMixin, _as_tensor

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
        if self.cls_loss is None and self.box_loss is None:
            return super().losses(anchors, pred_logits, gt_labels, pred_anchor_deltas,
                                  gt_boxes, pred_centerness)
        num_images = len(gt_labels)
        gt_labels = torch.stack(gt_labels)  # (N, R), num_classes = background
        pos_mask = (gt_labels >= 0) & (gt_labels != self.num_classes)
        num_pos_anchors = pos_mask.sum().item()
        get_event_storage().put_scalar("num_pos_anchors", num_pos_anchors / num_images)
        normalizer = self._ema_update("loss_normalizer", max(num_pos_anchors, 1), 300)

        logits = torch.cat(pred_logits, dim=1)
        if self.cls_loss is None:
            target = F.one_hot(gt_labels, num_classes=self.num_classes + 1)[:, :, :-1]
            loss_cls = sigmoid_focal_loss_jit(
                logits, target.to(logits.dtype), alpha=self.focal_loss_alpha,
                gamma=self.focal_loss_gamma, reduction="sum") / normalizer
        else:
            loss_cls = self.cls_loss(logits.flatten(0, 1), gt_labels.flatten(),
                                     self.num_classes, normalizer)

        if self.box_loss is None:
            loss_box_reg = _dense_box_regression_loss(
                anchors, self.box2box_transform, pred_anchor_deltas,
                [_as_tensor(b) for b in gt_boxes], pos_mask, box_reg_loss_type="giou",
            ) / normalizer
        else:
            loss_box_reg = self._plugin_box_loss(anchors, pred_anchor_deltas, gt_boxes,
                                                 pos_mask, normalizer)

        # gt_boxes as label_anchors gave them (Boxes in 0.6, tensors on main): this
        # detectron2's compute_ctrness_targets takes its own label_anchors' output
        ctrness_targets = self.compute_ctrness_targets(anchors, gt_boxes)
        pred_centerness = torch.cat(pred_centerness, dim=1).squeeze(dim=2)
        loss_ctr = F.binary_cross_entropy_with_logits(
            pred_centerness[pos_mask], ctrness_targets[pos_mask], reduction="sum")
        return {
            "loss_fcos_cls": loss_cls,
            "loss_fcos_loc": loss_box_reg,
            "loss_fcos_ctr": loss_ctr / normalizer,
        }

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
