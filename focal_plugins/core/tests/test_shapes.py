"""The plain PyTorch calling convention: logits of any shape with a same-shape float target,
as torchvision's and fvcore's sigmoid focal loss take them, on the fast path and the
reference alike."""
import pytest
import torch
import torch.nn.functional as F
import torchvision.ops

import focal_plugins as fp
from focal_plugins import GHMC, sigmoid_focal_loss
from focal_plugins.kernels import cpu as kcpu

from .conftest import mmdet_losses

SHAPES = [(), (7,), (6, 5), (3, 4, 5, 6), (2, 3, 2, 2, 3)]


@pytest.fixture
def cpu_calls(monkeypatch):
    """Counts the forwards of the CPU fast paths (sigmoid focal, both target forms, GHM-C)."""
    calls = []
    for cls in (kcpu._SigmoidFocalCPU, kcpu._SigmoidFocalSoftCPU, kcpu._GHMCSigmoidCPU):
        real = cls.forward

        def spy(*a, _real=real):
            calls.append(1)
            return _real(*a)
        monkeypatch.setattr(cls, "forward", staticmethod(spy))
    return calls


def _pair(shape, kind, scale=3.0):
    x = torch.randn(shape) * scale
    t = torch.rand(shape) if kind == "soft" else (torch.rand(shape) < 0.3).float()
    return x, t


def _loss_and_grad(fn, x, t):
    x = x.clone().requires_grad_()
    out = fn(x, t)
    out.backward(torch.rand(out.shape, generator=torch.Generator().manual_seed(1)) + 0.5)
    return out, x.grad


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("kind", ["hard", "soft"])
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1, 0.0), (0.0, 1.5), (1.0, 2.0)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_any_shape_matches_torchvision(shape, kind, alpha, gamma, reduction, impl, cpu_calls):
    x, t = _pair(shape, kind)
    kw = dict(alpha=alpha, gamma=gamma, reduction=reduction)
    ours, g_ours = _loss_and_grad(lambda a, b: sigmoid_focal_loss(a, b, impl=impl, **kw), x, t)
    ref, g_ref = _loss_and_grad(lambda a, b: torchvision.ops.sigmoid_focal_loss(a, b, **kw), x, t)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(g_ours, g_ref)
    assert len(cpu_calls) == (1 if impl == "auto" else 0)


@pytest.mark.parametrize("shape", [(9,), (4, 3, 5, 2)], ids=str)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_any_shape_matches_fvcore(shape, reduction):
    from fvcore.nn import sigmoid_focal_loss as fv
    x, t = _pair(shape, "soft")
    for alpha in (-1, 0.3):      # fvcore's default is alpha=-1, no weighting
        kw = dict(alpha=alpha, gamma=1.0, reduction=reduction)
        ours, g_ours = _loss_and_grad(lambda a, b: sigmoid_focal_loss(a, b, **kw), x, t)
        ref, g_ref = _loss_and_grad(lambda a, b: fv(a, b, **kw), x, t)
        torch.testing.assert_close(ours, ref)
        torch.testing.assert_close(g_ours, g_ref)


@pytest.mark.parametrize("N,C", [(90, 2), (3001, 13)])
def test_fast_path_never_exceeds_torch_bce(N, C, cpu_calls):
    # torchvision's tests check focal <= BCE element for element: the fast path computes
    # BCE as torch does, so with alpha=-1, gamma=0 the two are equal bit for bit
    x, t = _pair((N, C), "hard", scale=4.0)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    assert torch.equal(sigmoid_focal_loss(x, t, alpha=-1, gamma=0.0, reduction="none"), ce)
    for alpha, gamma in ((0.58, 2.0), (1.0, 0.0), (0.0, 2.0)):
        assert (sigmoid_focal_loss(x, t, alpha=alpha, gamma=gamma, reduction="none") <= ce).all()
    assert len(cpu_calls) == 4


@pytest.mark.parametrize("impl", ["auto", "reference"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_per_class_alpha_and_weight_on_dense_logits_use_dim_1(impl, reduction):
    # (N, C, H, W): per-class alpha along dim 1, weight broadcast, equal to the (N*H*W, C) rows
    N, C, H, W = 2, 4, 3, 5
    x, t = _pair((N, C, H, W), "soft")
    alpha = [0.1, 0.4, 0.6, 0.9]
    w = torch.rand(N, 1, H, W)
    kw = dict(alpha=alpha, gamma=2.0, reduction=reduction)
    ours, g_ours = _loss_and_grad(lambda a, b: sigmoid_focal_loss(a, b, w, impl=impl, **kw), x, t)

    def rows(a, b):
        out = sigmoid_focal_loss(a.movedim(1, -1).reshape(-1, C), b.movedim(1, -1).reshape(-1, C),
                                 w.expand(N, C, H, W).movedim(1, -1).reshape(-1, C),
                                 impl="reference", **kw)
        return out.reshape(N, H, W, C).movedim(-1, 1) if reduction == "none" else out
    ref, g_ref = _loss_and_grad(rows, x, t)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(g_ours, g_ref)


def test_integer_labels_are_the_2d_shortcut_only():
    x = torch.randn(6, 4)
    lab = torch.tensor([0, 3, 4, 1, 4, 2])                  # 4 = background
    onehot = F.one_hot(lab, 5)[:, :4].float()
    torch.testing.assert_close(sigmoid_focal_loss(x, lab), sigmoid_focal_loss(x, onehot))
    # 1-d logits: an integer target of the same shape is the 0/1 target itself
    x1 = torch.randn(6)
    b = torch.tensor([0, 1, 1, 0, 0, 1])
    torch.testing.assert_close(sigmoid_focal_loss(x1, b), sigmoid_focal_loss(x1, b.float()))
    with pytest.raises(ValueError, match=r"target must be shaped like pred \(6, 4, 2, 2\)"):
        sigmoid_focal_loss(torch.randn(6, 4, 2, 2), lab)
    with pytest.raises(ValueError,
                       match=r"weight must broadcast to the loss shape \(2, 4, 5\), got shape \(3,\)"):
        sigmoid_focal_loss(torch.randn(2, 4, 5), torch.rand(2, 4, 5), torch.ones(3))
    with pytest.raises(ValueError, match="target values must lie in"):
        sigmoid_focal_loss(torch.randn(5), torch.full((5,), 1.5))


def test_alpha_minus_one_is_no_weighting_other_negatives_raise():
    x, t = _pair((8, 3), "soft")
    torch.testing.assert_close(sigmoid_focal_loss(x, t, alpha=-1),
                               sigmoid_focal_loss(x, t, alpha=None))
    with pytest.raises(ValueError, match="alpha"):
        sigmoid_focal_loss(x, t, alpha=-0.5)


@pytest.mark.parametrize("pdt,tdt", [(torch.float32, torch.float64), (torch.float32, torch.float16),
                                     (torch.float64, torch.float64), (torch.bfloat16, torch.float32)])
def test_soft_target_dtypes_auto_equals_reference(pdt, tdt, cpu_calls):
    # float64 logits have no fast path (the reference computes them in float64); float64
    # targets of fp32 logits are read in fp32, as the reference does
    x = (torch.randn(40, 7) * 3).to(pdt)
    t = torch.rand(40, 7).to(tdt)
    a, ga = _loss_and_grad(lambda u, v: sigmoid_focal_loss(u, v, gamma=1.5), x, t)
    b, gb = _loss_and_grad(lambda u, v: sigmoid_focal_loss(u, v, gamma=1.5, impl="reference"), x, t)
    assert a.dtype == b.dtype == (torch.float64 if pdt == torch.float64 else torch.float32)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(ga, gb)
    assert len(cpu_calls) == (0 if pdt == torch.float64 else 1)


# ---- GHM-C (use_sigmoid=True): elementwise, so any shape with a same-shape float target

@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_ghmc_any_shape_equals_rows_and_mmdet(impl, cpu_calls):
    _, ghm = mmdet_losses()
    shape = (2, 5, 4, 3)
    ours, rows = GHMC(bins=10, momentum=0.5, impl=impl), GHMC(bins=10, momentum=0.5, impl="reference")
    mm = ghm.GHMC(bins=10, momentum=0.5)
    for step in range(3):
        x, t = _pair(shape, "soft" if step else "hard")
        lw = (torch.rand(2, 1, 4, 3) > 0.2).float()
        red = ["mean", "none", "sum"][step]
        a, ga = _loss_and_grad(lambda u, v: ours(u, v, lw, reduction_override=red), x, t)
        b, gb = _loss_and_grad(lambda u, v: rows(u.reshape(-1, 3), v.reshape(-1, 3),
                                                 lw.expand(shape).reshape(-1, 3),
                                                 reduction_override=red).reshape(
            shape if red == "none" else ()), x, t)
        assert a.shape == (shape if red == "none" else ())
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ga, gb)
        if red == "mean":
            m, gm = _loss_and_grad(lambda u, v: mm(u, v, lw.expand(shape)), x, t)
            torch.testing.assert_close(a, m)
            torch.testing.assert_close(ga, gm)
    torch.testing.assert_close(ours.acc_sum, rows.acc_sum)
    assert len(cpu_calls) == (3 if impl == "auto" else 0)
    x1, t1 = _pair((11,), "soft")
    torch.testing.assert_close(GHMC(bins=5)(x1, t1), GHMC(bins=5)(x1[:, None], t1[:, None]))
    with pytest.raises(ValueError, match="target must be shaped like pred"):
        GHMC()(torch.randn(2, 3, 4), torch.rand(2, 3))


def test_ghmc_soft_targets_at_the_bin_edges_fast_equals_reference(cpu_calls):
    # g = |sigmoid(x) - t| exactly on GHM's float32 edges k / bins and one float either
    # side: the fast path must put every element in the reference's bin (counts, EMA,
    # loss and gradient equal)
    bins = 30
    edges = torch.arange(bins + 1).float() / bins
    near = torch.cat([torch.nextafter(edges, torch.tensor(-1.0)), edges,
                      torch.nextafter(edges, torch.tensor(2.0))])
    x = torch.tensor([0.0, 1.3, -2.1, 4.0, -0.2])[:, None].expand(5, near.numel()).reshape(-1)
    e = near.repeat(5)
    p = x.sigmoid()
    t = torch.where(p >= 0.5, p - e, p + e)
    keep = (t >= 0) & (t <= 1)
    x, t = x[keep], t[keep]
    g = (x.sigmoid() - t).abs()
    assert (g[:, None] == edges[None, 1:-1]).any(1).sum() > 20      # many exactly on an edge
    x, t = x.reshape(-1, 1).repeat(1, 4), t.reshape(-1, 1).repeat(1, 4)
    fast, ref = GHMC(bins=bins, momentum=0.75), GHMC(bins=bins, momentum=0.75, impl="reference")
    for _ in range(2):
        a, ga = _loss_and_grad(lambda u, v: fast(u, v, reduction_override="none"), x, t)
        b, gb = _loss_and_grad(lambda u, v: ref(u, v, reduction_override="none"), x, t)
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(ga, gb, rtol=1e-6, atol=1e-7)
        assert torch.equal(fast.acc_sum, ref.acc_sum)
    assert len(cpu_calls) == 2
