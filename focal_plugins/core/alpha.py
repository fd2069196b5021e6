"""Class weighting ("alpha") for the focal losses: one resolver for every convention."""
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .checks import check_choice, check_int, check_number, check_values, first_bad, is_scalar

AlphaLike = Union[None, float, Sequence[float], Tensor]
ALPHA_MODES = ("paper", "uniform", "binary")


def resolve_alpha(alpha: AlphaLike, num_classes: int, *, kind: str = "sigmoid",
                  alpha_mode: str = "paper", background_index: Optional[int] = None,
                  dtype: torch.dtype = torch.float32,
                  device: Union[str, torch.device, None] = None):
    """Turn any alpha convention into per-class factors.

    Returns, for ``kind="sigmoid"``, a pair ``(a_pos, a_neg)`` of shape (C,): the factor of
    the positive term ``-log p`` and of the negative term ``-log(1 - p)`` of class c; for
    ``kind="softmax"`` one vector ``a`` of shape (C,) with ``alpha_t = a[target]``.
    C = ``num_classes`` = the number of logit columns (for softmax, background included).

    ================  ===========================  ===============================
    alpha             sigmoid (a_pos, a_neg)       softmax a
    ================  ===========================  ===============================
    None              (1, 1)                       1
    float, "paper"    (alpha, 1 - alpha)           alpha on every class but
                      = alpha_t of the RetinaNet   ``background_index``, which gets
                      paper, torchvision, fvcore   1 - alpha (index required)
    float, "uniform"  (alpha, alpha): every term   alpha on every class
                      times alpha
    float, "binary"   ValueError (use "paper")     [alpha, 1 - alpha]; needs C == 2
    vector w (C,),    (w[c], 1 - w[c]);            w (``alpha_mode`` does not
    "paper"           each w[c] in [0, 1]          matter); each w[c] >= 0
    vector w (C,),    (w[c], w[c]); w[c] >= 0      w
    "uniform"
    ================  ===========================  ===============================

    Float alphas must lie in [0, 1]. A vector may come from ``class_frequency_alpha``
    (weights averaging 1); use it with ``alpha_mode="uniform"`` for sigmoid.
    A tensor alpha keeps its autograd graph: a learnable alpha gets gradients (the losses
    then compute on the reference path, since the fast paths differentiate pred only).
    """
    check_choice("kind", kind, ("sigmoid", "softmax"))
    check_choice("alpha_mode", alpha_mode, ALPHA_MODES)
    C = check_int("num_classes", num_classes, lo=0)
    background_index = check_int("background_index", background_index, allow_none=True)
    ones = torch.ones(C, dtype=dtype, device=device)

    if alpha is None:
        return (ones, ones) if kind == "sigmoid" else ones

    if isinstance(alpha, Tensor) and alpha.dim() == 0 and alpha.requires_grad:
        # a learnable scalar alpha: the same conventions, keeping its graph
        return _scalar_tensor_alpha(alpha, C, kind, alpha_mode, background_index, ones)
    if is_scalar(alpha):
        a = check_number("alpha", alpha, lo=0.0, hi=1.0)
        if kind == "sigmoid":
            a_pos, a_neg = sigmoid_alpha_floats(alpha, alpha_mode)
            return ones * a_pos, ones * a_neg
        if alpha_mode == "uniform":
            return ones * a
        if alpha_mode == "binary":
            if C != 2:
                raise ValueError(f"alpha_mode='binary' needs 2 classes, got num_classes={C}")
            return _to(torch.tensor([a, 1.0 - a], dtype=dtype), device)
        if background_index is None:
            raise ValueError(f"a float alpha={alpha!r} with alpha_mode='paper' needs "
                             "background_index (the class that gets 1 - alpha)")
        if not -C <= background_index < C:
            raise ValueError(f"background_index must index one of the {C} classes, "
                             f"got {background_index!r}")
        out = ones * a
        out[background_index] = 1.0 - a
        return out

    if isinstance(alpha, Tensor):
        w = _to(alpha.to(dtype), device if device is not None else alpha.device)
    else:
        try:
            w = _to(torch.tensor(alpha, dtype=dtype), device)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"alpha must be None, a float or a sequence of floats, got {alpha!r}")
    if w.dim() != 1 or w.numel() != C:
        raise ValueError(f"alpha must have one entry per class ({C}), got shape "
                         f"{tuple(w.shape)} (alpha={alpha!r})")
    if alpha_mode == "binary":
        raise ValueError(f"alpha_mode='binary' takes a float alpha, got alpha={alpha!r}")
    unit = kind == "sigmoid" and alpha_mode == "paper"
    ok = (w >= 0) & (w <= 1) if unit else (w >= 0) & torch.isfinite(w)
    check_values(ok, "alpha", lambda: f"alpha must lie in {'[0, 1]' if unit else '[0, inf)'}, "
                                      f"got {first_bad(w, ok)!r} in alpha={alpha!r}")
    if kind == "softmax":
        return w
    return (w, 1.0 - w) if alpha_mode == "paper" else (w, w)


def sigmoid_alpha_floats(alpha, alpha_mode: str = "paper"):
    """(a_pos, a_neg) as Python floats for an alpha that is the same on every class (None,
    a number or a 0-d tensor without grad), as ``resolve_alpha(kind="sigmoid")`` gives them
    per class; None for any other alpha. Checks alpha and alpha_mode as it does."""
    check_choice("alpha_mode", alpha_mode, ALPHA_MODES)
    if alpha is None:
        return 1.0, 1.0
    if not is_scalar(alpha) or (isinstance(alpha, Tensor) and alpha.requires_grad):
        return None
    a = check_number("alpha", alpha, lo=0.0, hi=1.0)
    if alpha_mode == "binary":
        raise ValueError("alpha_mode='binary' is for softmax with 2 classes; "
                         f"for sigmoid use 'paper' (alpha={alpha!r})")
    return a, (a if alpha_mode == "uniform" else 1.0 - a)


def _scalar_tensor_alpha(alpha: Tensor, C: int, kind: str, alpha_mode: str, background_index,
                        ones: Tensor):
    """``resolve_alpha`` for a 0-d alpha tensor that requires grad (no host sync)."""
    a = alpha.to(ones.dtype).to(ones.device, non_blocking=True)
    ok = (a >= 0) & (a <= 1)
    check_values(ok, "alpha", lambda: f"alpha must lie in [0, 1], got {alpha.item()!r}")
    if alpha_mode == "binary" or (kind == "softmax" and alpha_mode == "paper"):
        # the float conventions that place 1 - alpha on one class
        if alpha_mode == "binary" and C != 2:
            raise ValueError(f"alpha_mode='binary' needs 2 classes, got num_classes={C}")
        if kind == "sigmoid":
            raise ValueError("alpha_mode='binary' is for softmax with 2 classes; "
                             f"for sigmoid use 'paper' (alpha={alpha!r})")
        bg = 1 if alpha_mode == "binary" else background_index
        if bg is None:
            raise ValueError(f"a float alpha={alpha!r} with alpha_mode='paper' needs "
                             "background_index (the class that gets 1 - alpha)")
        if not -C <= bg < C:
            raise ValueError(f"background_index must index one of the {C} classes, got {bg!r}")
        is_bg = torch.arange(C, device=ones.device) == bg % C
        return torch.where(is_bg, 1 - a, a)
    if kind == "softmax":
        return ones * a
    return ones * a, ones * (a if alpha_mode == "uniform" else 1 - a)


def _to(t: Tensor, device) -> Tensor:
    # non_blocking: a host-to-device copy of a few floats must not synchronise the stream
    return t if device is None else t.to(device, non_blocking=True)


def class_frequency_alpha(counts: Union[Sequence[float], Tensor], method: str = "inverse",
                          beta: float = 0.999) -> Tensor:
    """Per-class weights from class counts n_c, normalised to average 1 (fp32, shape (C,)).

    - ``"inverse"``: w_c proportional to 1 / n_c.
    - ``"effective"``: w_c proportional to (1 - beta) / (1 - beta^n_c), the inverse of the
      effective number of samples (Cui et al., "Class-Balanced Loss Based on Effective
      Number of Samples", CVPR 2019); beta in [0, 1), beta -> 1 approaches "inverse".

    Every count must be > 0 (a class never seen has no defined weight).
    """
    check_choice("method", method, ("inverse", "effective"))
    b = check_number("beta", beta, lo=0.0, hi=1.0, hi_open=True)
    try:
        n = torch.as_tensor(counts, dtype=torch.float64).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"counts must be a 1-d sequence or tensor of numbers, got "
                         f"{counts!r}") from None
    if isinstance(counts, Tensor) and (counts.dtype == torch.bool or counts.is_complex()):
        raise ValueError(f"counts must hold numbers, got a tensor of dtype {counts.dtype}")
    if n.dim() != 1 or n.numel() == 0:
        raise ValueError(f"counts must be a non-empty 1-d sequence, got shape {tuple(n.shape)}")
    ok = (n > 0) & torch.isfinite(n)
    if not bool(ok.all()):
        raise ValueError(f"counts must be finite and > 0, got {first_bad(n, ok)!r} in counts")
    if method == "inverse":
        w = 1.0 / n
    else:
        w = (1.0 - b) / (1.0 - torch.pow(torch.tensor(b, dtype=torch.float64), n))
    return (w * (w.numel() / w.sum())).float()
