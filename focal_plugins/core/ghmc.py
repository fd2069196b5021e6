r"""GHM-C, the gradient-harmonised classification loss (Li et al., "Gradient Harmonized
Single-stage Detector", AAAI 2019).

Sigmoid (``use_sigmoid=True``, mmdet's GHMC), per element (anchor n, class c), logit x,
target y in [0, 1]:

    g    = |sigmoid(x) - y|                      (the norm of dBCE/dx)
    L    = sum_valid beta(g) BCE(x, y) / tot,    tot = number of valid elements
    beta = tot / (density(bin(g)) * n)           (``focal_plugins.core.density``)
    dL/dx = beta(g) (sigmoid(x) - y) / tot       (beta is a constant of the call)

Softmax (``use_sigmoid=False``, e.g. an RoI head), per sample with class index t:

    g = 1 - p_t                                  (half the L1 norm of dCE/dx)
    L = sum_valid beta(g) CE(x, t) / tot

Valid: label_weight > 0 (and, for softmax, t != ignore_index); label_weight's values do
not scale the loss (mmdet). Binning, EMA, distributed counting: ``density``.
"""
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import (check_avg_factor, check_bool, check_floating, check_int, check_weight,
                     compute_dtype)
from .density import GHMC_LAST_EDGE, GHMBase
from .inputs import (as_labels, check_softmax_labels, fast_path, fast_sigmoid_target,
                     expand_label_weight, is_sigmoid_labels, sigmoid_target, valid_count)
from .sigmoid_focal import bce_with_limits

__all__ = ["GHMC"]


class GHMC(GHMBase):
    """GHM-C: classification loss weighted by the inverse gradient density (module doc).

    ``use_sigmoid=True`` (mmdet's GHMC): per element g = |sigmoid(x) - y|, loss = BCE with
    logits. ``use_sigmoid=False`` (e.g. a Faster R-CNN RoI head): per sample g = 1 - p_t
    (half the L1 norm of the softmax-CE gradient), loss = softmax cross-entropy.
    Binning, momentum, distributed and normalisation: see ``focal_plugins.core.density``.
    label_weight only marks validity (> 0), as in mmdet; its values do not scale the loss.

    Values equal mmdet 3.3's GHMC for the same arguments and call sequence, where mmdet
    accepts them; beyond mmdet: label_weight is optional, avg_factor replaces the mean's
    denominator tot, reduction "sum" gives the plain weighted sum (mmdet raises), softmax.
    The chunked CPU fast path (above 2^15 elements, or float targets) sums in float64 and
    rounds once to float32, so a reduced loss can differ from the reference's float32
    reduction in the last bit (1 ulp).

    Args:
        bins: number of equal bins over [0, 1]; g = 1 falls in the last.
        momentum: EMA factor of the bin counts in [0, 1); 0 = counts of the current batch.
        ignore_index: softmax only, targets with this value are invalid.
        ema, distributed: see ``focal_plugins.core.density``.
    """

    def __init__(self, bins: int = 10, momentum: float = 0.0, use_sigmoid: bool = True,
                 loss_weight: float = 1.0, reduction: str = "mean",
                 distributed: Union[str, bool] = "auto", *, ema: str = "nonempty",
                 ignore_index: int = -100, impl: str = "auto"):
        super().__init__(bins, momentum, loss_weight, reduction, distributed, ema, impl,
                         last_edge=GHMC_LAST_EDGE)
        self.use_sigmoid = check_bool("use_sigmoid", use_sigmoid)
        self.ignore_index = check_int("ignore_index", ignore_index)

    def forward(self, pred: Tensor, target: Tensor, label_weight: Optional[Tensor] = None,
                avg_factor=None, reduction_override: Optional[str] = None) -> Tensor:
        """pred (N, C) logits; target: sigmoid: integer (N,) in [0, C] (C = background) or
        float (N, C) in [0, 1]; softmax: integer (N,) in [0, C - 1] or ignore_index.
        label_weight: (N,), or (N, C) for sigmoid; None = all valid.

        Sigmoid GHM-C is elementwise, so it also takes logits of any other shape with a
        float target of the same shape (as mmdet's GHMC and torchvision's focal loss do);
        label_weight then broadcasts to that shape ((N,): per sample), and reduction
        "none" returns it."""
        reduction = self._reduction(reduction_override)
        avg_factor = check_avg_factor(avg_factor)
        check_floating("pred", pred)
        self._follow(pred)
        if self.use_sigmoid and pred.dim() != 2:
            return self._any_shape(pred, target, label_weight, avg_factor, reduction)
        if pred.dim() != 2:
            raise ValueError(f"pred must be (N, C) logits, got shape {tuple(pred.shape)}")
        if not isinstance(target, Tensor):
            raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}")
        # fast paths: sigmoid on Triton or the CPU (any target form); softmax on Triton only
        fast = fast_path("ghmc_sigmoid" if self.use_sigmoid else "ghmc_softmax", "GHMC",
                         self.impl, pred, grad_args={"target": target})
        if fast is not None:
            return self._fast_forward(fast, pred, target, label_weight, avg_factor, reduction)
        loss, g, lw = self.elements(pred, target, label_weight)
        valid = lw > 0
        with torch.no_grad():
            w, tot, world = self._weights(g, valid, valid.sum())
        return self._reduce(loss, w.to(loss.dtype), tot, world, reduction, avg_factor)

    def _fast_forward(self, fast, pred, target, label_weight, avg_factor, reduction):
        N, C = pred.shape
        if self.use_sigmoid:
            t = fast_sigmoid_target(pred, target, is_sigmoid_labels(pred, target))
            lw = label_weight
            if lw is not None:
                check_weight("label_weight", lw)
                if tuple(lw.shape) in ((N,), (N, 1)):
                    lw = lw.reshape(N)
                else:
                    check_weight("label_weight", lw, (N, C))
            tot = valid_count(lw, (N, C), pred)
            return self._run_fast(fast(pred, t, lw, self.edges), tot, reduction, avg_factor)
        target = self._softmax_target(target, N, C)
        lw = expand_label_weight(label_weight, (N,), pred) * (target != self.ignore_index)
        return self._run_fast(fast(pred, target, lw, self.edges, self.ignore_index),
                              (lw > 0).sum(), reduction, avg_factor)

    def _softmax_target(self, target: Tensor, N: int, C: int) -> Tensor:
        if target.shape != (N,) or target.is_floating_point() or target.dtype == torch.bool:
            raise ValueError(f"target must be integer class indices of shape ({N},) with "
                             f"use_sigmoid=False, got shape {tuple(target.shape)} dtype {target.dtype}")
        target = as_labels(target)
        check_softmax_labels(target, C, self.ignore_index)
        return target

    def _any_shape(self, pred, target, lw, avg_factor, reduction):
        """Sigmoid logits other than (N, C): the (M, K) rows of a flat view (K the last dim)."""
        if not isinstance(target, Tensor) or target.shape != pred.shape:
            got = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
            raise ValueError(f"target must be shaped like pred {tuple(pred.shape)}, got {got}")
        K = pred.shape[-1] if pred.dim() > 1 else 1
        rows = (-1, K) if K > 0 else (0, 1)
        if lw is not None:
            lw = expand_label_weight(lw, pred.shape, pred).reshape(rows)
        out = self.forward(pred.reshape(rows), target.reshape(rows), lw, avg_factor, reduction)
        return out.reshape(pred.shape) if reduction == "none" else out

    def elements(self, pred: Tensor, target: Tensor, lw: Optional[Tensor]):
        """The reference math per element: (loss, g, lw). loss: BCE (N, C) or softmax CE
        (N,) in the compute dtype, differentiable; g: its gradient norm (no grad); lw: the
        label weight expanded to loss's shape, 0 where invalid (> 0 marks valid)."""
        N, C = pred.shape
        x = pred.to(compute_dtype(pred))
        if self.use_sigmoid:
            t = sigmoid_target(x, target)
            lw = expand_label_weight(lw, (N, C), x)
            g = (x.detach().sigmoid() - t).abs()
            loss = bce_with_limits(x, t)
        else:
            target = self._softmax_target(target, N, C)
            ig = self.ignore_index
            lw = expand_label_weight(lw, (N,), x) * (target != ig)
            loss = F.cross_entropy(x, target, reduction="none", ignore_index=ig)
            g = 1 - torch.exp(-loss.detach())  # 1 - p_t
        return loss, g, lw
