import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.ops
from hypothesis import given, settings, strategies as st

from focal_plugins import sigmoid_focal_loss, softmax_focal_loss

from .conftest import mmdet_losses


def _logits(n=40, c=6, scale=3.0):
    return torch.randn(n, c) * scale


# ---- sigmoid focal vs torchvision, fvcore, mmdet

@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 0.0), (0.9, 1.5), (0.0, 3.0)])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_matches_torchvision(alpha, gamma, reduction):
    x = _logits()
    y = (torch.rand_like(x) < 0.3).float()
    ours = sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction=reduction)
    ref = torchvision.ops.sigmoid_focal_loss(x, y, alpha=alpha, gamma=gamma, reduction=reduction)
    torch.testing.assert_close(ours, ref)


def test_sigmoid_soft_targets_and_no_alpha_match_torchvision():
    x = _logits()
    y = torch.rand_like(x)
    ours = sigmoid_focal_loss(x, y, alpha=None, reduction="none")
    torch.testing.assert_close(ours, torchvision.ops.sigmoid_focal_loss(x, y, alpha=-1, reduction="none"))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_sigmoid_matches_fvcore(reduction):
    from fvcore.nn import sigmoid_focal_loss as fv
    x = _logits()
    y = (torch.rand_like(x) < 0.2).float()
    torch.testing.assert_close(sigmoid_focal_loss(x, y, alpha=0.3, gamma=1.0, reduction=reduction),
                               fv(x, y, alpha=0.3, gamma=1.0, reduction=reduction))


@pytest.mark.parametrize("impl", ["reference", "auto"])
@pytest.mark.parametrize("reduction,use_avg", [("none", False), ("mean", False), ("sum", False),
                                               ("none", True), ("mean", True)])
def test_sigmoid_matches_mmdet_focal_loss(reduction, use_avg, impl):
    focal_loss, _ = mmdet_losses()
    x = _logits(50, 5)
    labels = torch.randint(0, 6, (50,))  # 5 = background
    w = torch.rand(50)
    avg = 7.5 if use_avg else None
    mm = focal_loss.FocalLoss(gamma=2.0, alpha=0.25, reduction=reduction)
    ref = mm(x, labels, weight=w, avg_factor=avg)
    torch.testing.assert_close(sigmoid_focal_loss(x, labels, w, reduction=reduction, avg_factor=avg,
                                                  impl=impl), ref)
    # one-hot targets and an (N, C) weight through mmdet's py_sigmoid_focal_loss
    y = F.one_hot(labels, 6)[:, :5].float()
    w2 = torch.rand(50, 5)
    ref2 = focal_loss.py_sigmoid_focal_loss(x, y, w2, gamma=1.5, alpha=0.4, reduction=reduction,
                                            avg_factor=avg)
    torch.testing.assert_close(sigmoid_focal_loss(x, y, w2, gamma=1.5, alpha=0.4, reduction=reduction,
                                                  avg_factor=avg, impl=impl), ref2)


def test_sigmoid_index_targets_equal_one_hot():
    x = _logits(30, 4)
    labels = torch.randint(0, 5, (30,))
    y = F.one_hot(labels, 5)[:, :4].float()
    torch.testing.assert_close(sigmoid_focal_loss(x, labels, reduction="none"),
                               torchvision.ops.sigmoid_focal_loss(x, y, reduction="none"))


def test_sigmoid_flattened_weight_as_mmdet():
    focal_loss, _ = mmdet_losses()
    x = _logits(20, 3)
    y = (torch.rand_like(x) < 0.3).float()
    w = torch.rand(60)
    torch.testing.assert_close(sigmoid_focal_loss(x, y, w),
                               focal_loss.py_sigmoid_focal_loss(x, y, w))


# ---- softmax focal

@pytest.mark.parametrize("impl", ["reference", "auto"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_softmax_gamma0_is_cross_entropy(reduction, impl):
    x = _logits(64, 9)
    t = torch.randint(0, 9, (64,))
    t[::5] = -100
    torch.testing.assert_close(softmax_focal_loss(x, t, gamma=0.0, reduction=reduction, impl=impl),
                               F.cross_entropy(x, t, reduction=reduction))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_softmax_gamma0_dense_ignore_index(reduction):
    x = torch.randn(2, 5, 4, 3) * 2
    t = torch.randint(0, 5, (2, 4, 3))
    t[0, 1] = 255
    torch.testing.assert_close(
        softmax_focal_loss(x, t, gamma=0.0, ignore_index=255, reduction=reduction),
        F.cross_entropy(x, t, ignore_index=255, reduction=reduction))


def test_softmax_gamma0_weights():
    x = _logits(30, 4)
    t = torch.randint(0, 4, (30,))
    w = torch.rand(30)
    a = torch.tensor([0.5, 2.0, 1.0, 0.25])
    ce = F.cross_entropy(x, t, reduction="none")
    torch.testing.assert_close(softmax_focal_loss(x, t, w, gamma=0.0), (ce * w).mean())
    # per-class alpha = F.cross_entropy's class weight, summed
    torch.testing.assert_close(softmax_focal_loss(x, t, gamma=0.0, alpha=a, reduction="sum"),
                               F.cross_entropy(x, t, weight=a, reduction="sum"))
    torch.testing.assert_close(softmax_focal_loss(x, t, w, gamma=0.0, avg_factor=4.0),
                               (ce * w).sum() / (4.0 + torch.finfo(torch.float32).eps))


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_softmax_two_classes_equals_torchvision_sigmoid(gamma):
    # softmax over logits [0, z] gives p(class 1) = sigmoid(z): the two focal losses agree.
    z = torch.randn(40) * 3
    y = torch.randint(0, 2, (40,))
    two = torch.stack([torch.zeros_like(z), z], dim=1)
    ref = torchvision.ops.sigmoid_focal_loss(z, y.float(), alpha=-1, gamma=gamma, reduction="none")
    torch.testing.assert_close(softmax_focal_loss(two, y, gamma=gamma, reduction="none"), ref)
    # float alpha, paper mode, background at index 0 == torchvision's alpha_t
    ref = torchvision.ops.sigmoid_focal_loss(z, y.float(), alpha=0.25, gamma=gamma, reduction="none")
    torch.testing.assert_close(softmax_focal_loss(two, y, gamma=gamma, alpha=0.25, background_index=0,
                                                  reduction="none"), ref)


def test_softmax_background_last_column():
    x = _logits(20, 4)  # 3 classes + background at 3
    t = torch.randint(0, 4, (20,))
    ce = F.cross_entropy(x, t, reduction="none")
    p_t = torch.exp(-ce)
    a = torch.where(t == 3, 0.75, 0.25)
    ours = softmax_focal_loss(x, t, alpha=0.25, background_index=3, reduction="none")
    torch.testing.assert_close(ours, a * (1 - p_t) ** 2 * ce)
    torch.testing.assert_close(softmax_focal_loss(x, t, alpha=0.25, background_index=-1, reduction="none"),
                               ours)


def test_softmax_stable_for_large_logits():
    x = torch.tensor([[1000.0, -1000.0, 0.0], [-1000.0, 1000.0, 0.0]])
    t = torch.tensor([1, 1])
    out = softmax_focal_loss(x, t, reduction="none")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, torch.tensor([2000.0, 0.0]))


def test_softmax_all_ignored_is_zero():
    x = _logits(5, 3).requires_grad_()
    t = torch.full((5,), -100)
    out = softmax_focal_loss(x, t)
    out.backward()
    assert out.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


# ---- dtypes, empty inputs, gradients

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_give_fp32(dtype):
    x = _logits(16, 4).to(dtype)
    y = (torch.rand(16, 4) < 0.3).float()
    t = torch.randint(0, 4, (16,))
    a = sigmoid_focal_loss(x, y)
    b = softmax_focal_loss(x, t)
    assert a.dtype == b.dtype == torch.float32
    torch.testing.assert_close(a, torchvision.ops.sigmoid_focal_loss(x.float(), y, reduction="mean"))
    torch.testing.assert_close(b, softmax_focal_loss(x.float(), t))


def test_empty_inputs_zero_and_backprop():
    for fn, tgt in [(sigmoid_focal_loss, torch.zeros(0, 5)),
                    (sigmoid_focal_loss, torch.zeros(0, dtype=torch.long)),
                    (softmax_focal_loss, torch.zeros(0, dtype=torch.long))]:
        for red in ("mean", "sum"):
            x = torch.zeros(0, 5, requires_grad=True)
            out = fn(x, tgt, reduction=red)
            assert out.item() == 0.0
            out.backward()
            assert x.grad.shape == (0, 5)


def test_gradcheck_sigmoid():
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    y = torch.rand(6, 3, dtype=torch.float64)
    w = torch.rand(6, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: sigmoid_focal_loss(p, y, w, gamma=2.0, alpha=[0.2, 0.5, 0.7]), (x,))
    labels = torch.tensor([0, 3, 1, 2, 3, 0])
    assert torch.autograd.gradcheck(lambda p: sigmoid_focal_loss(p, labels, reduction="none", gamma=1.5), (x,))


def test_gradcheck_softmax():
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[0, 3], [-100, 1], [2, 2]])
    w = torch.rand(3, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: softmax_focal_loss(p, t, w, gamma=2.0, alpha=[1.0, 0.5, 2.0, 0.1]), (x,))


# ---- properties

@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 8), c=st.integers(1, 6), gamma=st.floats(0, 5), scale=st.floats(0.1, 20),
       seed=st.integers(0, 2**16))
def test_focal_never_exceeds_cross_entropy(n, c, gamma, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, generator=g, dtype=torch.float64) * scale
    y = torch.rand(n, c, generator=g, dtype=torch.float64)
    bce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert (sigmoid_focal_loss(x, y, alpha=None, gamma=gamma, reduction="none") <= bce).all()
    t = torch.randint(0, c, (n,), generator=g)
    ce = F.cross_entropy(x, t, reduction="none")
    fl = softmax_focal_loss(x, t, gamma=gamma, reduction="none")
    assert (fl <= ce).all() and (fl >= 0).all()
    if gamma == 0:
        torch.testing.assert_close(fl, ce)


def test_gamma_downweights_easy_examples():
    # an easy positive (p = 0.99) loses a factor (0.01)^2 against CE, a hard one (p = 0.01) ~1
    x = torch.tensor([[math.log(99.0)], [-math.log(99.0)]])
    y = torch.ones(2, 1)
    ratio = sigmoid_focal_loss(x, y, alpha=None, reduction="none") / \
        F.binary_cross_entropy_with_logits(x, y, reduction="none")
    torch.testing.assert_close(ratio.flatten(), torch.tensor([1e-4, 0.99 ** 2]))
