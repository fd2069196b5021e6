"""What a GHM loss does while it trains, per bin: the gradient density it weights by, and
the share of the loss and of the gradient that each bin of g receives.

:class:`GHMStats` finds the GHM modules of a model (instances of the core ``GHMC`` /
``GHMR``, which the mmdet adapter subclasses and the detectron2 adapter wraps) and, between
``start()`` and ``stop()``, records every call of them with a forward hook. Outside that
window no hook is registered, so the losses run at full speed. The framework hooks
(``focal_plugins.mmdet.hooks``, ``focal_plugins.detectron2.hooks``) open the window on the
iterations they log.

Per call, over the valid elements (label_weight > 0), with the module's own ``elements``
(loss, g) and ``bin_counts`` (``focal_plugins.core.density``'s binning), and w the GHM
weight of each element:
    count_i = number of elements in bin i
    loss_i  = the part of the call's output contributed by bin i (sum of w * loss)
    grad_i  = sum over bin i of |d output / d pred| per element, which is w * g times the
              call's scale: g = |sigmoid(x) - y| for GHM-C sigmoid, |d| / sqrt(d^2 + mu^2)
              for GHM-R; for GHM-C softmax, g = 1 - p_t is half the L1 norm of the gradient
              w.r.t. the logit row (a factor the shares do not see)
Both use the output the module returned (so loss_weight, avg_factor and the reduction are
whatever the call used). An iteration's statistics sum over its calls (mmdet calls a
dense head's loss once per FPN level; detectron2 once), and per module:
    density    = the state the last call weighted by: the EMA ``acc_sum`` (momentum > 0),
                 else that call's counts
    count      = count summed over the calls
    loss_share = loss / sum(loss);  grad_share = grad / sum(grad)   (zeros if the sum is 0)
Distributed (a module whose counts are all-reduced): counts are all-reduced per call as the
loss does, and the loss and gradient sums once per module in ``stop()``, so every rank
holds the statistics of the global batch; ``stop()`` must then run on every rank.
"""
import inspect
from typing import Dict, List, Tuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .density import GHMBase

__all__ = ["GHMStats", "ghm_modules", "call_stats", "scalars", "histogram", "KEYS"]

KEYS = ("density", "count", "loss_share", "grad_share")


def ghm_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """(name, module) for every GHM loss module in ``model``, in ``named_modules`` order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, GHMBase)]


def _inputs(module: GHMBase, args, kwargs):
    """pred, target, label weight of a call, whatever the forward calls its third argument."""
    sig = inspect.signature(module.forward)
    bound = sig.bind(*args, **kwargs).arguments
    names = list(sig.parameters)
    return bound[names[0]], bound[names[1]], bound.get(names[2])


@torch.no_grad()
def call_stats(module: GHMBase, args, kwargs, output: Tensor) -> Dict[str, Tensor]:
    """Per-bin statistics of one call: ``count``, ``loss``, ``grad`` (float64, (bins,)) and
    ``density`` (float32, the density the call weighted by). See the module doc."""
    pred, target, lw = _inputs(module, args, kwargs)
    loss, g, lw = module.elements(pred.detach(), target, lw)
    idx, counts, valid = module.bin_counts(g, lw > 0)   # NaN elements: in no bin
    if module.world_size() > 1:
        dist.all_reduce(counts)
    density = module.acc_sum.detach().clone() if module.momentum > 0 else counts
    # The GHM weight is constant per bin: tot / (density_i n). Up to the call's factor
    # tot / n, which the scale below restores from the output, bin i's part of the loss is
    # sum_bin(loss) / density_i, and of the gradient sum_bin(g) / density_i.
    inv = torch.where(counts > 0, 1.0 / density.double(), torch.zeros_like(density.double()))

    def per_bin(v):
        v = torch.where(valid, v, torch.zeros((), dtype=v.dtype, device=v.device))
        return torch.zeros(module.bins, dtype=torch.float64, device=g.device).scatter_add_(
            0, idx.flatten(), v.flatten().double()) * inv

    loss_b, grad_b = per_bin(loss.detach()), per_bin(g)
    wsum = loss_b.sum()
    out = output.detach().double().sum()
    scale = torch.where(wsum != 0, out / wsum, torch.zeros_like(wsum))
    return dict(count=counts.double(), loss=scale * loss_b, grad=scale.abs() * grad_b,
                density=density.float())


def _share(v: Tensor) -> Tensor:
    s = v.sum()
    return v / s if s > 0 else torch.zeros_like(v)


class GHMStats:
    """Records the GHM modules of ``model`` between :meth:`start` and :meth:`stop`.

    ``names`` maps a module to the name it is logged under (default: its ``named_modules``
    name). :meth:`stop` returns ``{name: {key: (bins,) float CPU tensor}}`` for the modules
    called since :meth:`start`, keys :data:`KEYS`.
    """

    def __init__(self, model: nn.Module, rename=None):
        self.modules = [((rename(n) if rename else n), m) for n, m in ghm_modules(model)]
        self._handles = []
        self._sums: Dict[str, Dict[str, Tensor]] = {}

    @property
    def active(self) -> bool:
        return bool(self._handles)

    def start(self) -> None:
        if self.active:
            return
        self._sums = {}
        for name, m in self.modules:
            self._handles.append(m.register_forward_hook(self._hook(name), with_kwargs=True))

    def _hook(self, name):
        def hook(module, args, kwargs, output):
            s = call_stats(module, args, kwargs, output)
            acc = self._sums.get(name)
            if acc is None:
                self._sums[name] = s
            else:
                for k in ("count", "loss", "grad"):
                    acc[k] = acc[k] + s[k]
                acc["density"] = s["density"]
        return hook

    def stop(self) -> Dict[str, Dict[str, Tensor]]:
        for h in self._handles:
            h.remove()
        self._handles = []
        out = {}
        for name, m in self.modules:
            s = self._sums.get(name)
            if s is None:
                continue
            sums = torch.stack([s["loss"], s["grad"]])
            if m.world_size() > 1:  # the counts are global already
                dist.all_reduce(sums)
            loss, grad = sums.cpu()
            out[name] = dict(density=s["density"].cpu(), count=s["count"].cpu().float(),
                             loss_share=_share(loss).float(), grad_share=_share(grad).float())
        self._sums = {}
        return out


def scalars(stats: Dict[str, Dict[str, Tensor]], prefix: str = "ghm") -> Dict[str, float]:
    """``{f"{prefix}/{name}/{key}_{i}": value}`` for every module, key and bin."""
    return {f"{prefix}/{name}/{key}_{i}": float(v)
            for name, s in stats.items() for key in KEYS for i, v in enumerate(s[key])}


def histogram(values: Tensor, bins: int) -> dict:
    """TensorBoard's raw histogram (``add_histogram_raw`` arguments, without tag and step)
    of per-bin ``values`` over g in [0, 1] in ``bins`` equal bins (bin centres stand for
    the values of g inside a bin)."""
    v = values.double().cpu()
    limits = (torch.arange(1, bins + 1, dtype=torch.float64) / bins)
    centre = limits - 0.5 / bins
    return dict(min=0.0, max=1.0, num=float(v.sum()), sum=float((v * centre).sum()),
                sum_squares=float((v * centre * centre).sum()),
                bucket_limits=limits.tolist(), bucket_counts=v.tolist())
