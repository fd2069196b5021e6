"""What the dense detectors (RetinaNet, FCOS) share: loss-object set-up and the box loss on
box2box-transform deltas."""
import torch

from detectron2.layers import cat
from detectron2.structures import Boxes

from .losses import check_loss_for_slot, prior_background_bias


def focal_plugins_node(cfg, head):
    try:
        return cfg.MODEL.FOCAL_PLUGINS[head]
    except (AttributeError, KeyError):
        raise ValueError(
            f"cfg.MODEL.FOCAL_PLUGINS.{head} is missing: call "
            "focal_plugins.detectron2.add_focal_plugins_config(cfg) before merging a config "
            "that uses the focal-plugins components") from None


def _as_tensor(boxes):
    return boxes.tensor if isinstance(boxes, Boxes) else boxes


class DenseLossMixin:
    """For subclasses of detectron2's DenseDetector with ``num_classes`` and a head with a
    ``cls_score`` conv (RetinaNetHead and its FCOS subclass). The loss modules train only:
    TorchScript leaves them out of a scripted model."""

    _slot = ""
    __jit_ignored_attributes__ = ["cls_loss", "box_loss"]

    def _class_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-class probabilities of one image's (R, K) logits: the softmax without its
        background column, or the sigmoid."""
        if self._softmax_scores:
            return logits.softmax(dim=-1)[:, : self.num_classes]
        return logits.sigmoid()

    def _init_plugin_losses(self, cls_loss, box_loss, num_anchors):
        slot = self._slot
        self.cls_loss = check_loss_for_slot(cls_loss, f"{slot}.CLS_LOSS", key="cls_loss",
                                            num_classes=self.num_classes)
        self.box_loss = check_loss_for_slot(box_loss, f"{slot}.BOX_LOSS", key="box_loss")
        needs_bg = cls_loss is not None and cls_loss.needs_background
        self._num_cls_outputs = self.num_classes + (1 if needs_bg else 0)
        self._softmax_scores = cls_loss is not None and cls_loss.softmax_scores
        cls_score = getattr(self.head, "cls_score", None)
        if cls_score is not None and num_anchors and hasattr(cls_score, "out_channels"):
            per_anchor = cls_score.out_channels / num_anchors
            if per_anchor != self._num_cls_outputs:
                what = (f"{cls_loss.NAME} needs num_classes + 1 = {self._num_cls_outputs} "
                        "(background last)" if needs_bg else
                        f"the loss needs num_classes = {self._num_cls_outputs}")
                raise ValueError(
                    f"head.num_classes: the head predicts {per_anchor:g} scores per anchor; "
                    f"{what}. In a LazyConfig set model.head.num_classes accordingly.")
            if needs_bg:
                prior_background_bias(cls_score, self.num_classes, num_anchors)


def plugin_box_loss(box_loss, box2box_transform, anchors, pred_anchor_deltas, gt_boxes,
                    fg_mask, normalizer, levels=(slice(None),)):
    """The plugin box loss on detectron2's deltas of the foreground anchors (the arguments of
    detectron2's ``_dense_box_regression_loss``), summed over calls on the anchor-axis slices
    ``levels`` (default: one call on all)."""
    anchors = type(anchors[0]).cat(anchors).tensor  # (R, 4)
    gt_deltas = torch.stack(
        [box2box_transform.get_deltas(anchors, _as_tensor(b)) for b in gt_boxes]
    )  # (N, R, 4)
    pred = cat(pred_anchor_deltas, dim=1)
    return sum(box_loss(pred[:, lv][fg_mask[:, lv]], gt_deltas[:, lv][fg_mask[:, lv]],
                        normalizer) for lv in levels)
