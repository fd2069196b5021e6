"""Fast paths behind the core losses: Triton kernels (CUDA, or CPU tensors under
``TRITON_INTERPRET=1``) and chunked CPU code. Kernel-level API on plain tensors:

    sigmoid_focal(x, target, weight, a_pos, a_neg, gamma, reduction)
    softmax_focal(x, labels, weight, a, gamma, ignore_index, reduction)
    ghm_sigmoid(x, target, label_weight, edges, weigh, reduction)
    ghm_softmax(x, labels, label_weight, edges, ignore_index, weigh, reduction)
    ghm_asl1(x, target, label_weight, edges, mu, weigh, reduction)

``reduction`` is "none" (elementwise / per-row loss) or "sum"; means and avg_factor are
the caller's division. ``weigh(counts) -> (bins,)`` turns the bin counts of this call into
per-bin weights (the core's EMA / distributed logic). Gradients flow to ``x`` only.
The loss comes back in fp32; the gradient in x's dtype (fp16/bf16 read natively on GPU).

Triton is imported lazily: without it (or without CUDA) ``triton_usable`` is False and the
callers stay on the reference path.
"""
import os

import torch

_TRITON = None


def interpreter() -> bool:
    """True when Triton's CPU interpreter was requested (must be set before import)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def _triton_ops():
    global _TRITON
    if _TRITON is None:
        try:
            from . import triton_ops
            _TRITON = triton_ops
        except Exception:   # triton missing or broken: reference path
            _TRITON = False
    return _TRITON


def triton_usable(x: torch.Tensor) -> bool:
    """Triton kernels can run on this tensor: CUDA (or CPU under the interpreter), a dtype
    the kernels read (fp32/fp16/bf16), and triton imports."""
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return False
    if not (x.is_cuda or (x.device.type == "cpu" and interpreter())):
        return False
    return bool(_triton_ops())


def cpu_usable(x: torch.Tensor) -> bool:
    """The chunked CPU path handles fp32/fp16/bf16 CPU logits (the core hands it (N, C)
    rows, with integer labels (N,) or float targets (N, C))."""
    return x.device.type == "cpu" and x.dtype in (torch.float32, torch.float16, torch.bfloat16)


def _f32(t):
    return None if t is None else t.detach().to(torch.float32).contiguous()


def _labels_or_float(target, x, cpu=False):
    """Integer labels as int64; float targets as they are (the Triton kernels read fp32,
    fp16 and bf16 targets natively; the CPU path computes in fp32)."""
    if not target.is_floating_point():
        return target.detach().to(torch.int64).contiguous()
    if cpu or target.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        target = target.to(torch.float32)
    return target.detach().contiguous()


def _row_or_elem(w, shape):
    """None, a per-row (N,) vector or a full (N, C) tensor, from anything that broadcasts
    to ``shape`` (N, C); (N,) and (N, 1) are per row."""
    if w is None:
        return None
    N = shape[0]
    if len(shape) == 2 and (tuple(w.shape) in ((N,), (N, 1))):
        return _f32(w.reshape(N))
    if len(shape) == 1 and tuple(w.shape) == (N,):
        return _f32(w)
    return _f32(w.expand(shape))


def sigmoid_focal(x, target, weight, a_pos, a_neg, gamma, reduction, backend="triton"):
    """Sigmoid focal loss (see the core for the formula); x (N, C); target int (N,) with
    C = background, or float (N, C); weight broadcastable to (N, C)."""
    w = _row_or_elem(weight, x.shape)
    t = _labels_or_float(target, x, cpu=backend == "cpu")
    ap, an = _f32(a_pos), _f32(a_neg)
    if backend == "cpu":
        from .cpu import _SigmoidFocalCPU, _SigmoidFocalSoftCPU
        fn = _SigmoidFocalSoftCPU if t.is_floating_point() else _SigmoidFocalCPU
        return fn.apply(x.contiguous().to(torch.float32), t, w, ap, an, float(gamma), reduction)
    return _triton_ops()._SigmoidFocal.apply(x.contiguous(), t, w, ap, an, float(gamma),
                                             reduction)


def softmax_focal(x, labels, weight, a, gamma, ignore_index, reduction):
    """Softmax focal loss over rows of x (N, C); labels (N,); weight (N,) or None;
    a (C,) or None. reduction "none" gives the per-row loss (0 where ignored)."""
    return _triton_ops()._SoftmaxFocal.apply(
        x.contiguous(), labels.detach().to(torch.int64).contiguous(), _f32(weight), _f32(a),
        float(gamma), int(ignore_index), reduction)


def _edges(edges):
    return edges.detach().to(torch.float32).contiguous()


def ghm_sigmoid(x, target, label_weight, edges, weigh, reduction, backend="triton"):
    """Sigmoid GHM-C: sum (or elementwise) of w[bin(|p - t|)] * BCE(x, t) over valid
    elements (label_weight > 0). edges (bins + 1,) as the core's buffer."""
    bins = edges.numel() - 1
    lw = _row_or_elem(label_weight, x.shape)
    t = _labels_or_float(target, x, cpu=backend == "cpu")
    if backend == "cpu":
        from .cpu import _GHMCSigmoidCPU
        return _GHMCSigmoidCPU.apply(x.contiguous().to(torch.float32), t, lw, _edges(edges), bins,
                                     weigh, reduction)
    return _triton_ops()._GHMElem.apply(x.contiguous(), t, lw, _edges(edges), bins, 0, 0.0,
                                        weigh, reduction)


def ghm_softmax(x, labels, label_weight, edges, ignore_index, weigh, reduction):
    """Softmax GHM-C over rows: g = 1 - p_t, loss = cross-entropy, rows valid where the
    label is not ignore_index and label_weight > 0."""
    bins = edges.numel() - 1
    return _triton_ops()._GHMRows.apply(
        x.contiguous(), labels.detach().to(torch.int64).contiguous(), _f32(label_weight),
        _edges(edges), bins, int(ignore_index), weigh, reduction)


def ghm_asl1(x, target, label_weight, edges, mu, weigh, reduction):
    """GHM-R: w[bin(|d| / sqrt(d^2 + mu^2))] * (sqrt(d^2 + mu^2) - mu), d = x - target."""
    bins = edges.numel() - 1
    shape = x.shape if x.dim() == 2 else (x.numel(),)
    x2 = x.reshape(shape)
    lw = _row_or_elem(label_weight.reshape(shape) if label_weight is not None and
                      label_weight.shape == x.shape else label_weight, shape)
    out = _triton_ops()._GHMElem.apply(x2.contiguous(), target.detach().reshape(shape).contiguous(),
                                       lw, _edges(edges), bins, 1, float(mu), weigh, reduction)
    return out.reshape(x.shape) if reduction == "none" else out
