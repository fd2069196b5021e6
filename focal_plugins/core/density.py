r"""GHM gradient density (Li et al., "Gradient Harmonized Single-stage Detector", AAAI 2019):
the binning rule, exact bin counts, the EMA and the all-reduce that GHM-C and GHM-R weight
by, the stats hook records, and ``focal_plugins.tools.ghmr_mu`` reads.

The binning rule (the one statement that the reference, the CPU fast path and the Triton
kernels follow; ``core/tests/test_density.py`` and the kernel checks test them at every
edge). With ``bins`` equal bins and the float32 edges

    e_k = fl32(k / bins),  k = 0 .. bins    (e_bins widened: 1 + 1e-6 GHM-C, 1e3 GHM-R)

an element with gradient norm g falls in

    bin(g) = #{k in 1 .. bins - 1 : e_k <= g}      (in 0 .. bins - 1)

that is, e_i <= g < e_(i+1), the first bin open below, the last open above (g = 1 and
beyond in the last); comparisons are exact (g against the float32 edge, in g's dtype),
so floor(g * bins), which can round across an edge, is only a first guess. A NaN g
(NaN logit) is in no bin; so is an invalid element, one whose label weight is not > 0
(NaN label weights are invalid too).

Per call, over the binned elements of all ranks together:

    count_i = number of binned elements in bin i (int64, exact; float64 from here on)
    density = count (momentum 0), or acc, the EMA of count (momentum m > 0):
              acc_i <- m acc_i + (1 - m) count_i, only for bins with count_i > 0
              (``ema="nonempty"``, mmdet's), or for every bin (``ema="all"``)
    weight  = tot / (density[bin(g)] * n),  n = number of non-empty bins, 0 for elements
              in no bin

tot is GHM-C's number of valid elements or GHM-R's sum of label weights. Distributed:
counts and tot are all-reduced (summed) before the EMA, so every rank bins by the global
density and keeps the same EMA state. Before that all-reduce the ranks check that they make
the same call with the same settings (``collective.check_call``: a named error in bounded
time instead of a crashed or hung process).

Public API: ``bin_edges``, ``bin_index``, ``bin_counts``, ``world_size``,
``all_reduce_counts``, ``bin_weights``, and the module base ``GHMBase`` (its methods
``bin_counts``, ``bin_weights``, ``world_size``, ``elements``).
"""
from typing import Optional, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from . import collective
from .checks import REDUCTIONS, check_choice, check_int, check_number
from .inputs import IMPLS
from .reduce import weight_reduce_loss

__all__ = ["bin_edges", "bin_index", "bin_counts", "world_size", "all_reduce_counts",
           "bin_weights", "GHMBase", "GHMC_LAST_EDGE", "GHMR_LAST_EDGE"]

GHMC_LAST_EDGE = 1.0 + 1e-6   # float32: e_bins, above g's largest value 1
GHMR_LAST_EDGE = 1e3


def bin_edges(bins: int, last: float) -> Tensor:
    """The float32 edges e_k = fl32(k / bins), k = 0 .. bins, with e_bins = ``last``
    (computed as ``arange(bins + 1).float() / bins``: IEEE division rounds k / bins once)."""
    edges = torch.arange(bins + 1).float() / bins
    edges[-1] = last
    return edges


def bin_index(g: Tensor, edges: Tensor) -> Tensor:
    """bin(g) of the rule above for every element of g (int64, shaped like g); a NaN g gets
    some index here: ``bin_counts`` says which elements are binned."""
    return torch.bucketize(g, edges[1:-1].to(g.dtype), right=True)


def bin_counts(g: Tensor, valid: Tensor, edges: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """(idx shaped like g, counts (bins,) int64 exact, binned): the bin of every element,
    the number of binned elements per bin, and which elements are binned (``valid`` > 0 and
    g not NaN; ``valid`` bool or 0/1 float, shaped like g)."""
    bins = edges.numel() - 1
    idx = bin_index(g, edges)
    binned = (valid > 0) & ~torch.isnan(g)
    counts = torch.zeros(bins, dtype=torch.int64, device=g.device)
    counts.scatter_add_(0, idx.flatten(), binned.flatten().long())
    return idx, counts, binned


def world_size(distributed) -> int:
    """The number of ranks whose counts are summed: 1 with ``distributed=False`` or
    without an initialised process group, else its world size."""
    if distributed is False or not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


def all_reduce_counts(counts: Tensor, tot: Optional[Tensor] = None, world: int = 1):
    """Counts (and tot) as float64, summed over the ranks when ``world`` > 1 (one
    all-reduce). Returns (counts, tot) (tot None when not given)."""
    counts = counts.to(torch.float64)
    tot = None if tot is None else tot.to(torch.float64).reshape(())
    if world > 1:
        stats = counts if tot is None else torch.cat([counts, tot.reshape(1)])
        dist.all_reduce(stats)
        counts, tot = (stats, None) if tot is None else (stats[:-1], stats[-1])
    return counts, tot


def bin_weights(counts: Tensor, tot: Tensor, acc: Optional[Tensor] = None,
                momentum: float = 0.0, ema: str = "nonempty", world: int = 1):
    """Bin counts of this call (int64, this rank's) -> (per-bin weight float64 (bins,), 0 in
    empty bins; tot float32), after the all-reduce and the EMA update of ``acc`` (float64,
    in place; used when momentum > 0). Exact for counts up to 2^53 per bin."""
    counts, tot = all_reduce_counts(counts, tot, world)
    tot = tot.clamp_min(1.0)
    nonempty = counts > 0
    if momentum > 0:
        new = momentum * acc + (1 - momentum) * counts
        acc.copy_(torch.where(nonempty, new, acc) if ema == "nonempty" else new)
        density = acc
    else:
        density = counts
    n = nonempty.sum().clamp_min(1)
    per_bin = torch.where(nonempty, tot / density / n, 0.0)
    return per_bin, tot.float()


class GHMBase(nn.Module):
    """What GHM-C and GHM-R share: settings, the ``edges`` buffer and the EMA state
    ``acc_sum`` (a float64 buffer, present when momentum > 0, as in mmdet, so state dicts
    are interchangeable), and the density of this module's doc.

    ``edges`` stays float32 and ``acc_sum`` float64 under any module cast
    (``.half()``, ``.to(torch.bfloat16)``, ``.double()``): only their device follows, so
    the bin edges and the EMA are never rounded. Settings are validated here, once.
    Subclasses define ``elements(pred, target, label_weight) -> (loss, g, lw)``.
    """

    def __init__(self, bins, momentum, loss_weight, reduction, distributed, ema, impl,
                 last_edge: float):
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
        self.impl = impl  # "auto" | "reference" | "fused": see inputs.fast_path
        self.register_buffer("edges", bin_edges(bins, last_edge))
        if self.momentum > 0:
            # float64: the EMA of counts stays exact far beyond 2^24 per bin
            self.register_buffer("acc_sum", torch.zeros(bins, dtype=torch.float64))

    def _apply(self, fn, *args, **kwargs):
        # a dtype cast must not round the edges or the EMA state: keep their values and
        # dtypes, follow the device only
        keep = {k: self._buffers.get(k) for k in ("edges", "acc_sum")}
        super()._apply(fn, *args, **kwargs)
        for k, old in keep.items():
            new = self._buffers.get(k)
            if old is not None and new is not None and new.dtype != old.dtype:
                self._buffers[k] = old.to(new.device)
        return self

    # ---- the density (public)

    def world_size(self) -> int:
        """Ranks whose counts this module sums (see ``density.world_size``)."""
        return world_size(self.distributed)

    def bin_counts(self, g: Tensor, valid: Tensor):
        """``density.bin_counts`` with this module's edges: (idx, counts, binned)."""
        return bin_counts(g, valid, self.edges)

    def bin_weights(self, counts: Tensor, tot: Tensor):
        """Counts of this call -> (per-bin weight float64, tot float32, world), updating the
        EMA state (see ``density.bin_weights``)."""
        world = self.world_size()
        if world > 1:
            collective.check_call(self)  # same call, same settings on every rank, or an error
        per_bin, tot = bin_weights(counts, tot, self._buffers.get("acc_sum"), self.momentum,
                                   self.ema, world)
        return per_bin, tot, world

    def elements(self, pred: Tensor, target: Tensor, label_weight: Optional[Tensor]):
        """The reference math per element: (loss, g, lw); see the subclasses."""
        raise NotImplementedError

    # ---- per call

    def _follow(self, pred: Tensor) -> None:
        """Moves the bin edges and the EMA state to pred's device when the module sits on
        another (as mmdet's GHMC, a module left on the CPU takes CUDA logits); the EMA
        state carries over."""
        if self.edges.device != pred.device:
            for k, b in self._buffers.items():
                if b is not None:
                    self._buffers[k] = b.to(pred.device)

    def _reduction(self, reduction_override):
        if reduction_override is None:
            return self.reduction
        check_choice("reduction_override", reduction_override, REDUCTIONS)
        return reduction_override

    def _weights(self, g: Tensor, valid: Tensor, tot: Tensor):
        """Reference path: per-element GHM weights (no grad), the global tot, world."""
        idx, counts, binned = self.bin_counts(g, valid)
        per_bin, tot, world = self.bin_weights(counts, tot)
        w = torch.where(binned, per_bin[idx], per_bin.new_zeros(()))
        return w.to(g.dtype), tot, world

    def _run_fast(self, first_pass, tot: Tensor, reduction, avg_factor):
        """A fast path: ``first_pass`` (kernels' ``GHMPass``) holds this call's bin counts;
        the per-bin weights come from here, scaled by loss_weight and the mean's
        1 / (tot + eps) (constants of the call, folded into the (bins,) weights rather
        than applied to the output), then its ``apply`` gives the loss."""
        with torch.no_grad():
            per_bin, tot, world = self.bin_weights(first_pass.counts, tot)
            wb = per_bin.to(torch.float32)
            if reduction == "mean":
                if avg_factor is None:
                    avg_factor = tot / world if world > 1 else tot
                wb = wb * (self.loss_weight / (avg_factor + torch.finfo(torch.float32).eps))
            elif self.loss_weight != 1.0:
                wb = wb * self.loss_weight
        return first_pass.apply(wb, "none" if reduction == "none" else "sum")

    def _reduce(self, loss, w, tot, world, reduction, avg_factor):
        if avg_factor is None and reduction == "mean":
            avg_factor = tot / world if world > 1 else tot
        if reduction == "sum":
            avg_factor = None
        return self.loss_weight * weight_reduce_loss(loss, w, reduction, avg_factor)
