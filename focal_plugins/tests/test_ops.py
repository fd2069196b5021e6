"""focal_plugins.ops.sigmoid_focal_loss is a drop-in for torchvision.ops.sigmoid_focal_loss:
signature, defaults, positional arguments, values and gradients (reference body and fast
path), dtypes, reductions, errors, TorchScript and tracing; and it agrees with fvcore's
given fvcore's alpha."""
import inspect
import warnings

import pytest
import torch
import torch.nn.functional as F

from focal_plugins import ops
from focal_plugins.ops import sigmoid_focal_loss as fl

tv_ops = pytest.importorskip("torchvision.ops")
tv = tv_ops.sigmoid_focal_loss

ALPHAS = (-1.0, 0.0, 0.25, 0.58, 1.0)
GAMMAS = (0, 0.5, 2, 3.5)
REDUCTIONS = ("none", "mean", "sum")


@pytest.fixture(params=["reference", "fast"])
def path(request, monkeypatch):
    """Run a test on both halves: the reference body, and the package's fast path (forced
    on small CPU inputs by lowering the threshold)."""
    monkeypatch.setattr(ops, "CPU_FAST_MIN_NUMEL", 10 ** 12 if request.param == "reference" else 1)
    return request.param


def _pair(shape, dtype=torch.float32, seed=0, soft=False):
    """Logits over easy, hard and saturated regions with binary (or soft) targets."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 4
    flat = x.view(-1)
    flat[: flat.numel() // 8] *= 6          # saturated: |x| up to ~70
    t = torch.rand(shape, generator=g, dtype=torch.float64)
    t = t if soft else (t < 0.3).double()
    return x.to(dtype), t.to(dtype)


def test_signature_is_torchvisions():
    ours, theirs = inspect.signature(fl), inspect.signature(tv)
    assert list(ours.parameters) == list(theirs.parameters) == [
        "inputs", "targets", "alpha", "gamma", "reduction"]
    for name, p in theirs.parameters.items():
        q = ours.parameters[name]
        assert (q.default, q.kind) == (p.default, p.kind), name
    assert (fl.__defaults__ if hasattr(fl, "__defaults__") else None) == (0.25, 2, "none")


@pytest.mark.parametrize("shape", [(7, 80), (37,), (2, 5, 4, 3)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_values_and_gradients_equal_torchvisions(path, shape, reduction):
    x, t = _pair(shape)
    for alpha in ALPHAS:
        for gamma in GAMMAS:
            xa = x.clone().requires_grad_()
            xb = x.double().clone().requires_grad_()
            ours = fl(xa, t, alpha, gamma, reduction)
            ref = tv(xb, t.double(), alpha, gamma, reduction)   # fp64 torchvision
            assert ours.dtype == torch.float32 and ours.shape == ref.shape
            torch.testing.assert_close(ours.double(), ref, rtol=1e-5, atol=1e-6)
            (ours.sum() if reduction == "none" else ours).backward()
            (ref.sum() if reduction == "none" else ref).backward()
            # torchvision's gradient is NaN where p_t rounds to 1 and 0 < gamma < 1 (even
            # in fp64); ours is finite everywhere (test_finite_gradient_where_p_t_rounds_to_1)
            assert torch.isfinite(xa.grad).all()
            fin = torch.isfinite(xb.grad)
            assert fin.float().mean() > 0.95
            torch.testing.assert_close(xa.grad.double()[fin], xb.grad[fin], rtol=1e-4, atol=1e-6)


def test_finite_gradient_where_p_t_rounds_to_1(path):
    x = torch.tensor([90.0, -90.0, 20.0, -20.0, 3.0, -3.0], requires_grad=True)
    t = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    xb = x.detach().clone().requires_grad_()
    for gamma in (0.25, 0.5, 0.9):
        x.grad = xb.grad = None
        fl(x, t, 0.25, gamma, "sum").backward()
        tv(xb, t, 0.25, gamma, "sum").backward()
        assert torch.isnan(xb.grad[:2]).all()        # torchvision: NaN at saturation
        assert torch.isfinite(x.grad).all()          # here: finite, ~0 at saturation
        assert x.grad[:2].abs().max() < 1e-20
        torch.testing.assert_close(x.grad[4:], xb.grad[4:])
        torch.testing.assert_close(fl(x, t, 0.25, gamma), tv(xb, t, 0.25, gamma))


def test_defaults_and_positional_arguments():
    x, t = _pair((16, 80))
    torch.testing.assert_close(fl(x, t), tv(x, t))                       # alpha .25, gamma 2, none
    assert fl(x, t).shape == x.shape
    torch.testing.assert_close(fl(x, t, 0.25, 2), tv(x, t, 0.25, 2))
    torch.testing.assert_close(fl(x, t, 0.5, 1.0, "sum"), tv(x, t, 0.5, 1.0, "sum"))
    # the code the issue reported: torchvision-style normalisation by the positives
    torch.testing.assert_close(fl(x, t).sum() / t.sum(), tv(x, t).sum() / t.sum())


@pytest.mark.parametrize("soft", [False, True])
def test_soft_targets_and_targets_that_require_grad(path, soft):
    x, t = _pair((9, 11), soft=soft)
    ta = t.clone().requires_grad_()
    tb = t.clone().requires_grad_()
    fl(x, ta, 0.3, 2.0, "sum").backward()
    tv(x, tb, 0.3, 2.0, "sum").backward()
    torch.testing.assert_close(ta.grad, tb.grad, rtol=1e-4, atol=1e-6)


def test_is_at_most_bce_and_equals_it_without_alpha_and_gamma(path):
    x, t = _pair((40, 20))
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    for alpha in ALPHAS:
        for gamma in GAMMAS:
            assert (fl(x, t, alpha, gamma) <= ce).all()   # exactly, as torchvision checks
    for reduction in ("mean", "sum"):
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        a = fl(xa, t, -1, 0, reduction)
        b = F.binary_cross_entropy_with_logits(xb, t, reduction=reduction)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        a.backward()
        b.backward()
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_dtypes_follow_torchvision(path, dtype, reduction):
    x, t = _pair((33, 21), dtype=dtype)
    x = x.clamp(-12, 12)   # fp16 exp overflow aside
    ours, theirs = fl(x, t, 0.25, 2, reduction), tv(x, t, 0.25, 2, reduction)
    assert ours.dtype == theirs.dtype == dtype and ours.shape == theirs.shape
    exact = tv(x.double(), t.double(), 0.25, 2, reduction)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == torch.float64 else dict(rtol=2e-2, atol=2e-3)
    torch.testing.assert_close(ours.double(), exact, **tol)
    if dtype != torch.float64:   # no further from the exact value than torchvision's own
        err = (ours.double() - exact).abs().max()
        assert err <= (theirs.double() - exact).abs().max() + 1e-3 * exact.abs().max()
    xa = x.clone().requires_grad_()
    out = fl(xa, t, 0.25, 2, reduction)
    (out.sum() if reduction == "none" else out).backward()
    assert xa.grad.dtype == dtype


def test_empty_inputs_as_torchvision():
    for shape in [(0, 80), (0,)]:
        x = torch.zeros(shape, requires_grad=True)
        t = torch.zeros(shape)
        for reduction in REDUCTIONS:
            ours, theirs = fl(x, t, reduction=reduction), tv(x, t, reduction=reduction)
            assert ours.shape == theirs.shape
            torch.testing.assert_close(ours, theirs, equal_nan=True)   # mean of nothing: nan


def test_errors_name_the_argument_and_value():
    x, t = _pair((4, 3))
    for alpha in (-0.5, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"Invalid alpha value: .*alpha must be in"):
            fl(x, t, alpha)
        with pytest.raises(ValueError):
            tv(x, t, alpha)   # torchvision refuses the same
    with pytest.raises(ValueError, match=r"Invalid Value for arg 'reduction': 'average'"):
        fl(x, t, reduction="average")
    with pytest.raises(ValueError, match="Invalid Value for arg 'reduction'"):
        tv(x, t, reduction="average")
    with pytest.raises(ValueError, match=r"Invalid gamma value: -1.*>= 0"):
        fl(x, t, gamma=-1)
    # a targets of another shape: the error torchvision gives (from BCE)
    with pytest.raises(ValueError) as ours:
        fl(x, t[:, :2])
    with pytest.raises(ValueError) as theirs:
        tv(x, t[:, :2])
    assert str(ours.value) == str(theirs.value)


def _scripted():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # torch.jit.script's deprecation notice
        return torch.jit.script(fl)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_scripts_with_torchscript(dtype):
    s = _scripted()
    x, t = _pair((18, 6), dtype=dtype)
    tol = dict(rtol=1e-2, atol=1e-3) if dtype == torch.bfloat16 else dict(rtol=1e-5, atol=1e-6)
    for alpha in ALPHAS:
        for gamma in (0, 2):
            for reduction in REDUCTIONS:
                a = s(x, t, gamma=gamma, alpha=alpha, reduction=reduction)
                b = tv(x, t, gamma=gamma, alpha=alpha, reduction=reduction)
                assert a.dtype == b.dtype
                if dtype == torch.bfloat16:   # both rounded differently: each near the exact value
                    exact = tv(x.double(), t.double(), gamma=gamma, alpha=alpha,
                               reduction=reduction)
                    torch.testing.assert_close(a, fl(x, t, alpha, gamma, reduction))  # = eager
                    err = (a.double() - exact).abs().max()
                    assert err <= (b.double() - exact).abs().max() + 1e-2 * exact.abs().max()
                else:
                    torch.testing.assert_close(a, b, **tol)
    torch.testing.assert_close(s(x, t), tv(x, t), **tol)       # defaults survive scripting
    with pytest.raises(Exception, match="Invalid Value for arg 'reduction'"):
        s(x, t, reduction="avg")
    with pytest.raises(Exception, match="Invalid alpha value"):
        s(x, t, alpha=2.0)


def test_a_module_calling_it_scripts_and_traces():
    class Head(torch.nn.Module):
        def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return fl(x, t, 0.25, 2.0, "sum")

    x, t = _pair((8, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(Head())
        traced = torch.jit.trace(Head(), (x, t))
    expect = tv(x, t, 0.25, 2.0, "sum")
    torch.testing.assert_close(scripted(x, t), expect)
    torch.testing.assert_close(traced(x, t), expect)


def test_reference_supports_double_backward():
    x, t = _pair((6, 4))
    x.requires_grad_()
    (g,) = torch.autograd.grad(fl(x, t, reduction="sum"), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    xb = x.detach().clone().requires_grad_()
    (gb,) = torch.autograd.grad(tv(xb, t, reduction="sum"), xb, create_graph=True)
    (ggb,) = torch.autograd.grad(gb.sum(), xb)
    torch.testing.assert_close(gg, ggb, rtol=1e-4, atol=1e-6)


def test_dispatches_large_cpu_inputs_to_the_fast_path(monkeypatch):
    calls = []
    import focal_plugins.core as core

    real = core.sigmoid_focal_loss
    monkeypatch.setattr(core, "sigmoid_focal_loss", lambda *a, **k: calls.append(k) or real(*a, **k))
    x, t = _pair((4, 3))
    fl(x, t)
    assert calls == []                                   # below the threshold: reference
    monkeypatch.setattr(ops, "CPU_FAST_MIN_NUMEL", 12)
    fl(x, t, -1, 2, "sum")
    assert calls == [dict(alpha=None, gamma=2.0, reduction="sum")]
    fl(x.double(), t.double())                           # fp64: the reference
    fl(x, t.double())                                    # mixed dtypes: whatever BCE does
    assert len(calls) == 1


def test_agrees_with_fvcore_given_fvcores_alpha():
    fvcore_nn = pytest.importorskip("fvcore.nn")
    x, t = _pair((12, 9))
    for alpha in (-1, 0.25, 0.7):
        for gamma in (0, 1, 2):
            for reduction in REDUCTIONS:
                want = fvcore_nn.sigmoid_focal_loss(x, t, alpha, gamma, reduction)
                torch.testing.assert_close(fl(x, t, alpha, gamma, reduction), want,
                                           rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(
                    fvcore_nn.sigmoid_focal_loss_jit(x, t, alpha, gamma, reduction),
                    fl(x, t, alpha, gamma, reduction), rtol=1e-5, atol=1e-6)
    # fvcore's default alpha is -1 (no weighting), torchvision's and ours 0.25
    torch.testing.assert_close(fl(x, t, alpha=-1), fvcore_nn.sigmoid_focal_loss(x, t))


def test_importing_it_pulls_in_no_framework():
    import subprocess
    import sys

    code = ("import sys, focal_plugins.ops\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torchvision', 'fvcore', 'mmdet', 'mmcv', 'mmengine', 'detectron2')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
