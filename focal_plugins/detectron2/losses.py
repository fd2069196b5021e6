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
from typing import Mapping, Optional

import torch
from torch import nn

from focal_plugins import spec
from focal_plugins.core import GHMC as _CoreGHMC
from focal_plugins.core import GHMR as _CoreGHMR
from focal_plugins.core import asl1_loss, sigmoid_focal_loss, softmax_focal_loss
from focal_plugins.core.checks import check_number, is_scalar
from focal_plugins.core.prior import softmax_prior_bias

__all__ = [
    "CLS_LOSS_NAMES", "BOX_LOSS_NAMES", "SLOT_NAMES", "build_loss", "check_loss_for_slot",
    "SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC", "GHMR", "ASL1Loss",
]

CLS_LOSS_NAMES = spec.names(spec.CLASSIFICATION)
BOX_LOSS_NAMES = spec.names(spec.BOX)
# Which NAMEs each slot accepts (the keys are the config nodes under MODEL.FOCAL_PLUGINS;
# FCOS has no YACS node, its LazyConfig uses the same table). The RPN has one objectness
# logit per anchor: no softmax over classes.
SLOT_NAMES = {
    f"{head}.{slot}": names
    for head in ("RETINANET", "FCOS", "RPN", "ROI_BOX_HEAD")
    for slot, names in (
        ("CLS_LOSS", spec.names(spec.CLASSIFICATION, softmax=False) if head == "RPN"
         else CLS_LOSS_NAMES),
        ("BOX_LOSS", BOX_LOSS_NAMES))
}
#: the fields of a YACS loss node: NAME and one upper-case key per spec hyperparameter
_FIELDS = ("NAME",) + tuple(h.upper() for h in spec.HYPERPARAMETERS)
#: their defaults: NAME "" keeps detectron2's own loss; None, where the losses' defaults
#: differ (ALPHA), means the loss's own default
_DEFAULTS = dict(NAME="", **{h.upper(): v for h, v in spec.shared_defaults().items()})


def _where(key, field):
    return f"{key}.{field}" if key else field


def _kwarg(field):
    """The spelling of a build_loss keyword (the LazyConfig key) in a message."""
    return f"{field} ({field.upper()} in a YACS node)"


def _fvcore_alpha(label, value):
    """ALPHA < 0 means no alpha weighting (fvcore's convention): None."""
    if is_scalar(value) and not hasattr(value, "requires_grad") \
            and check_number(label, value) < 0:
        return None
    return value


_D = {name: s.defaults for name, s in spec.LOSSES.items()}  # the signatures' defaults


class _PluginLoss(nn.Module):
    NAME = ""
    KIND = ""  # "cls" or "box"
    _holds_ghm = False  # the GHM losses keep their settings in ``self.ghm``

    def _set(self, **values):
        """Check the hyperparameters with the spec (errors name the keyword), keep them as
        attributes (except the GHM losses'), return them checked."""
        hp = spec.LOSSES[self.NAME].validate(values)
        self._hparams = dict(values)
        if not self._holds_ghm:
            for k, v in hp.items():
                setattr(self, k, v)
        return hp

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

    def __init__(self, alpha=_D[NAME]["alpha"], gamma=_D[NAME]["gamma"],
                 alpha_mode=_D[NAME]["alpha_mode"], loss_weight=_D[NAME]["loss_weight"]):
        super().__init__()
        self._set(alpha=alpha, gamma=gamma, alpha_mode=alpha_mode, loss_weight=loss_weight)

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

    def __init__(self, alpha=_D[NAME]["alpha"], gamma=_D[NAME]["gamma"],
                 alpha_mode=_D[NAME]["alpha_mode"], loss_weight=_D[NAME]["loss_weight"]):
        super().__init__()
        self._set(alpha=alpha, gamma=gamma, alpha_mode=alpha_mode, loss_weight=loss_weight)

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
    _holds_ghm = True

    def __init__(self, bins=_D[NAME]["bins"], momentum=_D[NAME]["momentum"],
                 loss_weight=_D[NAME]["loss_weight"]):
        super().__init__()
        hp = self._set(bins=bins, momentum=momentum, loss_weight=loss_weight)
        self.ghm = _CoreGHMC(use_sigmoid=True, **hp)

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
    _holds_ghm = True

    def __init__(self, mu=_D[NAME]["mu"], bins=_D[NAME]["bins"],
                 momentum=_D[NAME]["momentum"], loss_weight=_D[NAME]["loss_weight"]):
        super().__init__()
        hp = self._set(mu=mu, bins=bins, momentum=momentum, loss_weight=loss_weight)
        self.ghm = _CoreGHMR(**hp)

    def forward(self, pred, target, normalizer):
        return self.ghm(pred, target, avg_factor=normalizer)


class ASL1Loss(_BoxLoss):
    """Authentic Smooth L1 on box deltas, ``sum / normalizer`` times ``loss_weight``."""

    NAME = "ASL1Loss"

    def __init__(self, mu=_D[NAME]["mu"], loss_weight=_D[NAME]["loss_weight"]):
        super().__init__()
        self._set(mu=mu, loss_weight=loss_weight)

    def forward(self, pred, target, normalizer):
        loss = asl1_loss(pred, target, mu=self.mu, reduction="sum")
        return loss * (self.loss_weight / normalizer)


_CLASSES = {c.NAME: c for c in (SigmoidFocalLoss, SoftmaxFocalLoss, GHMC, GHMR, ASL1Loss)}
assert tuple(_CLASSES) == spec.LOSS_NAMES, "one detectron2 class per spec loss"


def check_loss_for_slot(loss, slot: str, key: Optional[str] = None,
                        num_classes: Optional[int] = None):
    """Raise ValueError unless ``loss`` (a loss object or None) fits ``slot`` (a key of
    SLOT_NAMES) and, given the head's ``num_classes``, its per-class alpha has one entry
    per logit column; return it. ``key`` names the option in the message (``cls_loss``)."""
    if loss is None:
        return None
    allowed = SLOT_NAMES[slot]
    name = getattr(loss, "NAME", None)
    if not isinstance(loss, _PluginLoss) or name not in allowed:
        shown = name if isinstance(loss, _PluginLoss) else type(loss).__name__
        raise ValueError(f"{_where(key or slot, 'NAME')} = {shown!r} is not valid for this "
                         f"slot; choose one of {list(allowed)} or '' (detectron2's own loss)")
    if num_classes is not None and "alpha" in loss._hparams:
        s = spec.LOSSES[name]
        s.validate(loss._hparams, lambda f: _where(key, f), num_classes=num_classes)
    return loss


_UNSET = object()


def build_loss(cfg: Optional[Mapping] = None, *, slot: Optional[str] = None,
               key: Optional[str] = None, num_classes: Optional[int] = None, name=_UNSET,
               alpha=_UNSET, alpha_mode=_UNSET, gamma=_UNSET, bins=_UNSET, momentum=_UNSET,
               mu=_UNSET, loss_weight=_UNSET):
    """The one builder: a loss config -> a loss object, or None for NAME "" (keep
    detectron2's own loss).

    The config is either ``cfg``, a YACS node (or mapping) with the upper-case fields
    NAME, ALPHA, ALPHA_MODE, GAMMA, BINS, MOMENTUM, MU, LOSS_WEIGHT (as made by
    ``add_focal_plugins_config``), or the same fields as lower-case keyword arguments (the
    LazyConfig form, ``L(build_loss)(name="GHMC", bins=30, momentum=0.75)``); keywords
    given alongside ``cfg`` override it. Fields a loss does not take are ignored. The
    hyperparameters, their defaults and checks are the loss spec's
    (:mod:`focal_plugins.spec`).

    ALPHA: None = the loss's default (0.25 for SigmoidFocalLoss, none for
    SoftmaxFocalLoss); a negative number = no alpha weighting (fvcore's convention); a
    number in [0, 1]; or one weight per class (see ``focal_plugins.core.resolve_alpha``).
    ALPHA_MODE: one the loss accepts (``'binary'``, for SoftmaxFocalLoss with one class).

    ``slot`` (a key of ``SLOT_NAMES``) restricts the names to those valid there; ``key`` is
    the option's full name used in error messages (a YACS node's path); without it a field
    from ``cfg`` is named in upper case, a keyword in lower case (the LazyConfig key).
    ``num_classes`` (the head's foreground classes) checks a per-class ALPHA's length now.
    Invalid values raise ValueError naming the key and the value.
    """
    given = dict(name=name, alpha=alpha, alpha_mode=alpha_mode, gamma=gamma, bins=bins,
                 momentum=momentum, mu=mu, loss_weight=loss_weight)
    values, from_kw = {}, set()
    for field in _FIELDS:
        f = field.lower()
        if given[f] is not _UNSET:
            values[f] = given[f]
            from_kw.add(f)
        elif cfg is not None and field in cfg:
            values[f] = cfg[field]

    def name_of(f):
        if key:
            return f"{key}.{f.upper()}"
        return _kwarg(f) if f in from_kw else f.upper()

    nm = values.get("name", _DEFAULTS["NAME"])
    if not isinstance(nm, str):
        raise ValueError(f"{name_of('name')} must be a string, got {nm!r}")
    if nm == "":
        return None
    if nm not in _CLASSES:
        raise ValueError(f"{name_of('name')} = {nm!r} is not a known loss; choose one of "
                         f"{list(_CLASSES)} or '' (detectron2's own loss)")
    if slot is not None and nm not in SLOT_NAMES[slot]:
        raise ValueError(f"{name_of('name')} = {nm!r} is not valid for this slot; choose "
                         f"one of {list(SLOT_NAMES[slot])} or '' (detectron2's own loss)")
    s = spec.LOSSES[nm]
    hp = {f: values[f] for f in s.params if f in values}
    if "alpha" in s.params:  # None: the loss's default; < 0: none (fvcore's convention)
        a = hp.get("alpha")
        hp["alpha"] = s.defaults["alpha"] if a is None else _fvcore_alpha(name_of("alpha"), a)
    hp = s.validate(hp, name_of, num_classes=num_classes)
    if "alpha" in hp and "alpha" in values and values["alpha"] is not None \
            and not is_scalar(values["alpha"]) and not hasattr(values["alpha"], "dim"):
        hp["alpha"] = [float(v) for v in hp["alpha"]]
    return _CLASSES[nm](**hp)


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
