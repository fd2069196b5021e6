"""Fast paths behind the core losses: Triton kernels (CUDA, or CPU tensors under
``TRITON_INTERPRET=1``) and chunked CPU code, found through one table,
``FAST_PATHS[(loss, device type)]``, that the core reads with ``select``. This package
never calls back into the core: the GHM fast paths run in two steps with the core's
density in between.

Kernel-level API on plain tensors:

    sigmoid_focal(x, target, weight, a_pos, a_neg, gamma, reduction, backend)
    softmax_focal(x, labels, weight, a, gamma, ignore_index, reduction)
    ghm_sigmoid_pass(x, target, label_weight, edges, backend)        -> GHMPass
    ghm_softmax_pass(x, labels, label_weight, edges, ignore_index)   -> GHMPass
    ghm_asl1_pass(x, target, label_weight, edges, mu)                -> GHMPass
    GHMPass.counts: this call's bin counts (bins,) int64
    GHMPass.apply(wb, reduction): the loss with per-bin weights wb (bins,) fp32

``reduction`` is "none" (elementwise / per-row loss) or "sum"; means and avg_factor are
the caller's division. Gradients flow to ``x`` only. The loss comes back in fp32; the
gradient in x's dtype (fp16/bf16 read natively on GPU). ``ghm_sigmoid``, ``ghm_softmax``
and ``ghm_asl1`` compose the two steps with a ``weigh(counts) -> (bins,)`` function (tests).

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
    if t is None:
        return None
    return (t.detach() if t.requires_grad else t).to(torch.float32).contiguous()


def _alphas(a_pos, a_neg, x):
    """(C,) fp32 alphas, from tensors or from one float each."""
    if isinstance(a_pos, torch.Tensor):
        return _f32(a_pos), _f32(a_neg)
    C = x.shape[1] if x.dim() == 2 else 1
    return (torch.full((C,), float(a_pos), device=x.device),
            torch.full((C,), float(a_neg), device=x.device))


def _labels_or_float(target, x, cpu=False):
    """Integer labels as int64; float targets as they are (the Triton kernels read fp32,
    fp16 and bf16 targets natively; the CPU path computes in fp32)."""
    if target.requires_grad:
        target = target.detach()
    if not target.is_floating_point():
        return target.to(torch.int64).contiguous()
    if cpu or target.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        target = target.to(torch.float32)
    return target.contiguous()


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
    C = background, or float (N, C); weight broadcastable to (N, C); a_pos, a_neg (C,)
    tensors, or floats where every class has the same."""
    w = _row_or_elem(weight, x.shape)
    t = _labels_or_float(target, x, cpu=backend == "cpu")
    floats = not isinstance(a_pos, torch.Tensor)
    if backend == "cpu":
        from .cpu import _SigmoidFocalCPU, _SigmoidFocalSoftCPU
        labels = not t.is_floating_point()
        ap, an = (a_pos, a_neg) if floats and labels else _alphas(a_pos, a_neg, x)
        fn = _SigmoidFocalCPU if labels else _SigmoidFocalSoftCPU
        return fn.apply(x.contiguous().to(torch.float32), t, w, ap, an, float(gamma), reduction)
    ap, an = _alphas(a_pos, a_neg, x)
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


class GHMPass:
    """The first pass of a fused GHM call: ``counts`` (bins,) int64, exact, of this call's
    binned elements, and ``apply(wb, reduction)``, the second pass, which gives the loss
    (autograd to x) with per-bin weights ``wb`` ((bins,) fp32, 0 in empty bins)."""

    __slots__ = ("counts", "_finish")

    def __init__(self, counts, finish):
        self.counts, self._finish = counts, finish

    def apply(self, wb, reduction):
        return self._finish(wb, reduction)


def ghm_sigmoid_pass(x, target, label_weight, edges, backend="triton"):
    """Sigmoid GHM-C: w[bin(|p - t|)] * BCE(x, t) over valid elements (label_weight > 0).
    edges (bins + 1,) as the core's buffer."""
    bins = edges.numel() - 1
    lw = _row_or_elem(label_weight, x.shape)
    t = _labels_or_float(target, x, cpu=backend == "cpu")
    e = _edges(edges)
    if backend == "cpu":
        from . import cpu
        x32 = x.contiguous().to(torch.float32)
        need_grad = torch.is_grad_enabled() and x32.requires_grad
        counts, d, idx, nbce = cpu.ghmc_sigmoid_hist(x32.detach(), t, lw, e, need_grad)
        return GHMPass(counts, lambda wb, red: cpu._GHMCSigmoidCPU.apply(x32, t, d, idx, wb,
                                                                         red, nbce))
    T = _triton_ops()
    xc = x.contiguous()
    counts, sums = T.K.ghm_elem_hist(xc.detach(), t, lw, e, bins, 0)
    return GHMPass(counts, lambda wb, red: T._GHMElem.apply(xc, t, lw, e, wb, sums, bins, 0,
                                                            0.0, red))


def ghm_softmax_pass(x, labels, label_weight, edges, ignore_index):
    """Softmax GHM-C over rows: g = 1 - p_t, loss = cross-entropy, rows valid where the
    label is not ignore_index and label_weight > 0."""
    bins = edges.numel() - 1
    T = _triton_ops()
    xc, lab, lw, e = (x.contiguous(), labels.detach().to(torch.int64).contiguous(),
                      _f32(label_weight), _edges(edges))
    counts, sums = T.K.ghm_rows_hist(xc.detach(), lab, lw, e, bins, int(ignore_index))
    return GHMPass(counts, lambda wb, red: T._GHMRows.apply(xc, lab, lw, e, wb, sums, bins,
                                                            int(ignore_index), red))


def ghm_asl1_pass(x, target, label_weight, edges, mu):
    """GHM-R: w[bin(|d| / sqrt(d^2 + mu^2))] * (sqrt(d^2 + mu^2) - mu), d = x - target."""
    bins = edges.numel() - 1
    shape = x.shape if x.dim() == 2 else (x.numel(),)
    x2 = x.reshape(shape).contiguous()
    lw = _row_or_elem(label_weight.reshape(shape) if label_weight is not None and
                      label_weight.shape == x.shape else label_weight, shape)
    t2 = target.detach().reshape(shape).contiguous()
    e = _edges(edges)
    T = _triton_ops()
    counts, sums = T.K.ghm_elem_hist(x2.detach(), t2, lw, e, bins, 1, float(mu))

    def finish(wb, red):
        out = T._GHMElem.apply(x2, t2, lw, e, wb, sums, bins, 1, float(mu), red)
        return out.reshape(x.shape) if red == "none" else out
    return GHMPass(counts, finish)


def _weighed(p, weigh, reduction):
    with torch.no_grad():
        wb = weigh(p.counts).to(torch.float32)
        wb = torch.where(p.counts > 0, wb, torch.zeros((), dtype=wb.dtype, device=wb.device))
    return p.apply(wb, reduction)


def ghm_sigmoid(x, target, label_weight, edges, weigh, reduction, backend="triton"):
    """``ghm_sigmoid_pass`` then ``apply`` with ``weigh(counts)`` (tests)."""
    return _weighed(ghm_sigmoid_pass(x, target, label_weight, edges, backend), weigh,
                    reduction)


def ghm_softmax(x, labels, label_weight, edges, ignore_index, weigh, reduction):
    """``ghm_softmax_pass`` then ``apply`` with ``weigh(counts)`` (tests)."""
    return _weighed(ghm_softmax_pass(x, labels, label_weight, edges, ignore_index), weigh,
                    reduction)


def ghm_asl1(x, target, label_weight, edges, mu, weigh, reduction):
    """``ghm_asl1_pass`` then ``apply`` with ``weigh(counts)`` (tests)."""
    return _weighed(ghm_asl1_pass(x, target, label_weight, edges, mu), weigh, reduction)


def _cpu(fn):
    def run(*args):
        return fn(*args, backend="cpu")
    return run


# (loss, device type) -> (backend, fast path). "triton" entries run where ``triton_usable``;
# "cpu" where ``cpu_usable``. Under TRITON_INTERPRET=1, impl="fused" on a CPU tensor takes
# the loss's "cuda" entry (the Triton kernels, interpreted: tests).
FAST_PATHS = {
    ("sigmoid_focal", "cuda"): ("triton", sigmoid_focal),
    ("sigmoid_focal", "cpu"): ("cpu", _cpu(sigmoid_focal)),
    ("softmax_focal", "cuda"): ("triton", softmax_focal),
    ("ghmc_sigmoid", "cuda"): ("triton", ghm_sigmoid_pass),
    ("ghmc_sigmoid", "cpu"): ("cpu", _cpu(ghm_sigmoid_pass)),
    ("ghmc_softmax", "cuda"): ("triton", ghm_softmax_pass),
    ("ghmr", "cuda"): ("triton", ghm_asl1_pass),
}


def select(loss: str, x: torch.Tensor, fused: bool = False):
    """The fast path for ``loss`` on x's device that can run on x, or None."""
    dev = x.device.type
    if fused and dev == "cpu" and interpreter():
        entry = FAST_PATHS.get((loss, "cuda"))
        if entry is not None and triton_usable(x):
            return entry[1]
    entry = FAST_PATHS.get((loss, dev))
    if entry is None:
        return None
    backend, fn = entry
    usable = triton_usable(x) if backend == "triton" else cpu_usable(x)
    return fn if usable else None
