r"""GHM-R, the gradient-harmonised box regression loss, and the Authentic Smooth L1 loss it
weights (Li et al., "Gradient Harmonized Single-stage Detector", AAAI 2019).

Per coordinate, d = pred - target and mu > 0:

    ASL1(d) = sqrt(d^2 + mu^2) - mu          (d^2 / 2mu for |d| << mu, |d| - mu for |d| >> mu)
    g       = |dASL1/dd| = |d| / sqrt(d^2 + mu^2)   in [0, 1)
    L       = sum_valid beta(g) ASL1(d) / tot,  tot = sum of label weights (mmdet)
    beta    = tot / (density(bin(g)) * n)      (``focal_plugins.core.density``)

Valid: label_weight > 0; label_weight must be finite (tot is its sum) and otherwise only
marks validity. Binning, EMA, distributed counting: ``density``.
"""
from typing import Optional, Union

import torch
from torch import Tensor

from .checks import (REDUCTIONS, check_avg_factor, check_choice, check_floating, check_number,
                     check_values, check_weight, compute_dtype, first_bad)
from .density import GHMR_LAST_EDGE, GHMBase
from .inputs import expand_label_weight, fast_path
from .reduce import weight_reduce_loss

__all__ = ["GHMR", "asl1_loss", "asl1_reference"]


def asl1_reference(pred: Tensor, target: Tensor, mu: float) -> Tensor:
    """ASL1 elementwise, pred and target in the compute dtype."""
    d = pred - target
    return torch.sqrt(d * d + mu * mu) - mu


def asl1_loss(pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
              mu: float = 0.02, reduction: str = "mean", avg_factor=None) -> Tensor:
    """Authentic Smooth L1: ASL1(d) = sqrt(d^2 + mu^2) - mu, d = pred - target.

    Quadratic (d^2 / 2mu) for |d| << mu, linear for |d| >> mu; its gradient length is
    |d| / sqrt(d^2 + mu^2) in [0, 1), the g of GHM-R. ``weight`` broadcasts to pred;
    ``reduction``/``avg_factor`` as ``weight_reduce_loss``. fp16/bf16 computed in fp32.
    """
    check_floating("pred", pred)
    check_floating("target", target)
    m = check_number("mu", mu, lo=0.0, lo_open=True)
    check_choice("reduction", reduction, REDUCTIONS)
    avg_factor = check_avg_factor(avg_factor)
    if target.shape != pred.shape:
        raise ValueError(f"target shape {tuple(target.shape)} does not match pred {tuple(pred.shape)}")
    dt = compute_dtype(pred)
    loss = asl1_reference(pred.to(dt), target.to(dt), m)
    if weight is not None:
        check_weight("weight", weight, loss.shape)
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def _check_finite_total(tot: Tensor, lw: Tensor) -> None:
    """GHM-R's tot is the sum of the label weights: a NaN or inf among them is bad input
    (checked on the sum, one op; the message finds the value)."""
    def message():
        ok = torch.isfinite(lw)
        bad = repr(first_bad(lw, ok)) if not bool(ok.all()) else \
            f"values summing to {tot.item()!r}"
        return f"label_weight must be finite (GHM-R normalises by its sum), got {bad}"
    check_values(torch.isfinite(tot), "label_weight", message)


class GHMR(GHMBase):
    """GHM-R: Authentic Smooth L1 (``asl1_loss``) weighted by the inverse density of
    g = |d| / sqrt(d^2 + mu^2), d = pred - target (module doc). Binning, momentum,
    distributed and normalisation: see ``focal_plugins.core.density``; tot = sum of
    label_weight (mmdet), which is the number of valid elements for 0/1 label weights.
    label_weight otherwise only marks validity; it must be finite.

    Equals mmdet 3.3's GHMR when avg_factor is None (mmdet ignores avg_factor; here it
    replaces tot as the mean's denominator). label_weight is optional (None = all valid).
    """

    def __init__(self, mu: float = 0.02, bins: int = 10, momentum: float = 0.0,
                 loss_weight: float = 1.0, reduction: str = "mean",
                 distributed: Union[str, bool] = "auto", *, ema: str = "nonempty",
                 impl: str = "auto"):
        super().__init__(bins, momentum, loss_weight, reduction, distributed, ema, impl,
                         last_edge=GHMR_LAST_EDGE)
        self.mu = check_number("mu", mu, lo=0.0, lo_open=True)

    def forward(self, pred: Tensor, target: Tensor, label_weight: Optional[Tensor] = None,
                avg_factor=None, reduction_override: Optional[str] = None) -> Tensor:
        """pred, target (N, 4) or any equal shapes; label_weight like them, (N,) or None."""
        reduction = self._reduction(reduction_override)
        avg_factor = check_avg_factor(avg_factor)
        check_floating("pred", pred)
        self._follow(pred)
        check_floating("target", target)
        if target.shape != pred.shape:
            raise ValueError(f"target shape {tuple(target.shape)} does not match pred {tuple(pred.shape)}")
        fast = fast_path("ghmr", "GHMR", self.impl, pred, grad_args={"target": target})
        if fast is not None:
            lw = expand_label_weight(label_weight, pred.shape, pred)
            tot = lw.sum()
            _check_finite_total(tot, lw)
            return self._run_fast(fast(pred, target, lw, self.edges, self.mu), tot, reduction,
                                  avg_factor)
        loss, g, lw = self.elements(pred, target, label_weight)
        tot = lw.sum()
        _check_finite_total(tot, lw)
        with torch.no_grad():
            w, tot, world = self._weights(g, lw > 0, tot)
        return self._reduce(loss, w.to(loss.dtype), tot, world, reduction, avg_factor)

    def elements(self, pred: Tensor, target: Tensor, label_weight: Optional[Tensor]):
        """The reference math per element: (loss, g, lw). loss: ASL1 in the compute dtype,
        differentiable; g = |d| / sqrt(d^2 + mu^2) (no grad); lw: the label weight expanded
        to pred's shape (> 0 marks valid)."""
        dt = compute_dtype(pred)
        x, y = pred.to(dt), target.to(dt)
        lw = expand_label_weight(label_weight, x.shape, x)
        mu = self.mu
        loss = asl1_reference(x, y, mu)
        with torch.no_grad():
            d = x - y
            g = d.abs() / torch.sqrt(mu * mu + d * d)
        return loss, g, lw
