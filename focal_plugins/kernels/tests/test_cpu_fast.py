"""The chunked CPU fast paths vs the core's reference math (fp32, per element)."""
import pytest
import torch
import torch.nn.functional as F

from focal_plugins import kernels as KK
from focal_plugins.core.sigmoid_focal import sigmoid_focal_reference as _sigmoid_focal_reference
from focal_plugins.kernels import cpu as kcpu


def close(got, want):
    """|got - want| <= 1e-5 |want| + 1e-6 max|want| elementwise, all finite."""
    got, want = got.detach().double(), want.detach().double()
    assert got.shape == want.shape
    assert torch.isfinite(got).all()
    atol = 1e-6 * max(want.abs().max().item(), 1e-30)
    err = (got - want).abs() - 1e-5 * want.abs()
    assert (err <= atol).all(), f"worst excess {err.max().item():.3g} > {atol:.3g}"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    # several chunks (and a ragged last one) even at test sizes
    monkeypatch.setattr(kcpu, "CHUNK", 1000)


@pytest.mark.parametrize("gamma", [2.0, 0.0, 1.0, 1.5, 3.0])
@pytest.mark.parametrize("wkind", [None, "row", "row1", "elem"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_sigmoid_focal_cpu_matches_reference(gamma, wkind, reduction):
    gen = torch.Generator().manual_seed(hash((gamma, wkind, reduction)) % 1000)
    N, C = 301, 13
    x = (torch.randn(N, C, generator=gen) * 4).requires_grad_()
    lab = torch.randint(0, C + 1, (N,), generator=gen)
    t = (lab[:, None] == torch.arange(C)).float()
    ap, an = torch.rand(C, generator=gen), torch.rand(C, generator=gen)
    w = {None: None, "row": torch.rand(N, generator=gen), "row1": torch.rand(N, 1, generator=gen),
         "elem": torch.rand(N, C, generator=gen)}[wkind]
    ref = _sigmoid_focal_reference(x, t, ap, an, gamma)
    if w is not None:
        ref = ref * (w[:, None] if w.dim() == 1 else w)
    if reduction == "sum":
        ref = ref.sum()
    out = KK.sigmoid_focal(x, lab, w, ap, an, gamma, reduction, backend="cpu")
    close(out, ref)
    go = torch.rand(ref.shape, generator=gen) + 0.5
    g, = torch.autograd.grad(out, x, go)
    gr, = torch.autograd.grad(ref, x, go)
    close(g, gr)


def test_sigmoid_focal_cpu_extreme_logits_and_half():
    x = torch.tensor([[-120.0, -30.0, 0.0, 30.0, 120.0]] * 6)
    lab = torch.tensor([0, 1, 2, 3, 4, 5])
    a = torch.full((5,), 0.25)
    out = KK.sigmoid_focal(x, lab, None, a, 1 - a, 2.0, "none", backend="cpu")
    ref = _sigmoid_focal_reference(x.double(), (lab[:, None] == torch.arange(5)).double(),
                                   a.double(), 1 - a.double(), 2.0)
    close(out, ref)
    xh = torch.randn(50, 7).half().requires_grad_()
    lab = torch.randint(0, 8, (50,))
    a = torch.full((7,), 0.25)
    out = KK.sigmoid_focal(xh, lab, None, a, 1 - a, 2.0, "sum", backend="cpu")
    assert out.dtype == torch.float32
    g, = torch.autograd.grad(out, xh)
    assert g.dtype == torch.float16
    xr = xh.detach().float().requires_grad_()
    ref = _sigmoid_focal_reference(xr, (lab[:, None] == torch.arange(7)).float(), a, 1 - a, 2.0).sum()
    close(out, ref)


def test_second_backward_fails_loudly():
    # the saved gradient is scaled in place: a retained graph must not silently reuse it
    x = torch.randn(20, 5, requires_grad=True)
    lab = torch.randint(0, 6, (20,))
    a = torch.full((5,), 0.25)
    out = KK.sigmoid_focal(x, lab, None, a, 1 - a, 2.0, "sum", backend="cpu")
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError):
        out.backward()


def _weigh(tot, acc=None, m=0.0):
    def weigh(counts):
        nonempty = counts > 0
        if acc is not None:
            acc.copy_(torch.where(nonempty, m * acc + (1 - m) * counts, acc))
        dens = acc if acc is not None else counts
        return tot / dens / nonempty.sum().clamp_min(1)
    return weigh


@pytest.mark.parametrize("lwkind", [None, "row", "elem"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_ghmc_cpu_matches_reference(lwkind, reduction):
    gen = torch.Generator().manual_seed(7)
    N, C, bins, m = 257, 11, 30, 0.75
    edges = torch.arange(bins + 1).float() / bins
    edges[-1] += 1e-6
    acc_ref, acc = torch.zeros(bins), torch.zeros(bins)
    for _ in range(3):
        x = (torch.randn(N, C, generator=gen) * 3).requires_grad_()
        lab = torch.randint(0, C + 1, (N,), generator=gen)
        t = (lab[:, None] == torch.arange(C)).float()
        lw = {None: None, "row": (torch.rand(N, generator=gen) > 0.3).float(),
              "elem": (torch.rand(N, C, generator=gen) > 0.3).float()}[lwkind]
        valid = torch.ones(N, C) if lw is None else ((lw[:, None] if lw.dim() == 1 else lw) > 0).float().expand(N, C)
        tot = valid.sum().clamp_min(1)
        g = (x.detach().sigmoid() - t).abs()
        idx = torch.bucketize(g, edges[1:-1], right=True)
        counts = torch.zeros(bins).scatter_add_(0, idx.flatten(), valid.flatten())
        w = torch.where(valid > 0, _weigh(tot, acc_ref, m)(counts)[idx], torch.zeros(()))
        ref = F.binary_cross_entropy_with_logits(x, t, reduction="none") * w
        ref = ref.sum() if reduction == "sum" else ref
        out = KK.ghm_sigmoid(x, lab, lw, edges, _weigh(tot, acc, m), reduction, backend="cpu")
        close(out, ref)
        close(acc, acc_ref)
        go = torch.rand(ref.shape, generator=gen) + 0.5
        close(torch.autograd.grad(out, x, go)[0], torch.autograd.grad(ref, x, go)[0])


def test_public_auto_uses_cpu_fast_path_and_equals_reference(monkeypatch):
    import focal_plugins as fp
    calls = []
    real = kcpu._SigmoidFocalCPU.forward

    def spy(*a):
        calls.append(1)
        return real(*a)
    monkeypatch.setattr(kcpu._SigmoidFocalCPU, "forward", staticmethod(spy))
    gen = torch.Generator().manual_seed(3)
    N, C = 211, 9
    for red, avg in (("mean", None), ("mean", 17.0), ("sum", None), ("none", None)):
        x = (torch.randn(N, C, generator=gen) * 3).requires_grad_()
        lab = torch.randint(0, C + 1, (N,), generator=gen)
        w = torch.rand(N, generator=gen)
        a = fp.sigmoid_focal_loss(x, lab, w, reduction=red, avg_factor=avg)
        b = fp.sigmoid_focal_loss(x, lab, w, reduction=red, avg_factor=avg, impl="reference")
        close(a, b)
        go = torch.rand(b.shape, generator=gen) + 0.5
        close(torch.autograd.grad(a, x, go)[0], torch.autograd.grad(b, x, go)[0])
    assert len(calls) == 4
    mf, mr = fp.GHMC(bins=30, momentum=0.75), fp.GHMC(bins=30, momentum=0.75, impl="reference")
    for _ in range(3):
        x = (torch.randn(N, C, generator=gen) * 3).requires_grad_()
        lab = torch.randint(0, C + 1, (N,), generator=gen)
        lw = (torch.rand(N, generator=gen) > 0.2).float()
        a, b = mf(x, lab, lw), mr(x, lab, lw)
        close(a, b)
        close(torch.autograd.grad(a, x)[0], torch.autograd.grad(b, x)[0])
        close(mf.acc_sum, mr.acc_sum)


@pytest.mark.parametrize("bins", [1, 2, 3, 7, 10, 30, 100, 254])
def test_bin_index_equals_bucketize_at_the_edges(bins):
    # every edge and its float neighbours (where floor(g * bins) rounds the wrong way),
    # 0, 1 and random g: the same bin as bucketize on GHMC's float32 edges
    edges = torch.arange(bins + 1).float() / bins
    edges[-1] += 1e-6
    assert kcpu._uniform_edges(edges, bins)
    e = edges[:bins]
    near = [e]
    lo, hi = e, e
    for _ in range(3):
        lo, hi = torch.nextafter(lo, torch.tensor(-1.0)), torch.nextafter(hi, torch.tensor(2.0))
        near += [lo, hi]
    g = torch.cat(near + [torch.tensor([0.0, 1.0]), torch.rand(5000)]).clamp(0, 1)
    g = g.reshape(1, -1)
    T, U, V = (torch.empty_like(g) for _ in range(3))
    got = kcpu._bin_index(g, bins, T, U, V)
    want = torch.bucketize(g, edges[1:-1], right=True)
    assert torch.equal(got.long(), want)
    if bins in (100, 254):     # the uncorrected floor really is off here (not for 30)
        assert ((g * bins).floor().clamp(0, bins - 1).long() != want).any()


def test_ghmc_cpu_nonuniform_edges_extreme_logits_and_no_grad():
    gen = torch.Generator().manual_seed(5)
    N, C, bins = 97, 6, 10
    x = (torch.randn(N, C, generator=gen) * 3)
    x[:4] = torch.tensor([-120.0, -30.0, 0.0, 30.0, 120.0, 90.0])
    lab = torch.randint(0, C + 1, (N,), generator=gen)
    t = (lab[:, None] == torch.arange(C)).float()
    for edges in (torch.arange(bins + 1).float() / bins + torch.tensor([0.0] + [0.013] * (bins - 1) + [1e-6]),
                  torch.cat([torch.arange(bins).float() / bins, torch.tensor([1.0 + 1e-6])])):
        uniform = kcpu._uniform_edges(edges, bins)
        tot = torch.tensor(float(N * C))
        g = (x.sigmoid() - t).abs()
        idx = torch.bucketize(g, edges[1:-1], right=True)
        counts = torch.zeros(bins).scatter_add_(0, idx.flatten(), torch.ones(N * C))
        w = _weigh(tot)(counts)[idx]
        ref = F.binary_cross_entropy_with_logits(x.double(), t.double(), reduction="none") * w
        xr = x.clone().requires_grad_()
        out = KK.ghm_sigmoid(xr, lab, None, edges, _weigh(tot), "none", backend="cpu")
        close(out, ref)
        close(torch.autograd.grad(out.sum(), xr)[0], (x.sigmoid() - t) * w)
        with torch.no_grad():                   # inference: no gradient buffer, same loss
            close(KK.ghm_sigmoid(x, lab, None, edges, _weigh(tot), "sum", backend="cpu"),
                  ref.sum())
        assert uniform == (edges[1] == 0.1).item()


def test_ghmc_second_backward_fails_loudly():
    x = torch.randn(20, 5, requires_grad=True)
    lab = torch.randint(0, 6, (20,))
    edges = torch.arange(11).float() / 10
    edges[-1] += 1e-6
    out = KK.ghm_sigmoid(x, lab, None, edges, _weigh(torch.tensor(100.0)), "sum", backend="cpu")
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError):
        out.backward()


def test_large_chunks_sum_near_equal_terms_accurately(monkeypatch):
    # RetinaNet's prior-initialised logits give millions of near-equal loss terms: a chunk
    # sum accumulated in fp32 (BLAS dot) was 1e-4 off; the totals must stay at fp32 level
    import focal_plugins as fp
    monkeypatch.setattr(kcpu, "CHUNK", 1 << 18)
    gen = torch.Generator().manual_seed(11)
    N, C = 20000, 80
    x = -4.59512 + torch.randn(N, C, generator=gen) * 0.01
    lab = torch.full((N,), C)
    lab[:200] = torch.randint(0, C, (200,), generator=gen)
    lw = (torch.rand(N, generator=gen) > 0.1).float()
    mf, mr = fp.GHMC(bins=30, momentum=0.75), fp.GHMC(bins=30, momentum=0.75, impl="reference")
    for _ in range(2):
        torch.testing.assert_close(mf(x, lab, lw), mr(x, lab, lw), rtol=2e-6, atol=0)
    torch.testing.assert_close(fp.sigmoid_focal_loss(x, lab),
                               fp.sigmoid_focal_loss(x, lab, impl="reference"), rtol=2e-6, atol=0)


# ---- float targets (one-hot or soft), the form torchvision and fvcore take

@pytest.mark.parametrize("gamma", [2.0, 0.0, 1.0, 1.5, 0.5])
@pytest.mark.parametrize("wkind", [None, "row", "elem"])
@pytest.mark.parametrize("tkind", ["soft", "onehot"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_sigmoid_focal_cpu_float_targets_match_reference(gamma, wkind, tkind, reduction):
    gen = torch.Generator().manual_seed(hash((gamma, wkind, tkind, reduction)) % 1000)
    N, C = 301, 13
    x = (torch.randn(N, C, generator=gen) * 4).requires_grad_()
    if tkind == "soft":
        t = torch.rand(N, C, generator=gen) * 0.98 + 0.01          # inside (0, 1)
    else:
        t = (torch.randint(0, C + 1, (N,), generator=gen)[:, None] == torch.arange(C)).float()
    ap, an = torch.rand(C, generator=gen), torch.rand(C, generator=gen)
    w = {None: None, "row": torch.rand(N, generator=gen),
         "elem": torch.rand(N, C, generator=gen)}[wkind]
    ref = _sigmoid_focal_reference(x.double(), t.double(), ap.double(), an.double(), gamma)
    if w is not None:
        ref = ref * (w[:, None] if w.dim() == 1 else w).double()
    if reduction == "sum":
        ref = ref.sum()
    out = KK.sigmoid_focal(x, t, w, ap, an, gamma, reduction, backend="cpu")
    assert out.dtype == torch.float32
    close(out, ref)
    go = torch.rand(ref.shape, generator=gen) + 0.5
    close(torch.autograd.grad(out, x, go)[0], torch.autograd.grad(ref, x, go.double())[0])


def test_sigmoid_focal_cpu_float_targets_extreme_logits_and_uniform_alpha():
    x = torch.tensor([[-120.0, -30.0, 0.0, 30.0, 120.0]] * 3).requires_grad_()
    t = torch.tensor([[0.0] * 5, [1.0] * 5, [0.3] * 5])
    for a in (torch.full((5,), 0.25), torch.ones(5)):
        out = KK.sigmoid_focal(x, t, None, a, 1 - a if a[0] < 1 else a, 2.0, "none", backend="cpu")
        ref = _sigmoid_focal_reference(x.double(), t.double(), a.double(),
                                       (1 - a if a[0] < 1 else a).double(), 2.0)
        close(out, ref)
        g = torch.autograd.grad(out.sum(), x)[0]
        assert torch.isfinite(g).all()
        close(g, torch.autograd.grad(ref.sum(), x)[0])


@pytest.mark.parametrize("lwkind", [None, "row", "elem"])
@pytest.mark.parametrize("reduction", ["none", "sum"])
def test_ghmc_cpu_float_targets_match_reference(lwkind, reduction):
    gen = torch.Generator().manual_seed(9)
    N, C, bins, m = 257, 11, 30, 0.75
    edges = torch.arange(bins + 1).float() / bins
    edges[-1] += 1e-6
    acc_ref, acc = torch.zeros(bins), torch.zeros(bins)
    for call in range(3):
        x = (torch.randn(N, C, generator=gen) * 3).requires_grad_()
        t = torch.rand(N, C, generator=gen) if call != 1 else (torch.rand(N, C, generator=gen) < 0.2).float()
        lw = {None: None, "row": (torch.rand(N, generator=gen) > 0.3).float(),
              "elem": (torch.rand(N, C, generator=gen) > 0.3).float()}[lwkind]
        valid = torch.ones(N, C) if lw is None else ((lw[:, None] if lw.dim() == 1 else lw) > 0).float().expand(N, C)
        tot = valid.sum().clamp_min(1)
        g = (x.detach().sigmoid() - t).abs()
        idx = torch.bucketize(g, edges[1:-1], right=True)
        counts = torch.zeros(bins).scatter_add_(0, idx.flatten(), valid.flatten())
        w = torch.where(valid > 0, _weigh(tot, acc_ref, m)(counts)[idx], torch.zeros(()))
        ref = F.binary_cross_entropy_with_logits(x, t, reduction="none") * w
        ref = ref.sum() if reduction == "sum" else ref
        out = KK.ghm_sigmoid(x, t, lw, edges, _weigh(tot, acc, m), reduction, backend="cpu")
        close(out, ref)
        close(acc, acc_ref)
        go = torch.rand(ref.shape, generator=gen) + 0.5
        close(torch.autograd.grad(out, x, go)[0], torch.autograd.grad(ref, x, go)[0])


def _fast_losses():
    import focal_plugins as fp
    N, C = 40, 6
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(N, C, generator=gen) * 3
    lab = torch.randint(0, C + 1, (N,), generator=gen)
    return x, {
        "sigmoid_focal_loss": lambda x, impl: fp.sigmoid_focal_loss(x, lab, impl=impl),
        "GHMC": lambda x, impl: fp.GHMC(impl=impl)(x, lab),
    }


@pytest.mark.parametrize("name", ["sigmoid_focal_loss", "GHMC"])
def test_backward_twice_is_a_clear_error_and_works_on_the_reference(name):
    x, calls = _fast_losses()
    a = x.clone().requires_grad_()
    out = calls[name](a, "fused")
    out.backward(retain_graph=True)
    first = a.grad.clone()
    with pytest.raises(RuntimeError, match=r"second backward.*impl='reference'"):
        out.backward()
    b = x.clone().requires_grad_()
    ref = calls[name](b, "reference")
    ref.backward(retain_graph=True)
    ref.backward()
    close(b.grad, 2 * first)


@pytest.mark.parametrize("name", ["sigmoid_focal_loss", "GHMC"])
def test_double_backward_is_a_clear_error_and_works_on_the_reference(name):
    x, calls = _fast_losses()
    a = x.clone().requires_grad_()
    with pytest.raises(RuntimeError, match=r"double backward.*impl='reference'"):
        torch.autograd.grad(calls[name](a, "fused"), a, create_graph=True)
    b = x.clone().requires_grad_().double()
    g, = torch.autograd.grad(calls[name](b, "reference"), b, create_graph=True)
    h, = torch.autograd.grad(g.pow(2).sum(), b)
    assert torch.isfinite(h).all() and h.abs().sum() > 0


@pytest.mark.parametrize("gamma", [2.0, 0.0, 1.0, 0.5, 3.0])
@pytest.mark.parametrize("wkind", [None, "row", "elem"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_small_inputs_whole_tensor_path_matches_reference(gamma, wkind, reduction):
    # numel <= min(SMALL, CHUNK) with labels: the whole-tensor paths of _SigmoidFocalCPU and
    # _GHMCSigmoidCPU (few ops per call), extreme and infinite logits included
    import focal_plugins as fp
    gen = torch.Generator().manual_seed(11)
    N, C = 60, 9
    assert N * C <= min(kcpu.SMALL, kcpu.CHUNK)
    x = torch.randn(N, C, generator=gen) * 4
    x[0, :6] = torch.tensor([float("inf"), float("-inf"), 60.0, -60.0, 0.0, 17.0])
    lab = torch.randint(0, C + 1, (N,), generator=gen)
    lab[0] = 0
    w = None if wkind is None else (torch.rand(N, generator=gen) if wkind == "row"
                                    else torch.rand(N, C, generator=gen))
    for alpha in (0.25, None, [0.1 * k for k in range(1, C + 1)]):
        a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
        kw = dict(alpha=alpha, gamma=gamma, reduction=reduction)
        fa = fp.sigmoid_focal_loss(a, lab, w, impl="fused", **kw)
        fb = fp.sigmoid_focal_loss(b, lab, w, impl="reference", **kw)
        go = torch.rand(fb.shape, generator=gen) + 0.5
        fin = torch.isfinite(fb)
        close(fa[fin] if fa.dim() else fa, fb[fin] if fb.dim() else fb)
        assert torch.equal(torch.isinf(fa), torch.isinf(fb))
        close(torch.autograd.grad(fa, a, go)[0], torch.autograd.grad(fb, b, go)[0])
    lw = None if wkind is None else (w > 0.3).float()
    if lw is not None:
        lw.view(-1)[5] = float("nan")
    xf = x.clone()
    xf[0, :2] = 0.0                  # GHM-C: finite logits (an inf logit's BCE is inf)
    xf[3, 2] = float("nan")
    ms = [fp.GHMC(bins=10, momentum=0.75, impl=impl) for impl in ("fused", "reference")]
    for call in range(2):
        outs = []
        for m in ms:
            xr = xf.clone().requires_grad_()
            out = m(xr, lab, lw, reduction_override=reduction)
            go = torch.ones(out.shape)
            outs.append((out.detach(), torch.autograd.grad(out, xr, go)[0]))
        (oa, ga), (ob, gb) = outs
        torch.testing.assert_close(oa, ob, equal_nan=True)
        torch.testing.assert_close(ga, gb, equal_nan=True)
        torch.testing.assert_close(ms[0].acc_sum, ms[1].acc_sum)
