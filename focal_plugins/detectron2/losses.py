"""Loss objects for detectron2 heads, and the one builder every head and config path uses.

A loss object is an ``nn.Module`` (so GHM's momentum state is a buffer of the model and lands
in its checkpoints) with one of two call signatures, the same in every head:

* classification: ``loss(logits, labels, num_classes, normalizer)``. ``logits`` is (M, K)
  with K = num_classes, or num_classes + 1 where the head predicts a background column
  (its last); ``labels`` is long (M,) in [0, num_classes], num_classes meaning background.
* box regression: ``loss(pred_deltas, target_deltas, normalizer)``, both (M, 4), the
  box2box-transform deltas of the foreground boxes (detectron2's smooth-L1 path).

``normalizer`` is the head's own detectron2 normaliser: the EMA of the number of positive
anchors in RetinaNet/FCOS, the number of sampled anchors in the RPN, the number of sampled
proposals in the RoI head. Focal losses and ASL1 return ``sum / normalizer`` exactly as
detectron2 does for its own losses; GHM-R passes it as ``avg_factor`` (same scale); GHM-C
keeps GHM's own normalisation (the sum of the GHM weights, i.e. the number of valid
elements), as in the GHM paper and mmdet, and ignores ``normalizer``.

The math is the framework-free core's (:mod:`focal_plugins.core`).
"""
from collections.abc import Sequence
from typing import Mapping, Optional

import torch
from torch import nn

from focal_plugins.core import GHMC as _CoreGHMC
from focal_plugins.core import GHMR as _CoreGHMR
from focal_plugins.core import asl1_loss, sigmoid_focal_loss, softmax_focal_loss
from focal_plugins.core.checks import check_int, check_number, is_scalar
from focal_plugins.core.prior import softmax_prior_bias

__all__ = [
    "CLS_LOSS_NAMES", "BOX_LOSS_NAMES", "SLOT_NAMES", "build_loss", "check_loss_for_slot",
    "SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC", "GHMR", "ASL1Loss",
]

ALPHA_MODES = ("paper", "uniform")

# Which NAMEs each slot accepts (the keys are the config nodes under MODEL.FOCAL_PLUGINS;
# FCOS has no YACS node, its LazyConfig uses the same table).
SLOT_NAMES = {
    "RETINANET.CLS_LOSS": ("SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC"),
    "RETINANET.BOX_LOSS": ("GHMR", "ASL1Loss"),
    "FCOS.CLS_LOSS": ("SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC"),
    "FCOS.BOX_LOSS": ("GHMR", "ASL1Loss"),
    # one objectness logit per anchor: no softmax over classes
    "RPN.CLS_LOSS": ("SigmoidFocalLoss", "GHMC"),
    "RPN.BOX_LOSS": ("GHMR", "ASL1Loss"),
    "ROI_BOX_HEAD.CLS_LOSS": ("SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC"),
    "ROI_BOX_HEAD.BOX_LOSS": ("GHMR", "ASL1Loss"),
}
CLS_LOSS_NAMES = ("SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC")
BOX_LOSS_NAMES = ("GHMR", "ASL1Loss")


def _where(key, field):
    return f"{key}.{field}" if key else field


def _number(key, field, value, *, lo=None, hi=None, hi_open=False, integer=False):
    """The core's checks (finite; numpy scalars and 0-d tensors accepted; bools refused),
    with the config key as the argument's name."""
    if integer:
        return check_int(_where(key, field), value, lo=lo)
    return check_number(_where(key, field), value, lo=lo, hi=hi, hi_open=hi_open)


def _alpha(key, value):
    """ALPHA: None (the loss's default), a negative number (no alpha weighting, fvcore's
    convention), a number in [0, 1], or a per-class sequence."""
    if value is None:
        return None
    if is_scalar(value):
        value = _number(key, "ALPHA", value)      # finite
        if value != value:
            raise ValueError(f"{_where(key, 'ALPHA')} must not be NaN, got {value!r}")
        if value < 0:
            return None
        return _number(key, "ALPHA", value, lo=0.0, hi=1.0)
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value):
        return [_number(key, "ALPHA", v, lo=0.0) for v in value]
    raise ValueError(f"{_where(key, 'ALPHA')} must be None, a number or a list of numbers, "
                     f"got {value!r}")


class _PluginLoss(nn.Module):
    NAME = ""
    KIND = ""  # "cls" or "box"

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self._hparams.items())


class _ClsLoss(_PluginLoss):
    KIND = "cls"
    #: the head must predict num_classes + 1 columns (background last)
    needs_background = False
    #: inference turns logits into probabilities with softmax (else sigmoid)
    softmax_scores = False


class SigmoidFocalLoss(_ClsLoss):
    """Sigmoid focal loss over the foreground columns (a background column, if the head has
    one, is not used); ``sum / normalizer`` times ``loss_weight``."""

    NAME = "SigmoidFocalLoss"

    def __init__(self, alpha=0.25, gamma=2.0, alpha_mode="paper", loss_weight=1.0):
        super().__init__()
        _number(None, "gamma", gamma, lo=0.0)
        _number(None, "loss_weight", loss_weight)
        self.alpha, self.gamma, self.alpha_mode = alpha, gamma, alpha_mode
        self.loss_weight = loss_weight
        self._hparams = dict(alpha=alpha, gamma=gamma, alpha_mode=alpha_mode,
                             loss_weight=loss_weight)

    def forward(self, logits, labels, num_classes, normalizer):
        loss = sigmoid_focal_loss(logits[:, :num_classes], labels, alpha=self.alpha,
                                  gamma=self.gamma, alpha_mode=self.alpha_mode, reduction="sum")
        return loss / normalizer if self.loss_weight == 1.0 else loss * (self.loss_weight / normalizer)


class SoftmaxFocalLoss(_ClsLoss):
    """Softmax focal loss over num_classes + 1 columns (background last). A float alpha in
    "paper" mode weights the foreground classes by alpha and the background by 1 - alpha."""

    NAME = "SoftmaxFocalLoss"
    needs_background = True
    softmax_scores = True

    def __init__(self, alpha=None, gamma=2.0, alpha_mode="paper", loss_weight=1.0):
        super().__init__()
        _number(None, "gamma", gamma, lo=0.0)
        _number(None, "loss_weight", loss_weight)
        self.alpha, self.gamma, self.alpha_mode = alpha, gamma, alpha_mode
        self.loss_weight = loss_weight
        self._hparams = dict(alpha=alpha, gamma=gamma, alpha_mode=alpha_mode,
                             loss_weight=loss_weight)

    def forward(self, logits, labels, num_classes, normalizer):
        if logits.shape[1] != num_classes + 1:
            raise ValueError(f"SoftmaxFocalLoss needs num_classes + 1 = {num_classes + 1} logit "
                             f"columns (background last), got {logits.shape[1]}")
        loss = softmax_focal_loss(logits, labels, alpha=self.alpha, gamma=self.gamma,
                                  alpha_mode=self.alpha_mode, background_index=num_classes,
                                  reduction="sum")
        return loss / normalizer if self.loss_weight == 1.0 else loss * (self.loss_weight / normalizer)


class GHMC(_ClsLoss):
    """GHM-C. Sigmoid form (one BCE term per class column) for heads with num_classes
    columns, softmax form (background a real column) for heads with num_classes + 1, such
    as detectron2's RoI box predictor. Normalised by GHM itself (``normalizer`` unused).

    detectron2's dense heads concatenate all FPN levels before the loss, so this is called
    once per iteration on all levels together: the gradient density (and its momentum EMA)
    is that of the whole batch rather than per level. ``FocalPluginsRetinaNet`` with
    ``per_level=True`` (``MODEL.FOCAL_PLUGINS.RETINANET.PER_LEVEL``) calls it once per
    level instead, as mmdet's RetinaHead does.
    """

    NAME = "GHMC"

    def __init__(self, bins=10, momentum=0.0, loss_weight=1.0):
        super().__init__()
        self.ghm = _CoreGHMC(bins=bins, momentum=momentum, use_sigmoid=True,
                             loss_weight=loss_weight)
        self._hparams = dict(bins=bins, momentum=momentum, loss_weight=loss_weight)

    def forward(self, logits, labels, num_classes, normalizer):
        # softmax where the head has a real background column, else sigmoid
        self.ghm.use_sigmoid = logits.shape[1] != num_classes + 1
        return self.ghm(logits, labels)


class _BoxLoss(_PluginLoss):
    KIND = "box"


class GHMR(_BoxLoss):
    """GHM-R (ASL1 weighted by inverse gradient density) on box deltas; detectron2's
    normaliser is its ``avg_factor``, so with loss_weight 1 it sits on the scale of
    detectron2's own smooth-L1 loss (sum over the 4 coordinates per box / normaliser).
    mmdet / the GHM paper divide by the number of coordinates instead: their
    loss_weight w corresponds to w / 4 here."""

    NAME = "GHMR"

    def __init__(self, mu=0.02, bins=10, momentum=0.0, loss_weight=1.0):
        super().__init__()
        self.ghm = _CoreGHMR(mu=mu, bins=bins, momentum=momentum, loss_weight=loss_weight)
        self._hparams = dict(mu=mu, bins=bins, momentum=momentum, loss_weight=loss_weight)

    def forward(self, pred, target, normalizer):
        return self.ghm(pred, target, avg_factor=normalizer)


class ASL1Loss(_BoxLoss):
    """Authentic Smooth L1 on box deltas, ``sum / normalizer`` times ``loss_weight``."""

    NAME = "ASL1Loss"

    def __init__(self, mu=0.02, loss_weight=1.0):
        super().__init__()
        _number(None, "mu", mu, lo=0.0)
        _number(None, "loss_weight", loss_weight)
        self.mu, self.loss_weight = mu, loss_weight
        self._hparams = dict(mu=mu, loss_weight=loss_weight)

    def forward(self, pred, target, normalizer):
        loss = asl1_loss(pred, target, mu=self.mu, reduction="sum")
        return loss * (self.loss_weight / normalizer)


_CLASSES = {c.NAME: c for c in (SigmoidFocalLoss, SoftmaxFocalLoss, GHMC, GHMR, ASL1Loss)}
_DEFAULT_ALPHA = {"SigmoidFocalLoss": 0.25, "SoftmaxFocalLoss": None}
_FIELDS = ("NAME", "ALPHA", "ALPHA_MODE", "GAMMA", "BINS", "MOMENTUM", "MU", "LOSS_WEIGHT")
_DEFAULTS = dict(NAME="", ALPHA=None, ALPHA_MODE="paper", GAMMA=2.0, BINS=10, MOMENTUM=0.0,
                 MU=0.02, LOSS_WEIGHT=1.0)


def check_loss_for_slot(loss, slot: str, key: Optional[str] = None):
    """Raise ValueError unless ``loss`` (a loss object or None) fits ``slot`` (a key of
    SLOT_NAMES); return it. ``key`` names the option in the message."""
    if loss is None:
        return None
    allowed = SLOT_NAMES[slot]
    name = getattr(loss, "NAME", None)
    if not isinstance(loss, _PluginLoss) or name not in allowed:
        shown = name if isinstance(loss, _PluginLoss) else type(loss).__name__
        raise ValueError(f"{_where(key or slot, 'NAME')} = {shown!r} is not valid for this "
                         f"slot; choose one of {list(allowed)} or '' (detectron2's own loss)")
    return loss


_UNSET = object()


def build_loss(cfg: Optional[Mapping] = None, *, slot: Optional[str] = None,
               key: Optional[str] = None, name=_UNSET, alpha=_UNSET, alpha_mode=_UNSET,
               gamma=_UNSET, bins=_UNSET, momentum=_UNSET, mu=_UNSET, loss_weight=_UNSET):
    """The one builder: a loss config -> a loss object, or None for NAME "" (keep
    detectron2's own loss).

    The config is either ``cfg``, a YACS node (or mapping) with the upper-case fields
    NAME, ALPHA, ALPHA_MODE, GAMMA, BINS, MOMENTUM, MU, LOSS_WEIGHT (as made by
    ``add_focal_plugins_config``), or the same fields as lower-case keyword arguments (the
    LazyConfig form, ``L(build_loss)(name="GHMC", bins=30, momentum=0.75)``); keywords
    given alongside ``cfg`` override it. Fields a loss does not take are ignored.

    ALPHA: None = the loss's default (0.25 for SigmoidFocalLoss, none for
    SoftmaxFocalLoss); a negative number = no alpha weighting (fvcore's convention); a
    number in [0, 1]; or one weight per class (see ``focal_plugins.core.resolve_alpha``).

    ``slot`` (a key of ``SLOT_NAMES``) restricts the names to those valid there; ``key`` is
    the option's full name used in error messages. Invalid values raise ValueError naming
    the key and the value.
    """
    values = dict(_DEFAULTS)
    if cfg is not None:
        for field in _FIELDS:
            if field in cfg:
                values[field] = cfg[field]
    given = dict(NAME=name, ALPHA=alpha, ALPHA_MODE=alpha_mode, GAMMA=gamma, BINS=bins,
                 MOMENTUM=momentum, MU=mu, LOSS_WEIGHT=loss_weight)
    values.update({f: v for f, v in given.items() if v is not _UNSET})
    nm = values["NAME"]
    if not isinstance(nm, str):
        raise ValueError(f"{_where(key, 'NAME')} must be a string, got {nm!r}")
    if nm == "":
        return None
    if nm not in _CLASSES:
        raise ValueError(f"{_where(key, 'NAME')} = {nm!r} is not a known loss; choose one of "
                         f"{list(_CLASSES)} or '' (detectron2's own loss)")
    if slot is not None and nm not in SLOT_NAMES[slot]:
        raise ValueError(f"{_where(key, 'NAME')} = {nm!r} is not valid for this slot; choose "
                         f"one of {list(SLOT_NAMES[slot])} or '' (detectron2's own loss)")

    lw = _number(key, "LOSS_WEIGHT", values["LOSS_WEIGHT"], lo=0.0)
    if nm in ("SigmoidFocalLoss", "SoftmaxFocalLoss"):
        a = values["ALPHA"]
        a = _DEFAULT_ALPHA[nm] if a is None else _alpha(key, a)
        mode = values["ALPHA_MODE"]
        if mode not in ALPHA_MODES:
            raise ValueError(f"{_where(key, 'ALPHA_MODE')} must be one of {list(ALPHA_MODES)}, "
                             f"got {mode!r}")
        g = _number(key, "GAMMA", values["GAMMA"], lo=0.0)
        return _CLASSES[nm](alpha=a, gamma=g, alpha_mode=mode, loss_weight=lw)
    if nm == "ASL1Loss":
        m = _number(key, "MU", values["MU"], lo=0.0)
        if m <= 0:
            raise ValueError(f"{_where(key, 'MU')} must be > 0, got {values['MU']!r}")
        return ASL1Loss(mu=m, loss_weight=lw)
    b = _number(key, "BINS", values["BINS"], lo=1, integer=True)
    mom = _number(key, "MOMENTUM", values["MOMENTUM"], lo=0.0, hi=1.0, hi_open=True)
    if nm == "GHMC":
        return GHMC(bins=b, momentum=mom, loss_weight=lw)
    m = _number(key, "MU", values["MU"], lo=0.0)
    if m <= 0:
        raise ValueError(f"{_where(key, 'MU')} must be > 0, got {values['MU']!r}")
    return GHMR(mu=m, bins=b, momentum=mom, loss_weight=lw)


def prior_background_bias(cls_score: nn.Module, num_classes: int, num_anchors: int) -> None:
    """For a head whose conv ``cls_score`` predicts num_anchors x (num_classes + 1) channels
    (detectron2's (A, K) channel layout) and whose biases all hold the RetinaNet prior
    b = -log((1 - p) / p): set the softmax prior of
    :func:`focal_plugins.core.prior.softmax_prior_bias` with ``prior_prob = p``
    (``MODEL.RETINANET.PRIOR_PROB``): background 1 - p, each class p / num_classes, the same
    convention as the mmdet adapter."""
    bias = getattr(cls_score, "bias", None)
    K = num_classes + 1
    if bias is None or bias.numel() != num_anchors * K:
        return
    with torch.no_grad():
        b = bias.view(num_anchors, K)
        p = float(torch.sigmoid(b[:, :num_classes].mean()))
        cls_bias, bg_bias = softmax_prior_bias(p, num_classes)
        b[:, :num_classes] = cls_bias
        b[:, num_classes] = bg_bias
