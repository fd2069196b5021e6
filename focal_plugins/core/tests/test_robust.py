"""Finite gradients at legal settings and extreme logits, on every path available on the
CPU (the reference, and the chunked fast path where the input takes it). The Triton
kernels get the same cases under the interpreter (kernels/tests/_kernel_checks.py
'robust')."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from focal_plugins import GHMC, GHMR, sigmoid_focal_loss, softmax_focal_loss

INF = float("inf")
EXTREME = [-1e4, -200.0, -88.0, -30.0, -17.0, 0.0, 17.0, 30.0, 88.0, 200.0, 1e4]


def _grad(fn, x):
    x = x.clone().requires_grad_()
    out = fn(x)
    g, = torch.autograd.grad(out, x)
    return out.detach(), g


def test_issue_examples_have_finite_gradients():
    # 0 < gamma < 1 where p_t rounds to 1: the focal factor's derivative is inf there
    for impl in ("reference", "auto"):
        out, g = _grad(lambda x: softmax_focal_loss(x, torch.tensor([0]), gamma=0.5, impl=impl),
                       torch.tensor([[30.0, 0.0, 0.0]]))
        assert torch.isfinite(out) and torch.isfinite(g).all(), (impl, g)
    out, g = _grad(lambda x: sigmoid_focal_loss(x, torch.tensor([[1.0, 0.0]]), gamma=0.5),
                   torch.tensor([[30.0, -30.0]]))
    assert torch.isfinite(g).all() and g.abs().max() < 1e-12, g


@settings(max_examples=40, deadline=None)
@given(gamma=st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
       seed=st.integers(0, 2 ** 16))
def test_gamma_below_one_and_extreme_logits_finite_on_every_path(gamma, seed):
    gen = torch.Generator().manual_seed(seed)
    N, C = 40, len(EXTREME)
    base = torch.tensor(EXTREME)
    x = base[torch.stack([torch.randperm(C, generator=gen) for _ in range(N)])]
    lab = torch.randint(0, C + 1, (N,), generator=gen)
    onehot = (lab[:, None] == torch.arange(C)).float()
    slab = lab.clamp(max=C - 1)
    calls = {
        "sigmoid labels": lambda x, impl: sigmoid_focal_loss(x, lab, gamma=gamma, impl=impl),
        "sigmoid float": lambda x, impl: sigmoid_focal_loss(x, onehot, gamma=gamma, impl=impl),
        "softmax": lambda x, impl: softmax_focal_loss(x, slab, gamma=gamma, impl=impl),
        "ghmc": lambda x, impl: GHMC(impl=impl)(x, lab),
    }
    for name, call in calls.items():
        ref, gref = _grad(lambda x: call(x, "reference"), x)
        out, g = _grad(lambda x: call(x, "auto"), x)
        assert torch.isfinite(ref) and torch.isfinite(gref).all(), name
        assert torch.isfinite(out) and torch.isfinite(g).all(), name
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(g, gref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("impl", ["reference", "auto"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
def test_infinite_logits_give_the_limits(impl, gamma):
    # x = +inf with t = 1 and x = -inf with t = 0: loss 0 and gradient 0 (the limits), not NaN;
    # the finite elements beside them are unchanged
    x = torch.tensor([[INF, -INF, 1.0], [-INF, 2.0, -INF]])
    lab = torch.tensor([0, 1])                                    # row 0 class 0, row 1 class 1
    t = (lab[:, None] == torch.arange(3)).float()
    fin = torch.tensor([[0.0, 0.0, 1.0], [0.0, 2.0, 0.0]])
    finite_only = sigmoid_focal_loss(fin, t, gamma=gamma, reduction="none", impl="reference")
    keep = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    for target in (lab, t):
        out, g = _grad(lambda x: sigmoid_focal_loss(x, target, gamma=gamma, reduction="sum",
                                                    impl=impl), x)
        torch.testing.assert_close(out, (finite_only * keep).sum())
        assert torch.isfinite(g).all() and (g[keep == 0] == 0).all(), g
    for target in (lab, t):
        out, g = _grad(lambda x: GHMC(impl=impl)(x, target, reduction_override="sum"), x)
        assert torch.isfinite(out) and torch.isfinite(g).all(), (out, g)
        ref = GHMC(impl="reference")(x, t, reduction_override="sum")
        torch.testing.assert_close(out, ref)


@pytest.mark.parametrize("impl", ["reference", "auto"])
def test_softmax_minus_inf_logits_mask_classes(impl):
    # -inf on a non-target class (a masked class) contributes nothing; finite gradient
    x = torch.tensor([[2.0, -INF, 0.5], [-INF, 1.0, 0.0]])
    lab = torch.tensor([0, 2])
    out, g = _grad(lambda x: softmax_focal_loss(x, lab, gamma=0.5, impl=impl), x)
    masked = torch.tensor([[2.0, -1e30, 0.5], [-1e30, 1.0, 0.0]])
    ref, gref = _grad(lambda x: softmax_focal_loss(x, lab, gamma=0.5, impl="reference"), masked)
    torch.testing.assert_close(out, ref)
    assert torch.isfinite(g).all()
    torch.testing.assert_close(g, gref)


# ---- NaN logits in GHM: NaN in, NaN out for that element; counted in no bin

def _nan_batch(seed=0, N=60, C=7):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, C, generator=gen) * 3
    nan = torch.rand(N, C, generator=gen) < 0.05
    nan[0, 0] = True
    x[nan] = float("nan")
    lab = torch.randint(0, C + 1, (N,), generator=gen)
    lw = (torch.rand(N, generator=gen) > 0.2).float()
    return x, nan, lab, lw


@pytest.mark.parametrize("momentum", [0.0, 0.75])
def test_ghmc_nan_logits_same_weights_on_every_path(momentum):
    x, nan, lab, lw = _nan_batch()
    t = (lab[:, None] == torch.arange(x.shape[1])).float()
    outs, grads = [], []
    for impl, target in (("reference", t), ("reference", lab), ("auto", lab)):
        m = GHMC(bins=10, momentum=momentum, impl=impl)
        for step in range(2):
            out, g = _grad(lambda x: m(x, target, lw, reduction_override="none").sum(), x)
            assert torch.isnan(out)
        none = m(x, target, lw, reduction_override="none")
        outs.append(none)
        grads.append(g)
        assert torch.isnan(none[nan]).all() and torch.isfinite(none[~nan]).all()
        assert torch.isnan(g[nan]).all() and torch.isfinite(g[~nan]).all()
        assert torch.isnan(m(x, target, lw))       # NaN in, NaN out for a reduced loss too
    for o, g in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(o, outs[0], equal_nan=True)
        torch.testing.assert_close(g, grads[0], equal_nan=True)


def test_ghm_nan_counted_in_no_bin_and_ema_ignores_it():
    x, nan, lab, lw = _nan_batch(1)
    a = GHMC(bins=10, momentum=0.75)
    b = GHMC(bins=10, momentum=0.75)
    a(x, lab, lw)
    g = (x.sigmoid() - (lab[:, None] == torch.arange(x.shape[1])).float()).abs()
    valid = (lw[:, None] > 0).float().expand_as(x)
    _, counts, binned = b.bin_counts(g, valid)
    assert counts.sum().item() == int(((valid > 0) & ~nan).sum())
    assert not binned[nan].any()
    torch.testing.assert_close(a.acc_sum, 0.25 * counts.double())


def test_softmax_ghmc_and_ghmr_nan():
    x, nan, lab, lw = _nan_batch(2)
    rows = nan.any(1)
    slab = lab.clamp(max=x.shape[1] - 1)
    out = GHMC(use_sigmoid=False)(x, slab, lw, reduction_override="none")
    assert torch.isnan(out[rows]).all() and torch.isfinite(out[~rows]).all()
    y = torch.zeros_like(x)
    r = GHMR(mu=0.5)(x, y, reduction_override="none")
    assert torch.isnan(r[nan]).all() and torch.isfinite(r[~nan]).all()
    clean = torch.where(nan, 0.0, x)
    lwr = (~nan).float()
    # the other elements' weights: as if the NaN elements were in no bin (tot unchanged)
    want = GHMR(mu=0.5)(clean, y, lwr, reduction_override="none")
    torch.testing.assert_close(r[~nan] * lwr.sum() / nan.numel(), want[~nan])
