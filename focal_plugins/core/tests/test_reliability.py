"""The core's reliability classes of issue 23, item 6: each test failed before its fix
(on e5bc101) and names the defect."""
import pytest
import torch

import focal_plugins as fp
from focal_plugins import GHMC, GHMR


def _batch(N=32, C=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(N, C, generator=gen) * 2, torch.randint(0, C + 1, (N,), generator=gen), gen


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_module_cast_keeps_bin_edges_and_ema_state_exact(dtype):
    # .to(bfloat16) rounded the edges buffer (fl32(k / 30) -> bf16) and changed the loss;
    # .half() rounded acc_sum through fp16 before restoring float64 (2049 -> 2048)
    x, lab, _ = _batch()
    plain = GHMC(bins=30, momentum=0.5)
    cast = GHMC(bins=30, momentum=0.5)
    cast.acc_sum.fill_(2049.0)
    plain.acc_sum.fill_(2049.0)
    cast = cast.to(dtype)
    assert cast.edges.dtype == torch.float32 and torch.equal(cast.edges, plain.edges)
    assert cast.acc_sum.dtype == torch.float64 and torch.equal(cast.acc_sum, plain.acc_sum)
    torch.testing.assert_close(cast(x, lab), plain(x, lab), rtol=0, atol=0)
    r = GHMR(bins=10).to(dtype)
    assert torch.equal(r.edges, GHMR(bins=10).edges)


def test_narrow_integer_labels_are_compared_in_int64():
    # uint8 156 == -100 in uint8 arithmetic: label 156 was taken for ignore_index
    gen = torch.Generator().manual_seed(1)
    C = 200
    x = torch.randn(4, C, generator=gen)
    lab = torch.tensor([156, 3, 199, 0])
    for dt in (torch.uint8, torch.int16, torch.int32):
        torch.testing.assert_close(fp.softmax_focal_loss(x, lab.to(dt)),
                                   fp.softmax_focal_loss(x, lab))
        m = GHMC(bins=10, use_sigmoid=False, impl="reference")
        torch.testing.assert_close(m(x, lab.to(dt), reduction_override="none"),
                                   m(x, lab, reduction_override="none"))
    with pytest.raises(ValueError, match="target labels must lie in"):
        fp.softmax_focal_loss(x[:, :100], lab.to(torch.uint8))     # 156, 199 >= C = 100
    xs = torch.randn(4, 300, generator=gen)
    lab8 = torch.tensor([255, 0, 7, 128], dtype=torch.uint8)
    torch.testing.assert_close(fp.sigmoid_focal_loss(xs, lab8), fp.sigmoid_focal_loss(xs, lab8.long()))


@pytest.mark.parametrize("impl", ["reference", "auto"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_ghmr_non_finite_label_weight_names_label_weight(impl, bad):
    # the error named avg_factor, which nobody passed (GHM-R's tot is the label weights' sum)
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(10, 4, generator=gen), torch.randn(10, 4, generator=gen)
    lw = torch.ones(10, 4)
    lw[2, 1] = bad
    with pytest.raises(ValueError, match=r"label_weight must be finite.*" + str(bad)):
        GHMR(impl=impl)(x, y, lw)


def test_second_backward_with_float_targets_is_the_documented_error():
    # the soft-target CPU path scaled its gradient in place without the guard: torch's
    # in-place version error instead of the documented one
    x, lab, gen = _batch()
    t = torch.rand(x.shape, generator=gen)
    a = x.clone().requires_grad_()
    out = fp.sigmoid_focal_loss(a, t, impl="fused")
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match=r"second backward.*impl='reference'"):
        out.backward()


@pytest.mark.parametrize("use_sigmoid", [True, False])
def test_jit_trace_of_ghmc_traces_the_reference(use_sigmoid):
    # tracing the CPU fast path's autograd Function failed with "unordered_map::at"
    x, lab, _ = _batch()
    if not use_sigmoid:
        lab = lab.clamp(max=x.shape[1] - 1)
    m = GHMC(bins=10, use_sigmoid=use_sigmoid)
    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(m, (x, lab), check_trace=False)
    torch.testing.assert_close(traced(x, lab), GHMC(bins=10, use_sigmoid=use_sigmoid)(x, lab))
    for f in (lambda a: fp.sigmoid_focal_loss(a, lab.clamp(max=x.shape[1])),):
        torch.testing.assert_close(torch.jit.trace(f, (x,), check_trace=False)(x), f(x))
    with pytest.raises(RuntimeError, match="torch.jit.trace cannot record the fused GHMC"):
        torch.jit.trace(GHMC(bins=10, impl="fused"), (x, lab.clamp(max=x.shape[1] - 1)),
                        check_trace=False)
