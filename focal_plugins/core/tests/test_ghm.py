import io

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from focal_plugins import GHMC, GHMR, asl1_loss

from .conftest import mmdet_losses


def _cls_batch(n=80, c=5, zero_weights=True):
    x = torch.randn(n, c) * 2
    labels = torch.randint(0, c + 1, (n,))  # c = background
    lw = (torch.rand(n) > 0.25).float() if zero_weights else torch.ones(n)
    return x, labels, lw


@pytest.mark.parametrize("impl", ["reference", "auto"])
@pytest.mark.parametrize("momentum", [0.0, 0.75])
@pytest.mark.parametrize("zero_weights", [False, True])
@pytest.mark.parametrize("bins", [1, 10, 30])
def test_ghmc_matches_mmdet_over_calls(momentum, zero_weights, bins, impl):
    _, ghm = mmdet_losses()
    ours, ref = GHMC(bins=bins, momentum=momentum, impl=impl), ghm.GHMC(bins=bins, momentum=momentum)
    for step in range(4):
        x, labels, lw = _cls_batch(zero_weights=zero_weights)
        xr = x.clone().requires_grad_()
        xo = x.clone().requires_grad_()
        red = [None, "none", "mean", None][step]
        r = ref(xr, labels, lw, reduction_override=red)
        o = ours(xo, labels, lw, reduction_override=red)
        torch.testing.assert_close(o, r)
        r.sum().backward()
        o.sum().backward()
        torch.testing.assert_close(xo.grad, xr.grad)
    if momentum:
        torch.testing.assert_close(ours.acc_sum, ref.acc_sum, check_dtype=False)


def test_ghmc_matches_mmdet_one_hot_targets_and_elementwise_weights():
    _, ghm = mmdet_losses()
    ours, ref = GHMC(bins=10, momentum=0.5), ghm.GHMC(bins=10, momentum=0.5)
    for _ in range(3):
        x = torch.randn(40, 3) * 3
        y = (torch.rand(40, 3) < 0.3).float()
        lw = (torch.rand(40, 3) > 0.2).float()
        torch.testing.assert_close(ours(x, y, lw), ref(x, y, lw))
    # avg_factor: mmdet ignores it; ours replaces the mean's denominator tot
    x = torch.randn(40, 3)
    y = (torch.rand(40, 3) < 0.3).float()
    lw = torch.ones(40, 3)
    a, b = GHMC(bins=10), ghm.GHMC(bins=10)
    torch.testing.assert_close(a(x, y, lw, avg_factor=10.0),
                               b(x, y, lw, reduction_override="none").sum() / (10.0 + torch.finfo(torch.float32).eps))


def test_ghmc_label_weight_optional():
    _, ghm = mmdet_losses()
    x, labels, _ = _cls_batch()
    torch.testing.assert_close(GHMC()(x, labels), ghm.GHMC()(x, labels, torch.ones(80)))


def test_ghmc_sum_reduction_is_weighted_sum():
    _, ghm = mmdet_losses()
    x, labels, lw = _cls_batch()
    torch.testing.assert_close(GHMC()(x, labels, lw, reduction_override="sum"),
                               ghm.GHMC()(x, labels, lw, reduction_override="none").sum())


@pytest.mark.parametrize("momentum", [0.0, 0.7])
def test_ghmr_matches_mmdet_over_calls(momentum):
    _, ghm = mmdet_losses()
    ours, ref = GHMR(mu=0.02, bins=10, momentum=momentum), ghm.GHMR(mu=0.02, bins=10, momentum=momentum)
    for step in range(4):
        x = torch.randn(50, 4) * 0.1
        y = torch.randn(50, 4) * 0.1
        lw = (torch.rand(50, 4) > 0.3).float() if step % 2 else torch.ones(50, 4)
        red = [None, "none", "sum", "mean"][step]
        xo, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
        o, r = ours(xo, y, lw, reduction_override=red), ref(xr, y, lw, reduction_override=red) \
            if red != "sum" else ref(xr, y, lw, reduction_override="none").sum()
        torch.testing.assert_close(o, r)
        o.sum().backward()
        r.sum().backward()
        torch.testing.assert_close(xo.grad, xr.grad)
    if momentum:
        torch.testing.assert_close(ours.acc_sum, ref.acc_sum, check_dtype=False)


def test_ghmr_avg_factor_honoured():
    _, ghm = mmdet_losses()
    x, y = torch.randn(30, 4) * 0.1, torch.zeros(30, 4)
    lw = torch.ones(30, 4)
    ref = ghm.GHMR()
    torch.testing.assert_close(GHMR()(x, y, lw, avg_factor=None), ref(x, y, lw, avg_factor=None))
    torch.testing.assert_close(GHMR()(x, y, lw, avg_factor=12.0),
                               ref(x, y, lw, reduction_override="none").sum() / (12.0 + torch.finfo(torch.float32).eps))


def test_ghm_loss_weight():
    _, ghm = mmdet_losses()
    x, labels, lw = _cls_batch()
    torch.testing.assert_close(GHMC(loss_weight=2.5)(x, labels, lw), ghm.GHMC(loss_weight=2.5)(x, labels, lw))
    x, y = torch.randn(30, 4) * 0.1, torch.zeros(30, 4)
    torch.testing.assert_close(GHMR(loss_weight=0.5)(x, y, torch.ones(30, 4)),
                               ghm.GHMR(loss_weight=0.5)(x, y, torch.ones(30, 4)))


def test_asl1_values():
    d = torch.tensor([0.0, 0.01, -0.5, 3.0])
    mu = 0.02
    expected = torch.tensor([0.0, (0.01 ** 2 + mu ** 2) ** 0.5 - mu, (0.25 + mu ** 2) ** 0.5 - mu, (9 + mu ** 2) ** 0.5 - mu])
    torch.testing.assert_close(asl1_loss(d, torch.zeros(4), reduction="none"), expected)
    # large |d|: ASL1 -> |d| - mu, like smooth L1 / L1
    torch.testing.assert_close(asl1_loss(torch.tensor([50.0]), torch.zeros(1), mu=0.02, reduction="sum"),
                               F.l1_loss(torch.tensor([50.0]), torch.zeros(1)) - 0.02, atol=1e-4, rtol=0)


# ---- softmax GHM-C

@pytest.mark.parametrize("momentum", [0.0, 0.6])
def test_softmax_ghmc_two_classes_equals_mmdet_sigmoid(momentum):
    # softmax over [0, z]: p_t = sigmoid(z) or 1 - sigmoid(z), so g and CE equal mmdet's sigmoid GHM-C.
    _, ghm = mmdet_losses()
    ours, ref = GHMC(bins=10, momentum=momentum, use_sigmoid=False), ghm.GHMC(bins=10, momentum=momentum)
    for _ in range(3):
        z = torch.randn(60) * 2
        t = torch.randint(0, 2, (60,))
        lw = (torch.rand(60) > 0.2).float()
        two = torch.stack([torch.zeros_like(z), z], 1)
        torch.testing.assert_close(ours(two, t, lw), ref(z[:, None], t[:, None].float(), lw[:, None]))


def test_softmax_ghmc_one_bin_is_cross_entropy():
    x = torch.randn(50, 7)
    t = torch.randint(0, 7, (50,))
    t[:6] = -100
    lw = torch.ones(50)
    lw[6:10] = 0
    keep = torch.ones(50, dtype=torch.bool)
    keep[:10] = False
    ref = F.cross_entropy(x[keep], t[keep])
    torch.testing.assert_close(GHMC(bins=1, use_sigmoid=False)(x, t, lw), ref)


def test_softmax_ghmc_invalid_counted_nowhere():
    # invalid samples (ignore index or label_weight 0) change neither the loss nor the state
    x = torch.randn(30, 4)
    t = torch.randint(0, 4, (30,))
    a, b = GHMC(bins=5, momentum=0.5, use_sigmoid=False), GHMC(bins=5, momentum=0.5, use_sigmoid=False)
    x2 = torch.cat([x, torch.randn(8, 4)])
    t2 = torch.cat([t, torch.full((4,), -100), torch.randint(0, 4, (4,))])
    lw2 = torch.cat([torch.ones(34), torch.zeros(4)])
    for _ in range(2):
        torch.testing.assert_close(b(x2, t2, lw2), a(x, t))
    torch.testing.assert_close(a.acc_sum, b.acc_sum)


# ---- invariants, state, dtypes, empty, gradients

@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 40), bins=st.integers(1, 12), seed=st.integers(0, 2**16))
def test_ghm_weights_sum_to_valid_count(n, bins, seed):
    g = torch.Generator().manual_seed(seed)
    grad_len = torch.rand(n, generator=g)
    grad_len[: n // 5] = 1.0  # g = 1 falls in the last bin
    valid = (torch.rand(n, generator=g) > 0.3).float()
    m = GHMC(bins=bins)
    w, tot, _ = m._weights(grad_len, valid, valid.sum())
    assert torch.all(w[valid == 0] == 0)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(), valid.sum(), rtol=1e-5, atol=1e-5)
    # within a bin the weights are equal, and they are inversely proportional to the bin count
    idx = torch.clamp((grad_len * bins).floor().long(), max=bins - 1)
    counts = torch.bincount(idx[valid > 0], minlength=bins).float()
    nonempty = (counts > 0).sum().clamp_min(1)
    expect = torch.where(valid > 0, valid.sum().clamp_min(1) / (counts[idx] * nonempty), torch.zeros(()))
    torch.testing.assert_close(w, expect)


def test_state_dict_round_trip():
    a = GHMC(bins=10, momentum=0.75)
    for _ in range(3):
        a(*_cls_batch())
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = GHMC(bins=10, momentum=0.75)
    b.load_state_dict(torch.load(buf))
    batch = _cls_batch()
    assert torch.equal(a(*batch), b(*batch))
    assert torch.equal(a.acc_sum, b.acc_sum)
    r = GHMR(momentum=0.7)
    r(torch.randn(20, 4) * 0.1, torch.zeros(20, 4))
    r2 = GHMR(momentum=0.7)
    r2.load_state_dict(r.state_dict())
    x = torch.randn(20, 4) * 0.1
    assert torch.equal(r(x, torch.zeros(20, 4)), r2(x, torch.zeros(20, 4)))


def test_state_dict_interchangeable_with_mmdet():
    _, ghm = mmdet_losses()
    ref = ghm.GHMC(bins=10, momentum=0.75)
    for _ in range(2):
        ref(*_cls_batch())
    ours = GHMC(bins=10, momentum=0.75)
    ours.load_state_dict(ref.state_dict())
    batch = _cls_batch()
    torch.testing.assert_close(ours(*batch), ref(*batch))
    assert set(GHMC().state_dict()) == set(ghm.GHMC().state_dict())


def test_plain_ema_option():
    m = GHMC(bins=2, momentum=0.5, ema="all")
    x = torch.tensor([[-5.0], [-5.0]])  # g ~ 0: bin 0 only
    m(x, torch.zeros(2, 1))
    torch.testing.assert_close(m.acc_sum, torch.tensor([1.0, 0.0], dtype=torch.float64))
    m(torch.tensor([[5.0]]), torch.zeros(1, 1))  # g ~ 1: bin 1 only; bin 0 decays too
    torch.testing.assert_close(m.acc_sum, torch.tensor([0.5, 0.5], dtype=torch.float64))
    d = GHMC(bins=2, momentum=0.5)
    d(x, torch.zeros(2, 1))
    d(torch.tensor([[5.0]]), torch.zeros(1, 1))  # mmdet rule: empty bin 0 keeps its value
    torch.testing.assert_close(d.acc_sum, torch.tensor([1.0, 0.5], dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ghm_half_inputs_give_fp32(dtype):
    x, labels, lw = _cls_batch()
    out = GHMC(bins=10)(x.to(dtype), labels, lw)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, GHMC(bins=10)(x.to(dtype).float(), labels, lw))
    r = GHMR()(torch.randn(10, 4).to(dtype), torch.zeros(10, 4, dtype=dtype))
    assert r.dtype == torch.float32


def test_ghm_empty_inputs():
    for m, target in [(GHMC(momentum=0.5), torch.zeros(0, dtype=torch.long)),
                      (GHMC(use_sigmoid=False), torch.zeros(0, dtype=torch.long)),
                      (GHMR(momentum=0.5), torch.zeros(0, 4))]:
        x = torch.zeros(0, 4, requires_grad=True)
        out = m(x, target)
        assert out.item() == 0.0
        out.backward()
        assert x.grad.shape == (0, 4)
    e = torch.zeros(0, 4, requires_grad=True)
    out = asl1_loss(e, torch.zeros(0, 4))
    out.backward()
    assert out.item() == 0.0


def test_gradcheck_ghm_and_asl1():
    x = (torch.randn(12, 3, dtype=torch.float64) * 2).requires_grad_()
    labels = torch.randint(0, 4, (12,))
    lw = torch.ones(12, dtype=torch.float64)
    lw[3] = 0
    for m in (GHMC(bins=5), GHMC(bins=5, use_sigmoid=False)):
        lab = labels.clamp(max=2) if not m.use_sigmoid else labels
        assert torch.autograd.gradcheck(lambda p: m(p, lab, lw), (x,))
    y = torch.randn(12, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: GHMR(mu=0.5, bins=5)(p, y), (x,))
    w = torch.rand(12, 1, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p: asl1_loss(p, y, w), (x,))


# ---- exact counts at COCO scale (one RetinaNet P3 level is ~24M elements per call)

BIG = 20_971_520            # 2^24 + 2^22: more than float32 can count one by one


def _big_cases():
    """(name, build module, make (pred, target), per-element loss): every input lands in
    one bin. The reference path serves float targets, softmax and GHM-R; integer labels
    take the CPU fast path."""
    import math
    asl1 = math.sqrt(0.5 ** 2 + 0.02 ** 2) - 0.02
    lab_rows = BIG // 80
    return {
        # integer labels, all background: the CPU fast path on "auto"
        "sigmoid labels (CPU fast path)": (
            lambda m: GHMC(momentum=m), lambda: (torch.zeros(lab_rows, 80),
                                                 torch.full((lab_rows,), 80)), math.log(2)),
        "sigmoid float targets": (
            lambda m: GHMC(momentum=m), lambda: (torch.zeros(lab_rows, 80),
                                                 torch.zeros(lab_rows, 80)), math.log(2)),
        "softmax": (
            lambda m: GHMC(momentum=m, use_sigmoid=False),
            lambda: (torch.zeros(BIG // 2, 2), torch.zeros(BIG // 2, dtype=torch.long)),
            math.log(2)),
        "ghmr": (lambda m: GHMR(momentum=m),
                 lambda: (torch.full((BIG // 4, 4), 0.5), torch.zeros(BIG // 4, 4)), asl1),
    }


@pytest.mark.parametrize("case", list(_big_cases()))
def test_counts_exact_beyond_2_24_in_one_bin(case):
    make, batch, per_element = _big_cases()[case]
    pred, target = batch()
    n = pred.numel() if case != "softmax" else pred.shape[0]
    # momentum 0.5, first call: the EMA holds exactly half the count in the one non-empty
    # bin, so every weight is tot / (n / 2) = 2 and the mean is twice the per-element loss
    # (float32 counting stopped at 2^24: weight 2.5)
    m = make(0.5)
    out = m(pred, target)
    assert abs(out.item() - 2 * per_element) < 1e-5 * per_element, out.item()
    assert m.acc_sum.dtype == torch.float64
    assert m.acc_sum.max().item() == n * 0.5 and (m.acc_sum > 0).sum().item() == 1


def test_per_bin_counts_and_ema_exact_in_float64():
    m = GHMC(bins=2, momentum=0.75)
    counts = torch.tensor([2 ** 40 + 1, 3])               # int64, as every path gives them
    w, tot, _ = m.bin_weights(counts, torch.tensor(2 ** 40 + 4))
    assert m.acc_sum.tolist() == [0.25 * (2 ** 40 + 1), 0.75]
    assert tot.dtype == torch.float32


def test_ema_state_stays_float64_under_half_and_loads_mmdet_fp32_state():
    m = GHMC(momentum=0.5).half()
    assert m.acc_sum.dtype == torch.float64
    m.load_state_dict({"edges": m.edges, "acc_sum": torch.arange(10, dtype=torch.float32)})
    assert m.acc_sum.dtype == torch.float64 and m.acc_sum[9].item() == 9.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("impl", ["reference", "auto"])
def test_module_left_on_cpu_follows_cuda_inputs(impl):
    # as mmdet's GHMC, a module that was never .cuda()'d takes CUDA logits: its edges and
    # EMA state move to the logits' device (and the EMA carries on), values unchanged
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=gen)
    lab = torch.randint(0, 7, (300,), generator=gen)
    box = torch.randn(300, 4, generator=gen)
    for make, args in ((lambda: GHMC(bins=10, momentum=0.75, impl=impl), (x, lab)),
                       (lambda: GHMR(mu=0.1, bins=10, momentum=0.7, impl=impl),
                        (x[:, :4], box))):
        left, moved = make(), make().cuda()
        for _ in range(3):
            a = left(*(t.cuda() for t in args))
            b = moved(*(t.cuda() for t in args))
            torch.testing.assert_close(a, b)
        assert left.acc_sum.device.type == "cuda" and left.edges.device.type == "cuda"
        torch.testing.assert_close(left.acc_sum, moved.acc_sum)
        ref = make()
        for _ in range(3):
            c = ref(*args)
        torch.testing.assert_close(a.cpu(), c, rtol=1e-5, atol=1e-6)
