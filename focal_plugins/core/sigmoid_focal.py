r"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017).

Per element (anchor n, class c), logit x, target y in [0, 1] (one-hot or soft):

    p   = sigmoid(x)
    1 - p_t = p (1 - y) + (1 - p) y                     (= |p - y| for hard y)
    BCE = -y log p - (1 - y) log(1 - p)                 (binary cross-entropy with logits)
    FL  = alpha_t (1 - p_t)^gamma BCE,   alpha_t = a_pos[c] y + a_neg[c] (1 - y)

    dFL/dx = alpha_t ((1 - p_t)^gamma (p - y)
                      + gamma (1 - p_t)^(gamma - 1) (1 - 2y) p (1 - p) BCE)

With alpha = 0.25 ("paper"): a_pos = 0.25, a_neg = 0.75, as torchvision, fvcore and mmdet.
gamma = 0 gives alpha-weighted BCE. Limits kept finite: BCE = 0 at x = +inf, y = 1 and at
x = -inf, y = 0; the factor's gradient at 1 - p_t = 0 is its limit 0 (0 < gamma < 1).

The reference below is the plain-PyTorch math every fast path (``focal_plugins.kernels``:
chunked CPU, Triton) is tested against.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .alpha import AlphaLike, resolve_alpha, sigmoid_alpha_floats
from .checks import REDUCTIONS, check_avg_factor, check_choice, check_floating, check_number, \
    compute_dtype
from .inputs import (as_rows, class_view, fast_path, fast_sigmoid_target, is_sigmoid_labels,
                     sigmoid_target, sigmoid_weight)
from .reduce import reduce_sum, weight_reduce_loss

__all__ = ["sigmoid_focal_loss", "sigmoid_focal_reference", "bce_with_limits", "focal_factor"]


def bce_with_limits(x: Tensor, t: Tensor) -> Tensor:
    """BCE with logits, elementwise, with its limits at infinite logits: 0 (not NaN) where
    x = +inf, t = 1 or x = -inf, t = 0; inf where the limit is inf."""
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    exact = (t == 1) & (x == float("inf")) | (t == 0) & (x == float("-inf"))
    return torch.where(exact, 0.0, ce)


def focal_factor(m: Tensor, gamma: float) -> Tensor:
    """m^gamma for m = 1 - p_t in [0, 1], with the gradient at m = 0 taken as its limit 0
    (for 0 < gamma < 1 autograd's g m^(g-1) is inf there, and inf * 0 gives NaN); 0^0 = 1."""
    if gamma == 0:
        return torch.ones_like(m)
    if gamma == 2:      # m * m: the same values and gradient (2 m, 0 at m = 0), fewer ops
        return m * m
    pos = m > 0
    return torch.where(pos, torch.where(pos, m, 1.0) ** gamma, 0.0)


def sigmoid_focal_reference(pred: Tensor, target: Tensor, a_pos: Tensor, a_neg: Tensor,
                            gamma: float) -> Tensor:
    """Elementwise loss; pred, target alike in the compute dtype, a_pos/a_neg broadcast
    along the class dim (``inputs.class_view``)."""
    m = pred.sigmoid() * (1 - target) + (-pred).sigmoid() * target   # 1 - p_t, no cancellation
    alpha_t = a_pos * target + a_neg * (1 - target)
    return alpha_t * focal_factor(m, gamma) * bce_with_limits(pred, target)


def sigmoid_focal_loss(pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
                       alpha: AlphaLike = 0.25, gamma: float = 2.0, alpha_mode: str = "paper",
                       reduction: str = "mean", avg_factor=None, impl: str = "auto") -> Tensor:
    """Sigmoid focal loss, per element (e.g. anchor n, class c)::

        p = sigmoid(x),  p_t = p if y = 1 else 1 - p  (soft y: p*y + (1-p)*(1-y))
        FL = -alpha_t (1 - p_t)^gamma log(p_t)
           = (a_pos[c] y + a_neg[c] (1 - y)) (1 - p_t)^gamma BCE(x, y)

    With the default alpha=0.25, ``alpha_mode="paper"``: alpha_t = alpha for y = 1 and
    1 - alpha for y = 0, as torchvision, fvcore and mmdet; alpha=-1 (or None) is no
    weighting, as their alpha=-1. Every other alpha convention (uniform, per class, class
    frequencies) is listed in ``resolve_alpha``.

    Shapes: logits of any shape with a float target of the same shape (one-hot or soft, in
    [0, 1]) compute what ``torchvision.ops.sigmoid_focal_loss`` and fvcore's
    ``sigmoid_focal_loss`` compute, element for element (binary classifiers (N,),
    dense heads (N, C, H, W), ...). Only (N, C) logits also take integer class indices
    (N,) in [0, C], C meaning background (an all-negative row). The class dim, where
    per-class alphas apply, is dim 1 (0-d and 1-d logits: one class). ``weight``
    broadcasts to the logits' shape; for (N, C) logits also (N,) per sample and the
    flattened (N*C,) of mmdet. ``reduction="none"`` returns the logits' shape, "mean"
    averages over all its elements.

    Args:
        pred: logits, any shape (see above).
        target: float tensor shaped like pred, or (N,) class indices for (N, C) pred.
        weight: see above.
        gamma: focusing parameter >= 0 (0 gives alpha-weighted BCE).
        reduction, avg_factor: as ``weight_reduce_loss`` (default "mean", as mmdet;
            torchvision's and fvcore's default is "none").
        impl: "auto" | "reference" | "fused" (fused kernels; "auto" picks what is available).

    fp16/bf16 inputs are computed in fp32 and give an fp32 loss. The chunked CPU fast path
    (inputs above 2^15 elements, and float targets) accumulates its sum in float64 and
    rounds it once to float32, so its "mean" / "sum" can differ from the reference's
    (torch's float32 reduction) in the last bit (1 ulp); elementwise losses and gradients
    of every fast path agree with the reference to float32 rounding.
    """
    check_floating("pred", pred)
    g = check_number("gamma", gamma, lo=0.0)
    check_choice("reduction", reduction, REDUCTIONS)
    avg_factor = check_avg_factor(avg_factor)
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha == -1:
        alpha = None     # torchvision's and fvcore's "no weighting"
    C = pred.shape[1] if pred.dim() >= 2 else 1
    labels = is_sigmoid_labels(pred, target)
    fast = fast_path("sigmoid_focal", "sigmoid_focal_loss", impl, pred,
                     grad_args={"weight": weight, "target": target, "alpha": alpha})
    if fast is None:
        x = pred.to(compute_dtype(pred))
        t = sigmoid_target(x, target)
    else:
        t = fast_sigmoid_target(pred, target, labels)
    w = sigmoid_weight(weight, pred.shape)
    if fast is not None:
        floats = sigmoid_alpha_floats(alpha, alpha_mode)   # one alpha for every class
        if floats is not None:
            a_pos, a_neg = floats
        else:
            a_pos, a_neg = resolve_alpha(alpha, C, kind="sigmoid", alpha_mode=alpha_mode,
                                         dtype=compute_dtype(pred), device=pred.device)
        x2, t2, w2, ap2, an2, back = as_rows(pred, t, w, a_pos, a_neg, floats is None)
        out = fast(x2, t2, w2, ap2, an2, g, "none" if reduction == "none" else "sum")
        if reduction == "none":
            return back(out)
        return reduce_sum(out, pred.numel(), reduction, avg_factor)
    a_pos, a_neg = resolve_alpha(alpha, C, kind="sigmoid", alpha_mode=alpha_mode,
                                 dtype=compute_dtype(pred), device=pred.device)
    loss = sigmoid_focal_reference(x, t, class_view(a_pos, x.dim()),
                                   class_view(a_neg, x.dim()), g)
    return weight_reduce_loss(loss, w, reduction, avg_factor)
