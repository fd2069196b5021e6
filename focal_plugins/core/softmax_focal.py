r"""Softmax (multi-class) focal loss (Lin et al., "Focal Loss for Dense Object Detection").

Per sample n with logits x (C,) and class index t (or ignore_index):

    log p_t = log_softmax(x)[t]
    FL      = -alpha_t (1 - p_t)^gamma log p_t,      alpha_t = a[t]
    dFL/dx_j = alpha_t (p_j - [j = t]) ((1 - p_t)^gamma - gamma (1 - p_t)^(gamma - 1) p_t log p_t)

1 - p_t is computed as -expm1(log p_t), without cancellation. gamma = 0 with alpha = None
is ``F.cross_entropy``; ignored samples give 0 and do not count in the mean. ``a`` comes
from ``resolve_alpha(kind="softmax")``.
"""
from typing import Optional

import torch
from torch import Tensor

from .alpha import AlphaLike, resolve_alpha
from .checks import (REDUCTIONS, check_avg_factor, check_choice, check_floating, check_int,
                     check_number, check_weight, compute_dtype)
from .inputs import as_labels, check_softmax_labels, fast_path
from .reduce import reduce_sum, weight_reduce_loss
from .sigmoid_focal import focal_factor

__all__ = ["softmax_focal_loss", "softmax_focal_reference"]


def softmax_focal_reference(pred: Tensor, target: Tensor, a: Tensor, gamma: float,
                            ignore_index: int) -> Tensor:
    """Per-sample loss shaped like target (0 where ignored); pred (N, C, ...) logits in the
    compute dtype, target int64."""
    valid = target != ignore_index
    t = torch.where(valid, target, 0).unsqueeze(1)
    logp_t = pred.log_softmax(dim=1).gather(1, t).squeeze(1)
    m = -torch.expm1(logp_t)       # 1 - p_t without cancellation
    loss = -a[t.squeeze(1)] * focal_factor(m, gamma) * logp_t
    return torch.where(valid, loss, loss.new_zeros(()))


def softmax_focal_loss(pred: Tensor, target: Tensor, weight: Optional[Tensor] = None, *,
                       alpha: AlphaLike = None, gamma: float = 2.0, alpha_mode: str = "paper",
                       background_index: Optional[int] = None, ignore_index: int = -100,
                       reduction: str = "mean", avg_factor=None, impl: str = "auto") -> Tensor:
    """Softmax (multi-class) focal loss, per sample::

        log p_t = log_softmax(x)[target]
        FL = -alpha_t (1 - p_t)^gamma log p_t,   alpha_t = a[target]

    With gamma = 0 and alpha = None this is ``F.cross_entropy`` (same mean over the
    non-ignored entries). ``a`` comes from ``resolve_alpha(kind="softmax")``: a float alpha
    with ``alpha_mode="paper"`` puts alpha on the foreground classes and 1 - alpha on
    ``background_index`` (mmdet/detectron2 RoI heads: index num_classes, the last column).

    Args:
        pred: (N, C) or (N, C, d1, ...) logits.
        target: integer class indices (N,) or (N, d1, ...) in [0, C - 1], or ignore_index.
        weight: per-sample weights shaped like target.
        reduction: "mean" divides the weighted sum by the number of non-ignored entries
            (not by the sum of alpha_t, unlike ``F.cross_entropy(weight=...)``); with all
            entries ignored the mean is 0. ``avg_factor`` replaces that count (mmdet).

    fp16/bf16 inputs are computed in fp32 and give an fp32 loss.
    """
    check_floating("pred", pred)
    if pred.dim() < 2:
        raise ValueError(f"pred must be (N, C) or (N, C, d1, ...) logits, got shape {tuple(pred.shape)}")
    g = check_number("gamma", gamma, lo=0.0)
    check_choice("reduction", reduction, REDUCTIONS)
    avg_factor = check_avg_factor(avg_factor)
    ignore_index = check_int("ignore_index", ignore_index)
    background_index = check_int("background_index", background_index, allow_none=True)
    if not isinstance(target, Tensor) or target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"target must be an integer tensor of class indices, got "
                         f"{getattr(target, 'dtype', type(target).__name__)}")
    C = pred.shape[1]
    want = (pred.shape[0],) + tuple(pred.shape[2:])
    if tuple(target.shape) != want:
        raise ValueError(f"target shape {tuple(target.shape)} does not match pred "
                         f"{tuple(pred.shape)} (expected {want})")
    target = as_labels(target)
    check_softmax_labels(target, C, ignore_index)
    if weight is not None:
        check_weight("weight", weight)
        if tuple(weight.shape) != want:
            raise ValueError(f"weight must be per sample, shaped like target {want}, got "
                             f"shape {tuple(weight.shape)}")
    fast = fast_path("softmax_focal", "softmax_focal_loss", impl, pred,
                     grad_args={"weight": weight, "alpha": alpha})
    a = resolve_alpha(alpha, C, kind="softmax", alpha_mode=alpha_mode,
                      background_index=background_index, dtype=compute_dtype(pred),
                      device=pred.device)
    if fast is not None:
        x2 = pred if pred.dim() == 2 else pred.movedim(1, -1).reshape(-1, C)
        t2 = target.reshape(-1)
        w2 = None if weight is None else weight.reshape(-1)
        out = fast(x2, t2, w2, a, g, ignore_index, "none" if reduction == "none" else "sum")
        if reduction == "none":
            return out.reshape(want)
        if reduction == "mean" and avg_factor is None:
            return out / (target != ignore_index).sum().clamp_min(1)
        return reduce_sum(out, t2.numel(), reduction, avg_factor)
    loss = softmax_focal_reference(pred.to(compute_dtype(pred)), target, a, g, ignore_index)
    if reduction == "mean" and avg_factor is None:
        n_valid = (target != ignore_index).sum().clamp_min(1)
        return weight_reduce_loss(loss, weight, "sum") / n_valid
    return weight_reduce_loss(loss, weight, reduction, avg_factor)
