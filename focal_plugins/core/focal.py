"""Sigmoid and softmax focal loss (Lin et al., "Focal Loss for Dense Object Detection")."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import (REDUCTIONS, check_avg_factor, check_choice, check_floating, check_int,
                      check_number, check_values, check_weight, compute_dtype, first_bad)
from .alpha import AlphaLike, resolve_alpha
from .reduce import weight_reduce_loss

IMPLS = ("auto", "reference", "fused")


# ---- reference elementwise math (the fused kernels in focal_plugins.kernels sit beside these)

def _sigmoid_focal_reference(pred: Tensor, target: Tensor, a_pos: Tensor, a_neg: Tensor,
                             gamma: float) -> Tensor:
    """Elementwise loss; pred, target alike in the compute dtype, a_pos/a_neg broadcast
    along the class dim (``_class_view``)."""
    m = pred.sigmoid() * (1 - target) + (-pred).sigmoid() * target   # 1 - p_t, no cancellation
    alpha_t = a_pos * target + a_neg * (1 - target)
    return alpha_t * _focal_factor(m, gamma) * _bce(pred, target)


def _bce(x: Tensor, t: Tensor) -> Tensor:
    """BCE with logits, elementwise, with its limits at infinite logits: 0 (not NaN) where
    x = +inf, t = 1 or x = -inf, t = 0; inf where the limit is inf."""
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    exact = (t == 1) & (x == float("inf")) | (t == 0) & (x == float("-inf"))
    return torch.where(exact, 0.0, ce)


def _focal_factor(m: Tensor, gamma: float) -> Tensor:
    """m^gamma for m = 1 - p_t in [0, 1], with the gradient at m = 0 taken as its limit 0
    (for 0 < gamma < 1 autograd's g m^(g-1) is inf there, and inf * 0 gives NaN); 0^0 = 1."""
    if gamma == 0:
        return torch.ones_like(m)
    pos = m > 0
    return torch.where(pos, torch.where(pos, m, 1.0) ** gamma, 0.0)


def _softmax_focal_reference(pred: Tensor, target: Tensor, a: Tensor, gamma: float,
                             ignore_index: int) -> Tensor:
    """Per-sample loss shaped like target (0 where ignored); pred (N, C, ...) logits."""
    valid = target != ignore_index
    t = torch.where(valid, target, 0).unsqueeze(1)
    logp_t = pred.log_softmax(dim=1).gather(1, t).squeeze(1)
    m = -torch.expm1(logp_t)       # 1 - p_t without cancellation
    loss = -a[t.squeeze(1)] * _focal_factor(m, gamma) * logp_t
    return torch.where(valid, loss, loss.new_zeros(()))


def _needs_grad(args: dict) -> Optional[str]:
    """The name of the first of ``args`` (name -> value) that is a tensor autograd would
    differentiate (grad mode on and requires_grad), else None."""
    if not torch.is_grad_enabled():
        return None
    for arg, value in args.items():
        if isinstance(value, Tensor) and value.requires_grad:
            return arg
    return None


def _dispatch(name: str, impl: str, pred: Tensor, *, cpu: bool = False,
              grad_args: Optional[dict] = None) -> str:
    """The one dispatch point of every loss: "reference", "triton" or "cpu".

    "reference" is the plain-PyTorch math in this package, which the tests compare every
    fast path against. ``impl``:

    - "reference": always the reference.
    - "auto": the Triton kernels on CUDA tensors when triton imports; on the CPU the
      chunked fast path where the loss has one (``cpu=True``: sigmoid focal and sigmoid
      GHM-C, any target form) and ``kernels.cpu_usable`` agrees; else the reference.
    - "fused": a fast path or an error: Triton on CUDA, or on CPU tensors under
      TRITON_INTERPRET=1 (the interpreter, for tests), else the CPU fast path;
      RuntimeError where none applies.

    An empty ``pred`` (no rows or no classes) always takes the reference.

    The fast paths give first-order gradients of ``pred`` only: double backward raises, and
    so does a second backward through one graph on the CPU fast path (it scales its saved
    gradient in place); the reference supports both. ``grad_args`` (name -> value) are the other
    arguments the reference differentiates (weight, float target, alpha tensor): when one
    of them requires grad, "auto" takes the reference and "fused" raises ValueError.
    """
    check_choice("impl", impl, IMPLS)
    if impl == "reference" or pred.numel() == 0:   # nothing to fuse in an empty input
        return "reference"
    arg = _needs_grad(grad_args or {})
    if arg is not None:
        if impl == "fused":
            raise ValueError(f"impl='fused': the fused {name} computes the gradient of pred "
                             f"only, but {arg} requires grad; use impl='auto' or 'reference' "
                             f"to differentiate {arg}")
        return "reference"
    from .. import kernels as K
    if K.triton_usable(pred) and (pred.is_cuda or impl == "fused"):
        return "triton"
    if cpu and K.cpu_usable(pred):
        return "cpu"
    if impl == "fused":
        raise RuntimeError(f"impl='fused': no fused kernel for {name} is available for this "
                           f"input ({pred.device.type}, {pred.dtype}; use impl='auto' or "
                           "'reference')")
    return "reference"


def _reduce_sum(total: Tensor, count: int, reduction: str, avg_factor) -> Tensor:
    """The reduction of ``weight_reduce_loss`` from a fast path's weighted sum."""
    if avg_factor is None:
        return total if reduction == "sum" else total / max(count, 1)
    if reduction == "sum":
        return weight_reduce_loss(total, None, "sum", avg_factor)   # raises, as the reference
    return total / (avg_factor + torch.finfo(torch.float32).eps)


# ---- public functions

def _is_sigmoid_labels(pred: Tensor, target) -> bool:
    """(N,) integer class indices for (N, C) logits (the only shape with that shortcut)."""
    return (isinstance(target, Tensor) and pred.dim() == 2 and target.dim() == 1
            and target.shape[0] == pred.shape[0]
            and target.shape != pred.shape and not target.is_floating_point()
            and target.dtype != torch.bool)


def _check_sigmoid_labels(target: Tensor, C: int) -> None:
    ok = (target >= 0) & (target <= C)
    check_values(ok, "target", lambda: f"target labels must lie in [0, {C}] ({C} = "
                                       f"background), got {first_bad(target, ok)!r}")


def _check_softmax_labels(target: Tensor, C: int, ignore_index: int) -> None:
    ok = ((target >= 0) & (target < C)) | (target == ignore_index)
    check_values(ok, "target", lambda: f"target labels must lie in [0, {C - 1}] or equal "
                                       f"ignore_index={ignore_index}, got {first_bad(target, ok)!r}")


_NATIVE = (torch.float32, torch.float16, torch.bfloat16)   # float targets kernels read as is


def _fast_sigmoid_target(pred: Tensor, target: Tensor, labels: bool) -> Tensor:
    """The validated target a fast path reads: integer labels (N,) as they are, else float
    targets in [0, 1] shaped like pred (fp32/fp16/bf16 kept, others in pred's compute dtype)."""
    if labels:
        _check_sigmoid_labels(target, pred.shape[1])
        return target
    dtype = target.dtype if isinstance(target, Tensor) and target.dtype in _NATIVE else None
    return _as_sigmoid_target(pred, target, dtype or compute_dtype(pred))


def _as_sigmoid_target(pred: Tensor, target: Tensor, dtype=None) -> Tensor:
    """Float targets shaped like pred (in ``dtype``, default pred's), from either such a
    tensor or, for (N, C) logits, (N,) class indices."""
    if not isinstance(target, Tensor):
        raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.shape == pred.shape:
        t = target.to(pred.dtype if dtype is None else dtype)
        if t.numel():
            # on the extremes (NaN fails): no (N, C) mask, whose bytes would count on a GPU
            lo, hi = torch.aminmax(t)

            def message():
                bad = (t >= 0) & (t <= 1)
                return f"target values must lie in [0, 1], got {first_bad(t, bad)!r}"
            check_values((lo >= 0) & (hi <= 1), "target", message)
        return t
    if _is_sigmoid_labels(pred, target):
        C = pred.shape[1]
        _check_sigmoid_labels(target, C)
        classes = torch.arange(C, device=target.device)
        return (target.unsqueeze(1) == classes).to(pred.dtype if dtype is None else dtype)
    labels = f" or be integer class indices of shape ({pred.shape[0]},)" if pred.dim() == 2 else ""
    raise ValueError(f"target must be shaped like pred {tuple(pred.shape)}{labels}, got shape "
                     f"{tuple(target.shape)} dtype {target.dtype}")


def _sigmoid_weight(weight: Optional[Tensor], shape) -> Optional[Tensor]:
    """(N, C) logits: (N,) per-sample -> (N, 1); (N*C,) flattened -> (N, C); else must
    broadcast to (N, C). Logits of any other shape: must broadcast to their shape."""
    if weight is None:
        return None
    if len(shape) != 2:
        check_weight("weight", weight, shape)
        return weight
    check_weight("weight", weight)
    N, C = shape
    if weight.dim() == 1 and weight.shape[0] == N:
        return weight.view(N, 1)
    if weight.dim() == 1 and weight.shape[0] == N * C:
        return weight.view(N, C)
    try:
        torch.broadcast_shapes(weight.shape, (N, C))
    except RuntimeError:
        raise ValueError(f"weight of shape {tuple(weight.shape)} does not broadcast to the "
                         f"loss shape ({N}, {C})") from None
    if weight.dim() > 2:
        raise ValueError(f"weight of shape {tuple(weight.shape)} has more dims than the loss")
    return weight


def _class_view(a: Tensor, dim: int) -> Tensor:
    """Per-class factors (C,) shaped to broadcast along dim 1 of logits with ``dim`` dims
    (0-d and 1-d logits have one class)."""
    return a.reshape(()) if dim == 0 else a.view((-1,) + (1,) * max(dim - 2, 0))


def _as_rows(pred: Tensor, t: Tensor, w: Optional[Tensor], a_pos: Tensor, a_neg: Tensor,
             per_class: bool):
    """What the fast paths read, (M, K) rows with alpha per column, from logits of any
    shape: (x, t, w, a_pos, a_neg, back), ``back`` reshaping a "none" loss to pred's shape.
    (N, C) stays as it is. Other shapes are flattened, except that per-class alphas on
    (N, C, d1, ...) logits move the class dim last (a copy)."""
    if pred.dim() == 2:
        return pred, t, w, a_pos, a_neg, lambda out: out
    shape = pred.shape
    wf = None if w is None else w.expand(shape)
    if pred.dim() > 2 and per_class:
        C = shape[1]
        rows = [v.movedim(1, -1).reshape(-1, C) for v in (pred, t)]
        wr = None if wf is None else wf.movedim(1, -1).reshape(-1, C)
        moved = (shape[0],) + tuple(shape[2:]) + (C,)
        return (*rows, wr, a_pos, a_neg, lambda out: out.reshape(moved).movedim(-1, 1))
    K = shape[-1] if pred.dim() > 1 else 1
    x2, t2 = pred.reshape(-1, K), t.reshape(-1, K)
    w2 = None if wf is None else wf.reshape(-1, K)
    return (x2, t2, w2, a_pos[:1].expand(K), a_neg[:1].expand(K),
            lambda out: out.reshape(shape))


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

    fp16/bf16 inputs are computed in fp32 and give an fp32 loss.
    """
    check_floating("pred", pred)
    g = check_number("gamma", gamma, lo=0.0)
    check_choice("reduction", reduction, REDUCTIONS)
    avg_factor = check_avg_factor(avg_factor)
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and alpha == -1:
        alpha = None     # torchvision's and fvcore's "no weighting"
    C = pred.shape[1] if pred.dim() >= 2 else 1
    labels = _is_sigmoid_labels(pred, target)
    backend = _dispatch("sigmoid_focal_loss", impl, pred, cpu=True,
                        grad_args={"weight": weight, "target": target, "alpha": alpha})
    if pred.numel() == 0 and pred.dim() != 2:
        backend = "reference"
    if backend == "reference":
        x = pred.to(compute_dtype(pred))
        t = _as_sigmoid_target(x, target)
    else:
        t = _fast_sigmoid_target(pred, target, labels)
    w = _sigmoid_weight(weight, pred.shape)
    a_pos, a_neg = resolve_alpha(alpha, C, kind="sigmoid", alpha_mode=alpha_mode,
                                 dtype=compute_dtype(pred), device=pred.device)
    if backend != "reference":
        from .. import kernels as K
        per_class = not (alpha is None or isinstance(alpha, (int, float)))
        x2, t2, w2, ap2, an2, back = _as_rows(pred, t, w, a_pos, a_neg, per_class)
        out = K.sigmoid_focal(x2, t2, w2, ap2, an2, g,
                              "none" if reduction == "none" else "sum", backend=backend)
        if reduction == "none":
            return back(out)
        return _reduce_sum(out, pred.numel(), reduction, avg_factor)
    loss = _sigmoid_focal_reference(x, t, _class_view(a_pos, x.dim()),
                                    _class_view(a_neg, x.dim()), g)
    return weight_reduce_loss(loss, w, reduction, avg_factor)


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
    _check_softmax_labels(target, C, ignore_index)
    if weight is not None:
        check_weight("weight", weight)
        if tuple(weight.shape) != want:
            raise ValueError(f"weight must be per sample, shaped like target {want}, got "
                             f"shape {tuple(weight.shape)}")
    backend = _dispatch("softmax_focal_loss", impl, pred,
                        grad_args={"weight": weight, "alpha": alpha})
    a = resolve_alpha(alpha, C, kind="softmax", alpha_mode=alpha_mode,
                      background_index=background_index, dtype=compute_dtype(pred),
                      device=pred.device)
    if backend != "reference":
        x2 = pred if pred.dim() == 2 else pred.movedim(1, -1).reshape(-1, C)
        t2 = target.reshape(-1)
        w2 = None if weight is None else weight.reshape(-1)
        from .. import kernels as K
        out = K.softmax_focal(x2, t2, w2, a, g, ignore_index,
                              "none" if reduction == "none" else "sum")
        if reduction == "none":
            return out.reshape(want)
        if reduction == "mean" and avg_factor is None:
            return out / (target != ignore_index).sum().clamp_min(1)
        return _reduce_sum(out, t2.numel(), reduction, avg_factor)
    loss = _softmax_focal_reference(pred.to(compute_dtype(pred)), target.long(), a, g,
                                    ignore_index)
    if reduction == "mean" and avg_factor is None:
        n_valid = (target != ignore_index).sum().clamp_min(1)
        return weight_reduce_loss(loss, weight, "sum") / n_valid
    return weight_reduce_loss(loss, weight, reduction, avg_factor)
