"""impl dispatch: the fast paths differentiate pred only, so any other argument that needs a
gradient sends impl="auto" to the reference and makes impl="fused" a ValueError."""
import pytest
import torch

import focal_plugins as fp
from focal_plugins.core.sigmoid_focal import sigmoid_focal_reference as _sigmoid_focal_reference
from focal_plugins.kernels import cpu as kcpu


@pytest.fixture
def cpu_calls(monkeypatch):
    """Counts the CPU fast path's forwards (sigmoid focal and GHM-C)."""
    calls = []
    for cls in (kcpu._SigmoidFocalCPU, kcpu._GHMCSigmoidCPU):
        real = cls.forward

        def spy(*a, _real=real):
            calls.append(1)
            return _real(*a)
        monkeypatch.setattr(cls, "forward", staticmethod(spy))
    return calls


def _data(N=53, C=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(N, C, generator=gen) * 3).requires_grad_()
    lab = torch.randint(0, C + 1, (N,), generator=gen)
    return x, lab, gen


def _grads(out, *ts):
    return torch.autograd.grad(out, ts)


@pytest.mark.parametrize("wshape", ["row", "elem"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_weight_requiring_grad_takes_reference(wshape, reduction, cpu_calls):
    x, lab, gen = _data()
    N, C = x.shape
    w = torch.rand((N,) if wshape == "row" else (N, C), generator=gen).requires_grad_()
    a = fp.sigmoid_focal_loss(x, lab, w, reduction=reduction)
    b = fp.sigmoid_focal_loss(x, lab, w, reduction=reduction, impl="reference")
    assert cpu_calls == []          # integer labels on CPU: "auto" would be the fast path
    torch.testing.assert_close(a, b)
    go = torch.rand(b.shape, generator=gen) + 0.5
    gxa, gwa = _grads((a * go).sum(), x, w)
    gxb, gwb = _grads((b * go).sum(), x, w)
    torch.testing.assert_close(gwa, gwb)
    torch.testing.assert_close(gxa, gxb)
    # and the weight gradient is the unweighted loss (independent of either path)
    t = (lab[:, None] == torch.arange(C)).float()
    el = _sigmoid_focal_reference(x.detach(), t, torch.full((C,), 0.25), torch.full((C,), 0.75), 2.0)
    scale = go / (N * C) if reduction == "mean" else go
    want = el * scale
    torch.testing.assert_close(gwa, want.sum(1) if wshape == "row" else want)


def test_weight_without_grad_keeps_fast_path(cpu_calls):
    x, lab, gen = _data()
    w = torch.rand(x.shape[0], generator=gen)
    fp.sigmoid_focal_loss(x, lab, w).backward()
    assert len(cpu_calls) == 1
    wg = w.clone().requires_grad_()
    with torch.no_grad():           # no graph: nothing to differentiate, fast path is exact
        fp.sigmoid_focal_loss(x, lab, wg)
    assert len(cpu_calls) == 2


def test_soft_target_and_alpha_requiring_grad_match_reference():
    x, lab, gen = _data()
    N, C = x.shape
    t = torch.rand(N, C, generator=gen).requires_grad_()
    alpha = torch.rand(C, generator=gen).requires_grad_()
    for kw in ({"alpha": alpha}, {"alpha": alpha, "alpha_mode": "uniform"}):
        a = fp.sigmoid_focal_loss(x, t, **kw)
        b = fp.sigmoid_focal_loss(x, t, impl="reference", **kw)
        ga, gb = _grads(a, x, t, alpha), _grads(b, x, t, alpha)
        for u, v in zip(ga, gb):
            torch.testing.assert_close(u, v)
        assert ga[2].abs().sum() > 0        # a learnable alpha gets a gradient
    # alpha requiring grad with integer labels (CPU fast path candidate)
    a = fp.sigmoid_focal_loss(x, lab, alpha=alpha)
    b = fp.sigmoid_focal_loss(x, lab, alpha=alpha, impl="reference")
    torch.testing.assert_close(_grads(a, alpha)[0], _grads(b, alpha)[0])


def test_softmax_weight_and_alpha_requiring_grad_match_reference():
    x, lab, gen = _data()
    N, C = x.shape
    lab = lab.clamp(max=C - 1)
    w = torch.rand(N, generator=gen).requires_grad_()
    alpha = torch.rand(C, generator=gen).requires_grad_()
    a = fp.softmax_focal_loss(x, lab, w, alpha=alpha)
    b = fp.softmax_focal_loss(x, lab, w, alpha=alpha, impl="reference")
    for u, v in zip(_grads(a, x, w, alpha), _grads(b, x, w, alpha)):
        torch.testing.assert_close(u, v)


def test_ghm_float_target_requiring_grad_matches_reference():
    x, lab, gen = _data()
    N, C = x.shape
    t = (lab[:, None] == torch.arange(C)).float().requires_grad_()
    ma, mb = fp.GHMC(bins=30, momentum=0.75), fp.GHMC(bins=30, momentum=0.75, impl="reference")
    for u, v in zip(_grads(ma(x, t), x, t), _grads(mb(x, t), x, t)):
        torch.testing.assert_close(u, v)
    y = torch.randn(N, 4, generator=gen)
    d, e = torch.randn(N, 4, generator=gen).requires_grad_(), y.clone().requires_grad_()
    ra, rb = fp.GHMR(), fp.GHMR(impl="reference")
    for u, v in zip(_grads(ra(d, e), d, e), _grads(rb(d, e), d, e)):
        torch.testing.assert_close(u, v)


def test_label_weight_is_a_constant_on_every_path(cpu_calls):
    # label_weight only marks validity (tot is a count), so the reference gives it no
    # gradient either; the fast path stays in use and agrees.
    x, lab, gen = _data()
    lw = (torch.rand(x.shape[0], generator=gen) > 0.2).float().requires_grad_()
    ma, mb = fp.GHMC(bins=30, momentum=0.75), fp.GHMC(bins=30, momentum=0.75, impl="reference")
    a, b = ma(x, lab, lw), mb(x, lab, lw)
    assert len(cpu_calls) == 1
    ga = torch.autograd.grad(a, (x, lw), allow_unused=True)
    gb = torch.autograd.grad(b, (x, lw), allow_unused=True)
    torch.testing.assert_close(ga[0], gb[0])
    assert ga[1] is None and gb[1] is None


@pytest.mark.parametrize("case,arg", [
    (lambda x, lab, t, w, al: fp.sigmoid_focal_loss(x, lab, w, impl="fused"), "weight"),
    (lambda x, lab, t, w, al: fp.sigmoid_focal_loss(x, t, impl="fused"), "target"),
    (lambda x, lab, t, w, al: fp.sigmoid_focal_loss(x, lab, alpha=al, impl="fused"), "alpha"),
    (lambda x, lab, t, w, al: fp.softmax_focal_loss(x, lab.clamp(max=6), w, impl="fused"), "weight"),
    (lambda x, lab, t, w, al: fp.softmax_focal_loss(x, lab.clamp(max=6), alpha=al, impl="fused"),
     "alpha"),
    (lambda x, lab, t, w, al: fp.GHMC(impl="fused")(x, t), "target"),
    (lambda x, lab, t, w, al: fp.GHMR(impl="fused")(x, t), "target"),
])
def test_fused_with_grad_argument_is_a_clear_error(case, arg):
    x, lab, gen = _data()
    N, C = x.shape
    t = torch.rand(N, C, generator=gen).requires_grad_()
    w = torch.rand(N, generator=gen).requires_grad_()
    al = torch.rand(C, generator=gen).requires_grad_()
    with pytest.raises(ValueError, match=f"fused.*{arg} requires grad"):
        case(x, lab, t, w, al)
