"""mmdet-facing loss modules: thin wrappers that translate mmdet's calling conventions to the
framework-free core (``focal_plugins.core``). No loss math lives here.

mmdet heads call a loss as ``loss(pred, target, weight, avg_factor=..., reduction_override=...)``
(FCOS passes no ``weight``). Labels are class indices in ``[0, num_classes]`` with
``num_classes`` meaning background. Softmax losses see ``num_classes + 1`` logits whose last
column is background.

Softmax losses (``SoftmaxFocalLoss``, ``GHMC(use_sigmoid=False)``) expose the hooks mmdet's
RoI box head and FCOS head look for: ``custom_activation`` / ``get_activation`` (softmax over
all columns, background included), ``custom_accuracy`` / ``get_accuracy`` (``{'acc': ...}``,
the same number as mmdet's own ``accuracy``) and ``get_cls_channels`` (``num_classes + 1``).
``custom_cls_channels`` stays False on purpose: the heads' default channel count is already
``num_classes + 1`` for softmax losses, and mmdet's dense heads would otherwise take
``get_activation``'s output (which keeps the background column) as the per-class scores.

The head decides the number of output channels from the *config* entry ``use_sigmoid``
(``loss_cls.get('use_sigmoid', False)``), not from the built module, so a sigmoid loss must
say ``use_sigmoid=True`` in the config, exactly as with mmdet's own ``FocalLoss``.

The hyperparameters each loss shares with the detectron2 adapter (alpha, alpha_mode, gamma,
bins, momentum, mu, loss_weight), their defaults and their checks come from the one loss spec,
:mod:`focal_plugins.spec`. A keyword a loss does not take (mmdet 2.x-style overrides that
replace ``FocalLoss`` by ``GHMC`` without ``_delete_=True`` keep ``gamma``) is refused with a
TypeError that says to use ``_delete_=True``.
"""
from contextlib import contextmanager
from typing import Optional

from torch import Tensor, nn

from focal_plugins import core, spec
from focal_plugins.core import asl1_loss, sigmoid_focal_loss, softmax_focal_loss
from focal_plugins.core.checks import REDUCTIONS, check_bool, check_choice, check_int
from focal_plugins.core.inputs import IMPLS

from .heads import apply_softmax_prior

__all__ = ["SigmoidFocalLoss", "SoftmaxFocalLoss", "GHMC", "GHMR", "ASL1Loss"]


@contextmanager
def _named(loss):
    """Prefix argument errors with the loss's name: ``GHMC: bins must be an int >= 1, got 0``
    (a config names the loss by ``type``, so the message says which entry to fix)."""
    try:
        yield
    except (ValueError, TypeError) as e:
        prefix = f"{type(loss).__name__}: "
        if str(e).startswith(prefix):
            raise
        raise type(e)(prefix + str(e)) from e


def _check_reduction(name: str, value, allow_none: bool = False) -> None:
    check_choice(name, value, ((None,) if allow_none else ()) + REDUCTIONS)


_check_bool = check_bool

#: each loss's hyperparameter defaults, from the spec (the signatures below read them)
_D = {name: s.defaults for name, s in spec.LOSSES.items()}


def _hyperparameters(loss, **values) -> dict:
    """``values`` checked by the spec of the loss's registry name; errors name the keyword."""
    return spec.LOSSES[type(loss).NAME].validate(values)


def _refuse_unexpected(loss, unexpected: dict) -> None:
    """TypeError for keywords the loss does not take, with the ``_delete_`` hint."""
    if not unexpected:
        return
    name = type(loss).NAME
    parts = []
    for k in sorted(unexpected):
        owners = [n for n in spec.takers(k) if n != name]
        parts.append(f"{k!r}" + (f" (a setting of {', '.join(owners)})" if owners else ""))
    raise TypeError(
        f"{name}: unexpected keyword argument{'s' if len(parts) > 1 else ''} "
        f"{', '.join(parts)}. In an mmdet config, a loss dict that overrides an inherited one "
        f"is merged into it and keeps the base's other keys (e.g. FocalLoss's gamma and alpha "
        f"when type='{name}' replaces it): replace the whole dict with "
        f"dict(_delete_=True, type='{name}', ...), or drop the keys listed")


def _check_not_activated(activated) -> None:
    if _check_bool("activated", activated):
        raise ValueError("activated=True (predictions already passed through sigmoid/softmax) "
                         "is not supported: the focal_plugins losses take raw logits; got "
                         "activated=True")


class _SoftmaxHooks:
    """What mmdet's BBoxHead / FCOSHead ask of a softmax classification loss."""

    custom_cls_channels = False
    custom_activation = True
    custom_accuracy = True

    def get_cls_channels(self, num_classes: int) -> int:
        return num_classes + 1

    def get_activation(self, cls_score: Tensor) -> Tensor:
        return cls_score.softmax(dim=-1)

    def get_accuracy(self, cls_score: Tensor, labels: Tensor) -> dict:
        from mmdet.models.losses import accuracy
        return dict(acc=accuracy(cls_score, labels))


class SigmoidFocalLoss(nn.Module):
    """Sigmoid focal loss with explicit alpha handling, for mmdet's sigmoid heads.

    Args mirror mmdet's ``FocalLoss`` (``use_sigmoid`` must be True, ``activated`` False) plus
    the core's ``alpha`` (None, a float or one value per class) and ``alpha_mode``
    (``'paper'``: alpha on positives, 1 - alpha on negatives; ``'uniform'``: alpha on both).
    """

    NAME = "SigmoidFocalLoss"

    def __init__(self, use_sigmoid: bool = True, gamma: float = _D[NAME]["gamma"],
                 alpha=_D[NAME]["alpha"], alpha_mode: str = _D[NAME]["alpha_mode"],
                 reduction: str = "mean", loss_weight: float = _D[NAME]["loss_weight"],
                 activated: bool = False, impl: str = "auto", **unexpected):
        super().__init__()
        _refuse_unexpected(self, unexpected)
        with _named(self):
            if not _check_bool("use_sigmoid", use_sigmoid):
                raise ValueError("needs use_sigmoid=True (use SoftmaxFocalLoss for a softmax "
                                 "classifier), got use_sigmoid=False")
            _check_not_activated(activated)
            _check_reduction("reduction", reduction)
            self.use_sigmoid = True
            self.activated = False
            hp = _hyperparameters(self, gamma=gamma, alpha=alpha, alpha_mode=alpha_mode,
                                  loss_weight=loss_weight)
            self.gamma = hp["gamma"]
            self.alpha = alpha
            self.alpha_mode = alpha_mode
            self.reduction = reduction
            self.loss_weight = hp["loss_weight"]
            check_choice("impl", impl, IMPLS)
            self.impl = impl

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        with _named(self):
            _check_reduction("reduction_override", reduction_override, allow_none=True)
            loss = sigmoid_focal_loss(pred, target, weight, alpha=self.alpha, gamma=self.gamma,
                                      alpha_mode=self.alpha_mode,
                                      reduction=reduction_override or self.reduction,
                                      avg_factor=avg_factor, impl=self.impl)
        return self.loss_weight * loss


class SoftmaxFocalLoss(_SoftmaxHooks, nn.Module):
    """Softmax focal loss over ``num_classes + 1`` logits (background = last column by default).

    ``alpha``: None, a float (``alpha_mode='paper'``: alpha on foreground classes, 1 - alpha on
    the background column) or one value per column. ``background_index`` defaults to the last
    column, mmdet's convention.

    In a dense head (RetinaNet, FCOS, ...) the classifier starts at the softmax prior without
    extra config: background ``1 - bias_prob``, each class ``bias_prob / num_classes``
    (``focal_plugins.mmdet.heads``; ``SoftmaxPriorInit`` in the head's ``init_cfg`` still
    sets another one explicitly).
    """

    NAME = "SoftmaxFocalLoss"
    wants_softmax_prior = True  # focal_plugins.mmdet.heads gives its dense head the prior

    def __init__(self, use_sigmoid: bool = False, gamma: float = _D[NAME]["gamma"],
                 alpha=_D[NAME]["alpha"], alpha_mode: str = _D[NAME]["alpha_mode"],
                 background_index: Optional[int] = None, ignore_index: int = -100,
                 reduction: str = "mean", loss_weight: float = _D[NAME]["loss_weight"],
                 activated: bool = False, impl: str = "auto", **unexpected):
        super().__init__()
        _refuse_unexpected(self, unexpected)
        with _named(self):
            if _check_bool("use_sigmoid", use_sigmoid):
                raise ValueError("needs use_sigmoid=False (use SigmoidFocalLoss for a sigmoid "
                                 "classifier), got use_sigmoid=True")
            _check_not_activated(activated)
            _check_reduction("reduction", reduction)
            self.use_sigmoid = False
            self.activated = False
            self.background_index = check_int("background_index", background_index,
                                              allow_none=True)
            hp = _hyperparameters(self, gamma=gamma, alpha=alpha, alpha_mode=alpha_mode,
                                  loss_weight=loss_weight)
            self.gamma = hp["gamma"]
            self.alpha = alpha
            self.alpha_mode = alpha_mode
            self.ignore_index = check_int("ignore_index", ignore_index)
            self.reduction = reduction
            self.loss_weight = hp["loss_weight"]
            check_choice("impl", impl, IMPLS)
            self.impl = impl

    def init_weights(self) -> None:
        """Called by mmengine right after the holding head's ``init_cfg``: gives a dense
        head's classifier the softmax prior (``focal_plugins.mmdet.heads``)."""
        apply_softmax_prior(self)

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        with _named(self):
            _check_reduction("reduction_override", reduction_override, allow_none=True)
            bg = pred.shape[-1] - 1 if self.background_index is None else self.background_index
            loss = softmax_focal_loss(pred, target, weight, alpha=self.alpha, gamma=self.gamma,
                                      alpha_mode=self.alpha_mode, background_index=bg,
                                      ignore_index=self.ignore_index,
                                      reduction=reduction_override or self.reduction,
                                      avg_factor=avg_factor, impl=self.impl)
        return self.loss_weight * loss


_AVG_FACTOR_DOC = """
    ``use_avg_factor``: the heads pass an ``avg_factor`` (RetinaNet: number of positive
    anchors; FCOS: positive points; RoI head: sampled RoIs). GHM normalises by its own
    count of valid elements instead (the GHM paper, and what mmdet's GHM losses do: they
    ignore ``avg_factor``), so by default the head's ``avg_factor`` is dropped. With
    ``use_avg_factor=True`` it replaces GHM's denominator.
"""


class _GHMForward:
    """The mmdet ``forward`` shared by ``GHMC`` and ``GHMR``: checks ``reduction_override``
    and passes the head's ``avg_factor`` on only with ``use_avg_factor=True``."""

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        with _named(self):
            _check_reduction("reduction_override", reduction_override, allow_none=True)
            return super().forward(pred, target, weight,
                                   avg_factor=avg_factor if self.use_avg_factor else None,
                                   reduction_override=reduction_override)


class GHMC(_GHMForward, core.GHMC):
    """GHM-C for mmdet heads (the core's ``GHMC`` plus mmdet's hooks).

    Works where mmdet's own GHMC cannot: without label weights (FCOS) and with
    ``use_sigmoid=False`` (softmax over ``num_classes + 1`` columns, e.g. the RoI box head).
    With ``use_sigmoid=True`` it gives the same loss as mmdet's GHMC for the same arguments.
    ``ema``, ``ignore_index``, ``distributed``: see ``focal_plugins.core.GHMC``.
    """ + _AVG_FACTOR_DOC

    NAME = "GHMC"

    def __init__(self, bins: int = _D[NAME]["bins"], momentum: float = _D[NAME]["momentum"],
                 use_sigmoid: bool = True, loss_weight: float = _D[NAME]["loss_weight"],
                 reduction: str = "mean", distributed="auto", use_avg_factor: bool = False,
                 ema: str = "nonempty", ignore_index: int = -100, **unexpected):
        _refuse_unexpected(self, unexpected)
        with _named(self):
            _check_bool("use_sigmoid", use_sigmoid)
            _check_reduction("reduction", reduction)
            hp = _hyperparameters(self, bins=bins, momentum=momentum, loss_weight=loss_weight)
            super().__init__(bins=hp["bins"], momentum=hp["momentum"], use_sigmoid=use_sigmoid,
                             loss_weight=hp["loss_weight"], reduction=reduction,
                             distributed=distributed, ema=ema, ignore_index=ignore_index)
            self.use_avg_factor = _check_bool("use_avg_factor", use_avg_factor)
        softmax = not use_sigmoid
        self.custom_cls_channels = False
        self.custom_activation = softmax
        self.custom_accuracy = softmax

    get_cls_channels = _SoftmaxHooks.get_cls_channels
    get_accuracy = _SoftmaxHooks.get_accuracy

    def get_activation(self, cls_score: Tensor) -> Tensor:
        return cls_score.softmax(-1) if not self.use_sigmoid else cls_score.sigmoid()


class GHMR(_GHMForward, core.GHMR):
    """GHM-R (Authentic Smooth L1 with gradient-harmonised weights) as an mmdet ``loss_bbox``.

    For delta-encoded boxes (``reg_decoded_bbox=False``): the head's ``bbox_weights`` (N, 4)
    become the core's ``label_weight`` (validity mask). Equals mmdet's GHMR for the same
    arguments.
    """ + _AVG_FACTOR_DOC

    NAME = "GHMR"

    def __init__(self, mu: float = _D[NAME]["mu"], bins: int = _D[NAME]["bins"],
                 momentum: float = _D[NAME]["momentum"],
                 loss_weight: float = _D[NAME]["loss_weight"], reduction: str = "mean",
                 distributed="auto", use_avg_factor: bool = False, ema: str = "nonempty",
                 **unexpected):
        _refuse_unexpected(self, unexpected)
        with _named(self):
            _check_reduction("reduction", reduction)
            hp = _hyperparameters(self, mu=mu, bins=bins, momentum=momentum,
                                  loss_weight=loss_weight)
            super().__init__(mu=hp["mu"], bins=hp["bins"], momentum=hp["momentum"],
                             loss_weight=hp["loss_weight"], reduction=reduction,
                             distributed=distributed, ema=ema)
            self.use_avg_factor = _check_bool("use_avg_factor", use_avg_factor)


class ASL1Loss(nn.Module):
    """Authentic Smooth L1, ``sqrt(d^2 + mu^2) - mu``, as a plain mmdet ``loss_bbox``."""

    NAME = "ASL1Loss"

    def __init__(self, mu: float = _D[NAME]["mu"], reduction: str = "mean",
                 loss_weight: float = _D[NAME]["loss_weight"], **unexpected):
        super().__init__()
        _refuse_unexpected(self, unexpected)
        with _named(self):
            _check_reduction("reduction", reduction)
            hp = _hyperparameters(self, mu=mu, loss_weight=loss_weight)
            self.mu = hp["mu"]
            self.reduction = reduction
            self.loss_weight = hp["loss_weight"]

    def forward(self, pred: Tensor, target: Tensor, weight: Optional[Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None) -> Tensor:
        with _named(self):
            _check_reduction("reduction_override", reduction_override, allow_none=True)
            loss = asl1_loss(pred, target, weight, mu=self.mu,
                             reduction=reduction_override or self.reduction,
                             avg_factor=avg_factor)
        return self.loss_weight * loss
