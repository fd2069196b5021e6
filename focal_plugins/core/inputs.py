"""Input normalisation shared by every loss: targets, weights and label weights in the forms
the reference math and the fast paths read, and the choice between them (``fast_path``).

Value checks go through ``checks.check_values`` (eager ValueError on the CPU, an
asynchronous device assert elsewhere). Integer labels of any integer dtype are compared in
int64 (``as_labels``), so a uint8 label 156 is never taken for ``ignore_index=-100``.
"""
from typing import Optional

import torch
from torch import Tensor

from . import checks
from .checks import check_choice, check_range, check_values, check_weight, compute_dtype, first_bad

IMPLS = ("auto", "reference", "fused")

__all__ = ["IMPLS", "fast_path", "needs_grad", "as_labels", "is_sigmoid_labels",
           "check_sigmoid_labels", "check_softmax_labels", "sigmoid_target",
           "fast_sigmoid_target", "sigmoid_weight", "class_view", "as_rows", "expand_label_weight",
           "valid_count"]


def needs_grad(args: dict) -> Optional[str]:
    """The name of the first of ``args`` (name -> value) that is a tensor autograd would
    differentiate (grad mode on and requires_grad), else None."""
    if not torch.is_grad_enabled():
        return None
    for arg, value in args.items():
        if isinstance(value, Tensor) and value.requires_grad:
            return arg
    return None


def fast_path(loss: str, name: str, impl: str, pred: Tensor, grad_args: Optional[dict] = None):
    """The one dispatch point of every loss: the fast path of ``kernels.FAST_PATHS`` for
    ``loss`` on pred's device (a callable), or None for the reference.

    "reference" is the plain-PyTorch math in this package, which the tests compare every
    fast path against. ``impl``:

    - "reference": always the reference.
    - "auto": the table's fast path for (loss, pred's device type) where it can run (Triton
      on CUDA when triton imports; the chunked CPU path for sigmoid focal and sigmoid
      GHM-C), else the reference.
    - "fused": a fast path or an error: the table's, or on CPU tensors under
      TRITON_INTERPRET=1 the Triton one (the interpreter, for tests); RuntimeError where
      none applies.

    An empty ``pred`` (no rows or no classes) always takes the reference, and so does a
    call under ``torch.jit.trace`` (the fast paths are Python autograd Functions, which
    the tracer cannot record; "fused" raises there).

    The fast paths give first-order gradients of ``pred`` only: double backward raises, and
    so does a second backward through one graph on the CPU fast path (it scales its saved
    gradient in place); the reference supports both. ``grad_args`` (name -> value) are the
    other arguments the reference differentiates (weight, float target, alpha tensor): when
    one of them requires grad, "auto" takes the reference and "fused" raises ValueError.
    ``name`` is the loss as the user calls it, for error messages.
    """
    check_choice("impl", impl, IMPLS)
    if impl == "reference" or pred.numel() == 0:   # nothing to fuse in an empty input
        return None
    if torch.jit.is_tracing():
        if impl == "fused":
            raise RuntimeError(f"impl='fused': torch.jit.trace cannot record the fused {name} "
                               "(a Python autograd Function); trace with impl='auto' or "
                               "'reference', which trace the reference math")
        return None
    arg = needs_grad(grad_args or {})
    if arg is not None:
        if impl == "fused":
            raise ValueError(f"impl='fused': the fused {name} computes the gradient of pred "
                             f"only, but {arg} requires grad; use impl='auto' or 'reference' "
                             f"to differentiate {arg}")
        return None
    from .. import kernels as K
    fn = K.select(loss, pred, fused=impl == "fused")
    if fn is None and impl == "fused":
        raise RuntimeError(f"impl='fused': no fused kernel for {name} is available for this "
                           f"input ({pred.device.type}, {pred.dtype}; use impl='auto' or "
                           "'reference')")
    return fn


# ---- labels and targets

def as_labels(target: Tensor) -> Tensor:
    """Integer class indices as int64 (no copy when they are int64 already), so comparisons
    with C or ignore_index never wrap in a narrow dtype (156 == -100 in uint8)."""
    return target if target.dtype == torch.int64 else target.long()


def is_sigmoid_labels(pred: Tensor, target) -> bool:
    """(N,) integer class indices for (N, C) logits (the only shape with that shortcut)."""
    return (isinstance(target, Tensor) and pred.dim() == 2 and target.dim() == 1
            and target.shape[0] == pred.shape[0]
            and target.shape != pred.shape and not target.is_floating_point()
            and target.dtype != torch.bool)


def check_sigmoid_labels(target: Tensor, C: int) -> None:
    """Labels (int64) in [0, C], C = background."""
    def message():
        ok = (target >= 0) & (target <= C)
        return f"target labels must lie in [0, {C}] ({C} = background), got {first_bad(target, ok)!r}"
    check_range(target, 0, C, "target", message)


def check_softmax_labels(target: Tensor, C: int, ignore_index: int) -> None:
    """Labels (int64) in [0, C - 1] or ignore_index. On the CPU the extremes decide first
    (3 ops), the elementwise check runs only where they fall outside [0, C - 1]."""
    if (target.numel() and target.device.type == "cpu" and not checks.DEVICE_ASSERTS_ON_CPU
            and not torch.compiler.is_compiling()):
        lo, hi = torch.aminmax(target)
        if lo.item() >= 0 and hi.item() < C:
            return
    ok = ((target >= 0) & (target < C)) | (target == ignore_index)
    check_values(ok, "target", lambda: f"target labels must lie in [0, {C - 1}] or equal "
                                       f"ignore_index={ignore_index}, got {first_bad(target, ok)!r}")


_NATIVE = (torch.float32, torch.float16, torch.bfloat16)   # float targets kernels read as is


def fast_sigmoid_target(pred: Tensor, target: Tensor, labels: bool) -> Tensor:
    """The validated target a fast path reads: integer labels (N,) as int64, else float
    targets in [0, 1] shaped like pred (fp32/fp16/bf16 kept, others in pred's compute dtype)."""
    if labels:
        target = as_labels(target)
        check_sigmoid_labels(target, pred.shape[1])
        return target
    dtype = target.dtype if isinstance(target, Tensor) and target.dtype in _NATIVE else None
    return sigmoid_target(pred, target, dtype or compute_dtype(pred))


def sigmoid_target(pred: Tensor, target: Tensor, dtype=None) -> Tensor:
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
    if is_sigmoid_labels(pred, target):
        C = pred.shape[1]
        target = as_labels(target)
        check_sigmoid_labels(target, C)
        classes = torch.arange(C, device=target.device)
        return (target.unsqueeze(1) == classes).to(pred.dtype if dtype is None else dtype)
    labels = f" or be integer class indices of shape ({pred.shape[0]},)" if pred.dim() == 2 else ""
    raise ValueError(f"target must be shaped like pred {tuple(pred.shape)}{labels}, got shape "
                     f"{tuple(target.shape)} dtype {target.dtype}")


# ---- weights

def sigmoid_weight(weight: Optional[Tensor], shape) -> Optional[Tensor]:
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


def class_view(a: Tensor, dim: int) -> Tensor:
    """Per-class factors (C,) shaped to broadcast along dim 1 of logits with ``dim`` dims
    (0-d and 1-d logits have one class)."""
    return a.reshape(()) if dim == 0 else a.view((-1,) + (1,) * max(dim - 2, 0))


def as_rows(pred: Tensor, t: Tensor, w: Optional[Tensor], a_pos: Tensor, a_neg: Tensor,
            per_class: bool):
    """What the fast paths read, (M, K) rows with alpha per column (or the same float
    alphas for every column), from logits of any shape: (x, t, w, a_pos, a_neg, back), ``back`` reshaping a "none" loss to pred's shape.
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
    if isinstance(a_pos, Tensor):
        a_pos, a_neg = a_pos[:1].expand(K), a_neg[:1].expand(K)
    return x2, t2, w2, a_pos, a_neg, lambda out: out.reshape(shape)


def expand_label_weight(lw, shape, like: Tensor) -> Tensor:
    """GHM's label_weight of shape ``shape``, from (N,) per row (broadcast along columns),
    anything broadcasting to ``shape``, or None (all 1). An element is valid where its
    label weight is > 0 (so NaN is invalid), on every path."""
    if lw is None:
        return like.new_ones(shape)
    check_weight("label_weight", lw)
    if len(shape) >= 2 and lw.dim() == 1 and lw.shape[0] == shape[0]:
        lw = lw.view(-1, *([1] * (len(shape) - 1)))
    check_weight("label_weight", lw, shape)
    return lw.to(like.dtype).expand(shape)


def valid_count(lw: Optional[Tensor], shape, like: Tensor) -> Tensor:
    """Number of valid (label_weight > 0) elements of ``shape``; lw None, (N,) per row, or
    broadcastable to ``shape``."""
    if lw is None:
        return torch.tensor(shape[0] * shape[1], dtype=torch.int64, device=like.device)
    if lw.dim() == 1 and len(shape) == 2:
        return (lw > 0).sum() * shape[1]
    return (lw > 0).sum()
