"""Gradient Harmonizing Mechanism losses (Li et al., "Gradient Harmonized Single-stage
Detector", AAAI 2019) and the Authentic Smooth L1 loss."""
from typing import Optional, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from . import collective
from .checks import (REDUCTIONS, check_avg_factor, check_bool, check_choice, check_floating,
                      check_int, check_number, check_weight, compute_dtype)
from .focal import (IMPLS, _as_sigmoid_target, _bce, _check_softmax_labels, _dispatch,
                    _fast_sigmoid_target, _is_sigmoid_labels, _softmax_focal_reference)
from .reduce import weight_reduce_loss


def _asl1_reference(pred: Tensor, target: Tensor, mu: float) -> Tensor:
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
    loss = _asl1_reference(pred.to(dt), target.to(dt), m)
    if weight is not None:
        _check_broadcast("weight", weight, loss.shape)
    return weight_reduce_loss(loss, weight, reduction, avg_factor)


def _check_broadcast(name: str, w, shape) -> None:
    check_weight(name, w, shape)


class _GHM(nn.Module):
    """Shared GHM machinery: gradient-density bins, EMA state, distributed counting.

    Per call, over the valid elements (label_weight > 0) only, for all ranks together:
        bin(g)  = i with edges[i] <= g < edges[i+1], edges = i / bins (the last widened)
        count_i = number of valid elements in bin i;  n = number of non-empty bins
        density = count (momentum 0) or acc, the EMA of count (momentum m > 0)
        weight  = tot / (density[bin(g)] * n),  0 for invalid elements
    and the loss is sum(weight * loss) / tot (reduction "mean", avg_factor None).

    EMA update (``ema="nonempty"``, default, as mmdet): acc_i = m acc_i + (1 - m) count_i
    only for bins with count_i > 0; other bins keep their value. ``ema="all"``: the plain
    EMA over every bin. ``acc_sum`` is a registered buffer (present when momentum > 0, as in
    mmdet, so state dicts are interchangeable) and is saved in checkpoints.

    Distributed (``distributed="auto"`` or True, torch.distributed initialised, world > 1):
    counts and tot are all-reduced, so all ranks bin by the global density and keep equal
    EMA state; the per-rank "mean" is sum_rank(weight * loss) / (tot_global / world), so the
    mean of the ranks' losses (what DDP's gradient averaging optimises) equals the loss of
    one process over the concatenated batch. ``distributed=False`` keeps everything local.
    Runs without host synchronisation (no .item(), no masks, no loop over bins).

    Counts are exact integers on every path (int64; float64 for the all-reduce and the EMA,
    exact to 2^53 per bin). NaN logits: NaN in, NaN out. A NaN g is counted in no bin, so
    it changes neither the other elements' weights nor the EMA; the element gets weight 0,
    its loss and gradient stay NaN (NaN * 0) and a reduced loss is NaN. It still counts in
    tot (GHM-C: valid elements; GHM-R: the sum of label weights).
    """

    def __init__(self, bins, momentum, loss_weight, reduction, distributed, ema, impl,
                 last_edge):
        super().__init__()
        self.bins = bins = check_int("bins", bins, lo=1)
        self.momentum = check_number("momentum", momentum, lo=0.0, hi=1.0, hi_open=True)
        self.loss_weight = check_number("loss_weight", loss_weight)
        check_choice("reduction", reduction, REDUCTIONS)
        self.reduction = reduction
        check_choice("distributed", distributed, ("auto", True, False))
        self.distributed = distributed
        check_choice("ema", ema, ("nonempty", "all"))
        self.ema = ema
        check_choice("impl", impl, IMPLS)
        self.impl = impl  # "auto" | "reference" | "fused": see focal._dispatch
        edges = torch.arange(bins + 1).float() / bins
        edges[-1] = last_edge(edges[-1])
        self.register_buffer("edges", edges)
        if self.momentum > 0:
            # float64: the EMA of counts stays exact far beyond 2^24 per bin
            self.register_buffer("acc_sum", torch.zeros(bins, dtype=torch.float64))

    def _apply(self, fn, *args, **kwargs):
        # model.half() / .to(dtype) must not round the EMA state: keep acc_sum in float64
        super()._apply(fn, *args, **kwargs)
        acc = self._buffers.get("acc_sum")
        if acc is not None and acc.dtype != torch.float64:
            self._buffers["acc_sum"] = acc.to(torch.float64)
        return self

    def _follow(self, pred: Tensor) -> None:
        """Moves the bin edges and the EMA state to pred's device when the module sits on
        another (as mmdet's GHMC, a module left on the CPU takes CUDA logits); the EMA
        state carries over."""
        if self.edges.device != pred.device:
            for k, b in self._buffers.items():
                if b is not None:
                    self._buffers[k] = b.to(pred.device)

    def _reduction(self, reduction_override):
        check_choice("reduction_override", reduction_override, (None,) + REDUCTIONS)
        return reduction_override or self.reduction

    def _world(self) -> int:
        if self.distributed is False or not (dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size()

    def _weights(self, g: Tensor, valid: Tensor, tot: Tensor):
        """Per-element GHM weights (no grad) and the global tot; ``valid`` is a 0/1 float."""
        idx, counts, binned = self._bin_counts(g, valid)
        per_bin, tot, world = self._per_bin(counts, tot)
        w = torch.where(binned, per_bin[idx], per_bin.new_zeros(()))
        return w.to(g.dtype), tot, world

    def _bin_counts(self, g: Tensor, valid: Tensor):
        """The bin of every element, the number of binned elements per bin, exact (int64),
        and which elements were binned: (idx shaped like g, counts (bins,), binned).
        An element is binned when it is valid and its g is not NaN: a NaN logit lands in
        no bin, so it changes no other element's weight, and its own loss (NaN * weight 0)
        stays NaN. The one binning routine of the reference path; the fast paths count
        the same way."""
        idx = torch.bucketize(g, self.edges[1:-1].to(g.dtype), right=True)
        binned = (valid > 0) & ~torch.isnan(g)
        counts = torch.zeros(self.bins, dtype=torch.int64, device=g.device)
        counts.scatter_add_(0, idx.flatten(), binned.flatten().long())
        return idx, counts, binned

    def _per_bin(self, counts: Tensor, tot: Tensor):
        """Bin counts of this call (int64, exact) -> per-bin weight (all-reduce, EMA
        update), tot, world. Counts, tot and the EMA are combined in float64, exact for
        counts up to 2^53; the weights come back in float64, tot in float32."""
        world = self._world()
        counts = counts.to(torch.float64)
        tot = tot.to(torch.float64)
        if world > 1:
            collective.check_call(self)  # same call, same settings on every rank, or an error
            stats = torch.cat([counts, tot.reshape(1)])
            dist.all_reduce(stats)
            counts, tot = stats[:-1], stats[-1]
        tot = tot.clamp_min(1.0)
        nonempty = counts > 0
        if self.momentum > 0:
            m = self.momentum
            acc = self.acc_sum
            new = m * acc.double() + (1 - m) * counts
            acc.copy_(torch.where(nonempty, new, acc.double()) if self.ema == "nonempty" else new)
            density = acc.double()
        else:
            density = counts
        n = nonempty.sum().clamp_min(1)
        per_bin = tot / density / n  # inf/nan only in empty bins, which no valid element uses
        return per_bin, tot.float(), world

    def _fused(self, run, tot: Tensor, reduction, avg_factor):
        """A fast path: ``run(weigh)`` returns the GHM-weighted loss sum (or elementwise
        loss for reduction "none"), calling ``weigh(counts) -> per-bin weights`` once."""
        st = {}

        def weigh(counts):
            per_bin, st["tot"], st["world"] = self._per_bin(counts, tot)
            return per_bin

        out = run(weigh, "none" if reduction == "none" else "sum")
        if reduction != "none":
            if avg_factor is None and reduction == "mean":
                avg_factor = st["tot"] / st["world"] if st["world"] > 1 else st["tot"]
            if reduction == "mean":
                out = out / (avg_factor + torch.finfo(torch.float32).eps)
        return self.loss_weight * out

    def _reduce(self, loss, w, tot, world, reduction, avg_factor):
        if avg_factor is None and reduction == "mean":
            avg_factor = tot / world if world > 1 else tot
        if reduction == "sum":
            avg_factor = None
        return self.loss_weight * weight_reduce_loss(loss, w, reduction, avg_factor)


def _label_weight(label_weight, shape, like: Tensor) -> Tensor:
    """label_weight of shape ``shape``, (N,) per row (broadcast along columns) or None (all 1)."""
    if label_weight is None:
        return like.new_ones(shape)
    check_weight("label_weight", label_weight)
    lw = label_weight
    if len(shape) >= 2 and lw.dim() == 1 and lw.shape[0] == shape[0]:
        lw = lw.view(-1, *([1] * (len(shape) - 1)))
    _check_broadcast("label_weight", lw, shape)
    return lw.to(like.dtype).expand(shape)


def _valid_count(lw: Optional[Tensor], shape, like: Tensor) -> Tensor:
    """Number of valid (label_weight > 0) elements of ``shape``; lw None, (N,) per row, or
    broadcastable to ``shape``."""
    if lw is None:
        return torch.tensor(shape[0] * shape[1], dtype=torch.int64, device=like.device)
    if lw.dim() == 1 and len(shape) == 2:
        return (lw > 0).sum() * shape[1]
    return (lw > 0).sum()


class GHMC(_GHM):
    """GHM-C: classification loss weighted by the inverse gradient density.

    ``use_sigmoid=True`` (mmdet's GHMC): per element g = |sigmoid(x) - y|, loss = BCE with
    logits. ``use_sigmoid=False`` (e.g. a Faster R-CNN RoI head): per sample g = 1 - p_t
    (half the L1 norm of the softmax-CE gradient), loss = softmax cross-entropy.
    Binning, momentum, distributed and normalisation: see ``_GHM``. label_weight only
    marks validity (> 0), as in mmdet; its values do not scale the loss.

    Values equal mmdet 3.3's GHMC for the same arguments and call sequence, where mmdet
    accepts them; beyond mmdet: label_weight is optional, avg_factor replaces the mean's
    denominator tot, reduction "sum" gives the plain weighted sum (mmdet raises), softmax.

    Args:
        bins: number of equal bins over [0, 1]; g = 1 falls in the last.
        momentum: EMA factor of the bin counts in [0, 1); 0 = counts of the current batch.
        ignore_index: softmax only, targets with this value are invalid.
        ema, distributed: see ``_GHM``.
    """

    def __init__(self, bins: int = 10, momentum: float = 0.0, use_sigmoid: bool = True,
                 loss_weight: float = 1.0, reduction: str = "mean",
                 distributed: Union[str, bool] = "auto", *, ema: str = "nonempty",
                 ignore_index: int = -100, impl: str = "auto"):
        super().__init__(bins, momentum, loss_weight, reduction, distributed, ema, impl,
                         last_edge=lambda e: e + 1e-6)
        self.use_sigmoid = check_bool("use_sigmoid", use_sigmoid)
        self.ignore_index = check_int("ignore_index", ignore_index)

    def _fast_forward(self, backend, pred, target, label_weight, avg_factor, reduction):
        """A fast path (Triton, or the CPU fast path for sigmoid)."""
        from .. import kernels as K
        N, C = pred.shape
        if self.use_sigmoid:
            t = _fast_sigmoid_target(pred, target, _is_sigmoid_labels(pred, target))
            lw = None
            if label_weight is not None:
                lw = _label_weight(label_weight, (N, C), pred)   # validates the shape
                if tuple(label_weight.shape) in ((N,), (N, 1)):
                    lw = label_weight.reshape(N)
            tot = _valid_count(lw, (N, C), pred)
            return self._fused(lambda weigh, red: K.ghm_sigmoid(
                pred, t, lw, self.edges, weigh, red, backend=backend), tot, reduction,
                avg_factor)
        ig = self.ignore_index
        self._check_softmax_target(target, N, C)
        lw = _label_weight(label_weight, (N,), pred) * (target != ig)
        tot = (lw > 0).sum()
        return self._fused(lambda weigh, red: K.ghm_softmax(
            pred, target, lw, self.edges, ig, weigh, red), tot, reduction, avg_factor)

    def _check_softmax_target(self, target: Tensor, N: int, C: int) -> None:
        if target.shape != (N,) or target.is_floating_point() or target.dtype == torch.bool:
            raise ValueError(f"target must be integer class indices of shape ({N},) with "
                             f"use_sigmoid=False, got shape {tuple(target.shape)} dtype {target.dtype}")
        _check_softmax_labels(target, C, self.ignore_index)

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
        N, C = pred.shape
        if not isinstance(target, Tensor):
            raise ValueError(f"target must be a torch.Tensor, got {type(target).__name__}")
        # fast paths: sigmoid on Triton or the CPU (any target form); softmax on Triton only
        backend = _dispatch("GHMC", self.impl, pred, cpu=self.use_sigmoid,
                            grad_args={"target": target})
        if backend != "reference":
            return self._fast_forward(backend, pred, target, label_weight, avg_factor,
                                      reduction)
        loss, g, lw = self._elements(pred, target, label_weight)
        valid = (lw > 0).to(loss.dtype)
        with torch.no_grad():
            w, tot, world = self._weights(g, valid, self._total(lw))
        return self._reduce(loss, w.to(loss.dtype), tot, world, reduction, avg_factor)

    def _any_shape(self, pred, target, label_weight, avg_factor, reduction):
        """Sigmoid logits other than (N, C): the (M, K) rows of a flat view (K the last dim)."""
        if not isinstance(target, Tensor) or target.shape != pred.shape:
            got = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
            raise ValueError(f"target must be shaped like pred {tuple(pred.shape)}, got {got}")
        K = pred.shape[-1] if pred.dim() > 1 else 1
        rows = (-1, K) if K > 0 else (0, 1)
        lw = label_weight
        if lw is not None:
            lw = _label_weight(lw, pred.shape, pred).reshape(rows)
        out = self.forward(pred.reshape(rows), target.reshape(rows), lw, avg_factor, reduction)
        return out.reshape(pred.shape) if reduction == "none" else out

    def _elements(self, pred: Tensor, target: Tensor, label_weight: Optional[Tensor]):
        """The reference math per element: (loss, g, lw). loss: BCE (N, C) or softmax CE
        (N,) in the compute dtype, differentiable; g: its gradient norm (no grad); lw: the
        label weight expanded to loss's shape, 0 where invalid (> 0 marks valid)."""
        N, C = pred.shape
        x = pred.to(compute_dtype(pred))
        if self.use_sigmoid:
            t = _as_sigmoid_target(x, target)
            lw = _label_weight(label_weight, (N, C), x)
            g = (x.detach().sigmoid() - t).abs()
            loss = _bce(x, t)
        else:
            self._check_softmax_target(target, N, C)
            ig = self.ignore_index
            lw = _label_weight(label_weight, (N,), x) * (target != ig)
            loss = _softmax_focal_reference(x, target.long(), x.new_ones(C), 0.0, ig)  # = CE
            g = 1 - torch.exp(-loss.detach())  # 1 - p_t
        return loss, g, lw

    @staticmethod
    def _total(lw: Tensor) -> Tensor:
        """GHM-C's tot: the number of valid elements."""
        return (lw > 0).sum()


class GHMR(_GHM):
    """GHM-R: Authentic Smooth L1 (``asl1_loss``) weighted by the inverse density of
    g = |d| / sqrt(d^2 + mu^2), d = pred - target. Binning, momentum, distributed and
    normalisation: see ``_GHM``; tot = sum of label_weight (mmdet), which is the number of
    valid elements for 0/1 label weights. label_weight otherwise only marks validity.

    Equals mmdet 3.3's GHMR when avg_factor is None (mmdet ignores avg_factor; here it
    replaces tot as the mean's denominator). label_weight is optional (None = all valid).
    """

    def __init__(self, mu: float = 0.02, bins: int = 10, momentum: float = 0.0,
                 loss_weight: float = 1.0, reduction: str = "mean",
                 distributed: Union[str, bool] = "auto", *, ema: str = "nonempty",
                 impl: str = "auto"):
        super().__init__(bins, momentum, loss_weight, reduction, distributed, ema, impl,
                         last_edge=lambda e: e * 0 + 1e3)
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
        if _dispatch("GHMR", self.impl, pred, grad_args={"target": target}) == "triton":
            from .. import kernels as K
            lw = _label_weight(label_weight, pred.shape, pred)
            return self._fused(lambda weigh, red: K.ghm_asl1(
                pred, target, lw, self.edges, self.mu, weigh, red), lw.sum(), reduction,
                avg_factor)
        loss, g, lw = self._elements(pred, target, label_weight)
        with torch.no_grad():
            valid = (lw > 0).to(loss.dtype)
            w, tot, world = self._weights(g, valid, self._total(lw))
        return self._reduce(loss, w.to(loss.dtype), tot, world, reduction, avg_factor)

    def _elements(self, pred: Tensor, target: Tensor, label_weight: Optional[Tensor]):
        """The reference math per element: (loss, g, lw). loss: ASL1 in the compute dtype,
        differentiable; g = |d| / sqrt(d^2 + mu^2) (no grad); lw: the label weight expanded
        to pred's shape (> 0 marks valid)."""
        dt = compute_dtype(pred)
        x, y = pred.to(dt), target.to(dt)
        lw = _label_weight(label_weight, x.shape, x)
        mu = self.mu
        loss = _asl1_reference(x, y, mu)
        with torch.no_grad():
            d = x - y
            g = d.abs() / torch.sqrt(mu * mu + d * d)
        return loss, g, lw

    @staticmethod
    def _total(lw: Tensor) -> Tensor:
        """GHM-R's tot: the sum of the label weights (mmdet)."""
        return lw.sum()
