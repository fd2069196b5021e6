"""The one weighting + reduction step every loss ends with (mmdet semantics)."""
from typing import Optional, Union

import torch
from torch import Tensor

from .checks import REDUCTIONS, check_avg_factor, check_choice, check_weight


def weight_reduce_loss(loss: Tensor, weight: Optional[Tensor] = None, reduction: str = "mean",
                       avg_factor: Optional[Union[float, Tensor]] = None) -> Tensor:
    """Multiply ``loss`` by ``weight`` (broadcast) and reduce.

    - ``reduction="none"``: the weighted elementwise loss (``avg_factor`` is ignored).
    - ``"sum"``: its sum; an ``avg_factor`` here is a ValueError, as in mmdet.
    - ``"mean"``: its mean over all elements, or ``sum / (avg_factor + eps)`` when
      ``avg_factor`` is given (eps = fp32 machine epsilon guards avg_factor = 0).

    ``avg_factor``: None, a finite number >= 0 or a one-element tensor holding one (mmdet
    heads pass ints and 0-d tensors). 0 is accepted as mmdet does (sum / eps, which is 0
    when every weighted element is 0); a negative, NaN, inf or non-number is a ValueError.

    The one difference from mmdet's ``weight_reduce_loss``: the mean of an empty loss is 0
    (still connected to the graph) instead of NaN.
    """
    check_choice("reduction", reduction, REDUCTIONS)
    avg_factor = check_avg_factor(avg_factor)
    if weight is not None:
        check_weight("weight", weight, loss.shape)
        loss = loss * weight
    if avg_factor is None:
        if reduction == "none":
            return loss
        if reduction == "sum" or loss.numel() == 0:
            return loss.sum()
        return loss.mean()
    if reduction == "sum":
        raise ValueError(f"avg_factor cannot be used with reduction='sum', got avg_factor={avg_factor!r}")
    if reduction == "none":
        return loss
    return loss.sum() / (avg_factor + torch.finfo(torch.float32).eps)


def reduce_sum(total: Tensor, count: int, reduction: str, avg_factor) -> Tensor:
    """The reduction of ``weight_reduce_loss`` from a fast path's weighted sum ``total`` of
    ``count`` elements (reduction "mean" or "sum"; avg_factor already checked)."""
    if avg_factor is None:
        return total if reduction == "sum" else total / max(count, 1)
    if reduction == "sum":
        return weight_reduce_loss(total, None, "sum", avg_factor)   # raises, as the reference
    return total / (avg_factor + torch.finfo(torch.float32).eps)
