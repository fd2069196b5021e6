"""Per-bin GHM statistics computed independently of ``ghm_stats``: g from the paper's
definitions, bins by floor(g * bins), loss from an elementwise twin of each call, gradient
from autograd. Shared by the core and the framework hook tests."""
import copy

import torch
import torch.nn.functional as F

from focal_plugins.core import GHMC, GHMR


def g_of(module, x, y):
    if isinstance(module, GHMR):
        d = x - y
        return d.abs() / torch.sqrt(d * d + module.mu ** 2)
    if module.use_sigmoid:
        t = F.one_hot(y.long(), x.shape[1] + 1)[:, :-1].to(x.dtype) if y.dim() == 1 else y
        return (x.sigmoid() - t).abs()
    return 1 - x.softmax(1).gather(1, y.clamp_min(0)[:, None])[:, 0]


def valid_of(module, x, y, lw):
    shape = x.shape[:1] if isinstance(module, GHMC) and not module.use_sigmoid else x.shape
    v = torch.ones(shape, dtype=torch.bool) if lw is None else lw > 0
    if isinstance(module, GHMC) and not module.use_sigmoid:
        return v & (y != module.ignore_index)
    return v[:, None].expand(shape) if v.dim() == 1 and len(shape) == 2 else v.expand(shape)


def bin_of(module, g):
    return (g * module.bins).long().clamp(0, module.bins - 1)


def replay(module, calls):
    """Run ``module`` on ``calls`` ([(args, kwargs)], args = (pred, target[, weight])),
    changing its state as training would; returns (count, loss_share, grad_share,
    last_counts), float64."""
    bins = module.bins
    cnt, loss, grad = (torch.zeros(bins, dtype=torch.float64) for _ in range(3))
    last = None
    for args, kwargs in calls:
        x, y = args[0].detach().float(), args[1]
        lw = args[2] if len(args) > 2 else None
        twin = copy.deepcopy(module)
        elem = twin(x, *args[1:], **{**kwargs, "reduction_override": "none"}).detach().double()
        xg = x.clone().requires_grad_()
        out = module(xg, *args[1:], **kwargs)
        out.sum().backward()
        gabs = xg.grad.abs().double()
        g = g_of(module, x, y)
        if gabs.shape != g.shape:
            gabs = gabs.sum(1)  # softmax: the logit row
        idx, valid = bin_of(module, g), valid_of(module, x, y, lw)
        elem = torch.where(valid, elem.expand_as(g), torch.zeros_like(g, dtype=torch.float64))
        scale = out.detach().double().sum() / elem.sum()
        last = torch.bincount(idx[valid], minlength=bins).double()
        cnt += last
        loss += torch.zeros_like(loss).index_add_(0, idx[valid], elem[valid] * scale)
        grad += torch.zeros_like(grad).index_add_(0, idx[valid], gabs[valid])
    return cnt, loss / loss.sum(), grad / grad.sum(), last
