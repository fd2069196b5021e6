"""Triton kernels vs the core's reference math, on random data. Run in its own process:

    TRITON_INTERPRET=1 python -m focal_plugins.kernels.tests._kernel_checks cpu   # CI
    python -m focal_plugins.kernels.tests._kernel_checks cuda                     # a GPU

Every kernel output is prefilled with NaN (ints: a large negative) so an element the
kernel leaves unwritten fails the comparison. "budget" runs the public losses on the
fused path and fails on a host-synchronising op or on more than 1.5x the logits' bytes
allocated. Prints one line per check and "ALL OK".
"""
import os
import sys

DEVICE = sys.argv[1] if len(sys.argv) > 1 else "cpu"
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"     # before triton's first import

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from focal_plugins import kernels as KK  # noqa: E402
from focal_plugins.core.sigmoid_focal import sigmoid_focal_reference as _sigmoid_focal_reference  # noqa: E402
from focal_plugins.core.softmax_focal import softmax_focal_reference as _softmax_focal_reference  # noqa: E402
from focal_plugins.kernels import _triton  # noqa: E402

_triton.FILL_NAN = True
RTOL = 1e-5
N_CHECKS = 0


def close(name, got, want, scale=None):
    """fp32: |got - want| <= 1e-5 |want| + atol, atol = 1e-6 * max|want| (fp32 rounding of
    terms of that size); NaN anywhere (an unwritten element) fails."""
    global N_CHECKS
    got, want = got.detach().double().cpu(), want.detach().double().cpu()
    assert got.shape == want.shape, (name, got.shape, want.shape)
    assert torch.isfinite(got).all(), f"{name}: non-finite (unwritten?) elements"
    s = want.abs().max().item() if scale is None else scale
    atol = 1e-6 * max(s, 1e-30)
    bad = (got - want).abs() > RTOL * want.abs() + atol
    assert not bad.any(), (f"{name}: {int(bad.sum())} elements off, worst "
                           f"{(got - want).abs().max().item():.3g} (atol {atol:.3g})")
    N_CHECKS += 1


def ref_grad(loss, x, go):
    g, = torch.autograd.grad(loss, x, go)
    return g


def check_sigmoid_focal(gen):
    N, C = 300, 13
    for gamma in (2.0, 0.0, 1.5):
        for tkind in ("labels", "soft"):
            for wkind in (None, "row", "elem"):
                for red in ("none", "sum"):
                    x = (torch.randn(N, C, generator=gen) * 4).to(DEVICE).requires_grad_()
                    lab = torch.randint(0, C + 1, (N,), generator=gen).to(DEVICE)
                    tf = (lab[:, None] == torch.arange(C, device=DEVICE)).float()
                    if tkind == "soft":
                        tf = torch.rand(N, C, generator=gen).to(DEVICE)
                    tgt = lab if tkind == "labels" else tf
                    ap = torch.rand(C, generator=gen).to(DEVICE)
                    an = torch.rand(C, generator=gen).to(DEVICE)
                    w = None if wkind is None else (
                        torch.rand(N, generator=gen) if wkind == "row"
                        else torch.rand(N, C, generator=gen)).to(DEVICE)
                    ref = _sigmoid_focal_reference(x, tf, ap, an, gamma)
                    if w is not None:
                        ref = ref * (w[:, None] if w.dim() == 1 else w)
                    if red == "sum":
                        ref = ref.sum()
                    go = torch.rand(ref.shape, generator=gen).to(DEVICE) + 0.5
                    out = KK.sigmoid_focal(x, tgt, w, ap, an, gamma, red)
                    tag = f"sigmoid_focal g={gamma} {tkind} w={wkind} {red}"
                    close(tag + " loss", out, ref)
                    close(tag + " grad", ref_grad(out, x, go), ref_grad(ref, x, go))


def check_sigmoid_focal_lowp(gen):
    N, C = 200, 9
    for dt in (torch.float16, torch.bfloat16):
        x = (torch.randn(N, C, generator=gen) * 3).to(DEVICE).to(dt).requires_grad_()
        lab = torch.randint(0, C + 1, (N,), generator=gen).to(DEVICE)
        tf = (lab[:, None] == torch.arange(C, device=DEVICE)).float()
        a = torch.full((C,), 0.25, device=DEVICE)
        xr = x.detach().float().requires_grad_()
        ref = _sigmoid_focal_reference(xr, tf, a, 1 - a, 2.0).sum()
        out = KK.sigmoid_focal(x, lab, None, a, 1 - a, 2.0, "sum")
        close(f"sigmoid_focal {dt} loss", out, ref)
        g, = torch.autograd.grad(out, x)
        assert g.dtype == dt
        gr, = torch.autograd.grad(ref, xr)
        # the gradient is rounded once to the low precision type
        eps = torch.finfo(dt).eps
        assert ((g.float() - gr).abs() <= eps * gr.abs() + 1e-6).all(), f"{dt} grad"


def check_softmax_focal(gen):
    for N, C in ((257, 11), (64, 81)):
        for gamma in (2.0, 0.0, 0.7):
            for with_a, with_w in ((False, False), (True, True)):
                for red in ("none", "sum"):
                    x = (torch.randn(N, C, generator=gen) * 4).to(DEVICE).requires_grad_()
                    lab = torch.randint(0, C, (N,), generator=gen)
                    lab[::7] = -100
                    lab = lab.to(DEVICE)
                    a = torch.rand(C, generator=gen).to(DEVICE) if with_a else None
                    w = torch.rand(N, generator=gen).to(DEVICE) if with_w else None
                    ref = _softmax_focal_reference(
                        x, lab, a if a is not None else torch.ones(C, device=DEVICE), gamma, -100)
                    if w is not None:
                        ref = ref * w
                    if red == "sum":
                        ref = ref.sum()
                    go = torch.rand(ref.shape, generator=gen).to(DEVICE) + 0.5
                    out = KK.softmax_focal(x, lab, w, a, gamma, -100, red)
                    tag = f"softmax_focal {N}x{C} g={gamma} a/w={with_a} {red}"
                    close(tag + " loss", out, ref)
                    close(tag + " grad", ref_grad(out, x, go), ref_grad(ref, x, go))


def _weigh(tot, acc=None, m=0.0):
    def weigh(counts):
        nonempty = counts > 0
        if acc is not None:
            acc.copy_(torch.where(nonempty, m * acc + (1 - m) * counts, acc))
            dens = acc
        else:
            dens = counts
        return tot / dens / nonempty.sum().clamp_min(1)
    return weigh


def _ref_ghm(loss, g, valid, edges, tot, acc=None, m=0.0):
    bins = edges.numel() - 1
    idx = torch.bucketize(g, edges[1:-1], right=True)
    counts = torch.zeros(bins, device=g.device).scatter_add_(0, idx.flatten(), valid.flatten())
    per_bin = _weigh(tot, acc, m)(counts)
    w = torch.where(valid > 0, per_bin[idx], torch.zeros((), device=g.device))
    return loss * w


def check_ghm(gen):
    N, C, bins = 300, 12, 30
    edges = torch.arange(bins + 1).float() / bins
    edges[-1] += 1e-6
    edges = edges.to(DEVICE)
    for tkind in ("labels", "soft"):
        for lwkind in (None, "row", "elem"):
            for red in ("none", "sum"):
                accs = [torch.zeros(bins, device=DEVICE) for _ in range(2)]
                for call in range(3):   # momentum state over several calls
                    x = (torch.randn(N, C, generator=gen) * 3).to(DEVICE).requires_grad_()
                    lab = torch.randint(0, C + 1, (N,), generator=gen).to(DEVICE)
                    tf = (lab[:, None] == torch.arange(C, device=DEVICE)).float()
                    if tkind == "soft":
                        tf = torch.rand(N, C, generator=gen).to(DEVICE)
                    lw = None if lwkind is None else (
                        (torch.rand(N, generator=gen) > 0.3).float() if lwkind == "row"
                        else (torch.rand(N, C, generator=gen) > 0.3).float()).to(DEVICE)
                    valid = torch.ones(N, C, device=DEVICE) if lw is None else (
                        (lw[:, None] if lw.dim() == 1 else lw) > 0).float().expand(N, C)
                    tot = valid.sum().clamp_min(1)
                    g = (x.detach().sigmoid() - tf).abs()
                    bce = F.binary_cross_entropy_with_logits(x, tf, reduction="none")
                    ref = _ref_ghm(bce, g, valid, edges, tot, accs[0], 0.75)
                    ref = ref.sum() if red == "sum" else ref
                    out = KK.ghm_sigmoid(x, lab if tkind == "labels" else tf, lw, edges,
                                         _weigh(tot, accs[1], 0.75), red)
                    tag = f"ghmc sigmoid {tkind} lw={lwkind} {red} call{call}"
                    go = torch.rand(ref.shape, generator=gen).to(DEVICE) + 0.5
                    close(tag + " loss", out, ref)
                    close(tag + " grad", ref_grad(out, x, go), ref_grad(ref, x, go))
                    close(tag + " ema", accs[1], accs[0])
    # softmax GHM-C over rows (C = 81: several programs, each over several row tiles)
    for C, red in ((12, "none"), (12, "sum"), (81, "none"), (81, "sum")):
        x = (torch.randn(N, C, generator=gen) * 3).to(DEVICE).requires_grad_()
        lab = torch.randint(0, C, (N,), generator=gen)
        lab[::5] = -100
        lab = lab.to(DEVICE)
        lw = (torch.rand(N, generator=gen) > 0.2).float().to(DEVICE)
        keep = lab != -100
        valid = ((lw * keep) > 0).float()
        tot = valid.sum().clamp_min(1)
        lpt = x.log_softmax(1).gather(1, torch.where(keep, lab, 0)[:, None])[:, 0]
        ref = _ref_ghm(-lpt, 1 - lpt.detach().exp(), valid, edges, tot)
        ref = ref.sum() if red == "sum" else ref
        out = KK.ghm_softmax(x, lab, lw, edges, -100, _weigh(tot), red)
        go = torch.rand(ref.shape, generator=gen).to(DEVICE) + 0.5
        close(f"ghmc softmax C={C} {red} loss", out, ref)
        close(f"ghmc softmax C={C} {red} grad", ref_grad(out, x, go), ref_grad(ref, x, go))
    # GHM-R (ASL1)
    mu, bins = 0.02, 10
    edges = torch.arange(bins + 1).float() / bins
    edges[-1] = 1e3
    edges = edges.to(DEVICE)
    for red in ("none", "sum"):
        x = (torch.randn(500, 4, generator=gen) * 0.1).to(DEVICE).requires_grad_()
        y = (torch.randn(500, 4, generator=gen) * 0.1).to(DEVICE)
        lw = (torch.rand(500, 4, generator=gen) > 0.3).float().to(DEVICE)
        d = (x - y).detach()
        g = d.abs() / torch.sqrt(mu * mu + d * d)
        tot = lw.sum().clamp_min(1)
        loss = torch.sqrt((x - y) ** 2 + mu * mu) - mu
        ref = _ref_ghm(loss, g, (lw > 0).float(), edges, tot)
        ref = ref.sum() if red == "sum" else ref
        out = KK.ghm_asl1(x, y, lw, edges, mu, _weigh(tot), red)
        go = torch.rand(ref.shape, generator=gen).to(DEVICE) + 0.5
        close(f"ghmr {red} loss", out, ref)
        close(f"ghmr {red} grad", ref_grad(out, x, go), ref_grad(ref, x, go))


def check_counts(gen):
    """The histogram passes count in int64, equal to the reference's integer counts."""
    import focal_plugins as fp
    N, C, bins = 700, 9, 10
    x = (torch.randn(N, C, generator=gen) * 3).to(DEVICE)
    lab = torch.randint(0, C + 1, (N,), generator=gen).to(DEVICE)
    lw = (torch.rand(N, generator=gen) > 0.3).float().to(DEVICE)
    m = fp.GHMC(bins=bins, impl="reference").to(DEVICE)
    tf = (lab[:, None] == torch.arange(C, device=DEVICE)).float()
    g = (x.sigmoid() - tf).abs()
    _, want, _ = m.bin_counts(g, (lw[:, None] > 0).float().expand(N, C))
    got, _ = _triton.ghm_elem_hist(x, lab, lw, m.edges, bins, 0)
    assert got.dtype == torch.int64 and torch.equal(got, want), (got, want)
    xs = x[:, :4].contiguous()
    ls = lab.clamp(max=3)
    ms = fp.GHMC(bins=bins, use_sigmoid=False, impl="reference").to(DEVICE)
    loss, gs, lws = ms.elements(xs, ls, lw)
    _, want, _ = ms.bin_counts(gs, (lws > 0).float())
    got, _ = _triton.ghm_rows_hist(xs, ls, lw, ms.edges, bins, -100)
    assert got.dtype == torch.int64 and torch.equal(got, want), (got, want)
    global N_CHECKS
    N_CHECKS += 2


def check_bins(gen):
    """The binning rule of focal_plugins.core.density: the kernels' ``_bin_or_none`` gives
    the rule's bin (NaN: none) at every edge, its float32 neighbours, 0 and 1, for GHM-C's
    and GHM-R's edges; the same values as core/tests/test_density.py."""
    from focal_plugins.core import density
    from focal_plugins.core.tests.test_density import BINS, edge_values, rule
    from focal_plugins.kernels import cpu as kcpu
    global N_CHECKS
    for bins in BINS:
        for last in (density.GHMC_LAST_EDGE, density.GHMR_LAST_EDGE):
            edges = density.bin_edges(bins, last)
            g = edge_values(edges)
            want = rule(g, edges)
            got = _triton.bin_index(g.to(DEVICE), edges.to(DEVICE)).cpu()
            assert torch.equal(got, want), (bins, last, (got != want).sum())
            assert torch.equal(kcpu.bin_index(g, edges), got)
            N_CHECKS += 1


def check_robust(gen):
    """Extreme and infinite logits, 0 < gamma < 1: the fused path equals the reference and
    stays finite where the limits are finite (x = +inf with t = 1, x = -inf with t = 0; a
    -inf logit on a softmax class that is not the target)."""
    import focal_plugins as fp
    inf = float("inf")
    ext = torch.tensor([-1e4, -200.0, -88.0, -30.0, -17.0, 0.0, 17.0, 30.0, 88.0, 200.0, 1e4])
    N, C = 64, ext.numel()
    x = ext[torch.stack([torch.randperm(C, generator=gen) for _ in range(N)])].to(DEVICE)
    lab = torch.randint(0, C + 1, (N,), generator=gen).to(DEVICE)
    onehot = (lab[:, None] == torch.arange(C, device=DEVICE)).float()
    slab = lab.clamp(max=C - 1)
    # infinite logits where the limit is finite, on the label's own column and elsewhere
    xi = x.clone()
    rows = torch.arange(N, device=DEVICE)
    has = lab < C
    xi[rows[has], lab[has]] = inf
    xi[::3, 0] = torch.where(lab[::3] == 0, inf, -inf)
    for gamma in (0.25, 0.5, 0.9, 2.0):
        calls = {
            "sigmoid labels": lambda x, impl: fp.sigmoid_focal_loss(x, lab, gamma=gamma,
                                                                     reduction="sum", impl=impl),
            "sigmoid float": lambda x, impl: fp.sigmoid_focal_loss(x, onehot, gamma=gamma,
                                                                    reduction="sum", impl=impl),
            "softmax": lambda x, impl: fp.softmax_focal_loss(x, slab, gamma=gamma,
                                                              reduction="sum", impl=impl),
            "ghmc": lambda x, impl: fp.GHMC(impl=impl).to(DEVICE)(x, lab),
            "ghmc float": lambda x, impl: fp.GHMC(impl=impl).to(DEVICE)(x, onehot),
        }
        for name, call in calls.items():
            for tag, xx in (("extreme", x), ("inf", xi)):
                if tag == "inf" and name == "softmax":
                    continue               # +inf softmax logits: NaN, as F.cross_entropy
                a = xx.clone().requires_grad_()
                b = xx.clone().requires_grad_()
                fa, fb = call(a, "fused"), call(b, "reference")
                fa.backward()
                fb.backward()
                close(f"robust {name} {tag} g={gamma} loss", fa, fb)
                close(f"robust {name} {tag} g={gamma} grad", a.grad, b.grad)
    # softmax: -inf on classes that are not the target (masked classes)
    xm = x.clone()
    xm[:, 1:4] = -inf
    sl = torch.where((slab >= 1) & (slab < 4), 0, slab)
    for gamma in (0.5, 2.0):
        a, b = xm.clone().requires_grad_(), xm.clone().requires_grad_()
        fa = fp.softmax_focal_loss(a, sl, gamma=gamma, impl="fused")
        fb = fp.softmax_focal_loss(b, sl, gamma=gamma, impl="reference")
        fa.backward()
        fb.backward()
        close(f"robust softmax masked g={gamma} loss", fa, fb)
        close(f"robust softmax masked g={gamma} grad", a.grad, b.grad)


def check_nan(gen):
    """NaN logits in GHM: the fused path gives NaN exactly where the reference does (that
    element's loss and gradient, any reduced loss) and the same values everywhere else."""
    import focal_plugins as fp
    N, C = 150, 9
    x = (torch.randn(N, C, generator=gen) * 3)
    nan = torch.rand(N, C, generator=gen) < 0.05
    x[nan] = float("nan")
    x = x.to(DEVICE)
    lab = torch.randint(0, C + 1, (N,), generator=gen).to(DEVICE)
    lw = (torch.rand(N, generator=gen) > 0.2).float().to(DEVICE)
    onehot = (lab[:, None] == torch.arange(C, device=DEVICE)).float()
    y = torch.zeros(N, C, device=DEVICE)
    calls = {
        "ghmc labels": lambda m, x, red: m(x, lab, lw, reduction_override=red),
        "ghmc float": lambda m, x, red: m(x, onehot, lw, reduction_override=red),
        "ghmc softmax": lambda m, x, red: m(x, lab.clamp(max=C - 1), lw, reduction_override=red),
        "ghmr": lambda m, x, red: m(x, y, reduction_override=red),
    }
    mods = {"ghmc labels": lambda i: fp.GHMC(momentum=0.75, impl=i),
            "ghmc float": lambda i: fp.GHMC(momentum=0.75, impl=i),
            "ghmc softmax": lambda i: fp.GHMC(use_sigmoid=False, momentum=0.75, impl=i),
            "ghmr": lambda i: fp.GHMR(mu=0.5, momentum=0.75, impl=i)}
    global N_CHECKS
    for name, call in calls.items():
        mf, mr = mods[name]("fused").to(DEVICE), mods[name]("reference").to(DEVICE)
        for red in ("none", "mean", "sum"):
            a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
            fa, fb = call(mf, a, red), call(mr, b, red)
            fa.sum().backward()
            fb.sum().backward()
            for what, u, v in (("loss", fa, fb), ("grad", a.grad, b.grad), ("state", mf.acc_sum,
                                                                              mr.acc_sum)):
                u, v = u.detach().double().cpu(), v.detach().double().cpu()
                assert torch.equal(torch.isnan(u), torch.isnan(v)), f"{name} {red} {what} NaN"
                ok = ~torch.isnan(v)
                if what == "state":
                    assert ok.all(), f"{name}: NaN in the EMA state"
                if ok.any():
                    close(f"nan {name} {red} {what}", u[ok], v[ok])
            assert torch.isnan(fb).any(), name
            N_CHECKS += 1


def check_autograd(gen):
    """The Triton path backpropagates twice through one graph (retain_graph=True) with the
    same gradient each time; double backward is a clear error naming impl='reference'."""
    import focal_plugins as fp
    N, C = 100, 7
    x = (torch.randn(N, C, generator=gen) * 3).to(DEVICE).requires_grad_()
    lab = torch.randint(0, C + 1, (N,), generator=gen).to(DEVICE)
    y = torch.zeros(N, C, device=DEVICE)
    calls = [lambda: fp.sigmoid_focal_loss(x, lab, impl="fused"),
             lambda: fp.softmax_focal_loss(x, lab.clamp(max=C - 1), impl="fused"),
             lambda: fp.GHMC(impl="fused")(x, lab),
             lambda: fp.GHMC(use_sigmoid=False, impl="fused")(x, lab.clamp(max=C - 1)),
             lambda: fp.GHMR(impl="fused")(x, y)]
    global N_CHECKS
    for i, call in enumerate(calls):
        x.grad = None
        out = call()
        out.backward(retain_graph=True)
        first = x.grad.clone()
        out.backward()
        close(f"autograd twice {i}", x.grad, 2 * first)
        try:
            torch.autograd.grad(call(), x, create_graph=True)
        except RuntimeError as e:
            assert "double backward" in str(e) and "impl='reference'" in str(e), e
        else:
            raise AssertionError(f"double backward through fused call {i} did not raise")
        N_CHECKS += 1


def check_public(gen):
    """impl="fused" vs impl="reference" through the public functions and modules."""
    import focal_plugins as fp
    N, C = 200, 10
    for tk in ("labels", "soft"):
        for red, avg in (("mean", None), ("mean", 37.0), ("sum", None), ("none", None)):
            x = (torch.randn(N, C, generator=gen) * 3).to(DEVICE).requires_grad_()
            lab = torch.randint(0, C + 1, (N,), generator=gen).to(DEVICE)
            tgt = lab if tk == "labels" else torch.rand(N, C, generator=gen).to(DEVICE)
            w = torch.rand(N, generator=gen).to(DEVICE)
            kw = dict(alpha=[0.1 * (i + 1) for i in range(C)], gamma=2.0, reduction=red,
                      avg_factor=avg)
            a = fp.sigmoid_focal_loss(x, tgt, w, impl="fused", **kw)
            b = fp.sigmoid_focal_loss(x, tgt, w, impl="reference", **kw)
            go = torch.rand(b.shape, generator=gen).to(DEVICE) + 0.5
            close(f"public sigmoid {tk} {red} {avg}", a, b)
            close(f"public sigmoid {tk} {red} {avg} grad", ref_grad(a, x, go), ref_grad(b, x, go))
    for red in ("mean", "sum", "none"):
        x = (torch.randn(N, C, 3, generator=gen) * 3).to(DEVICE).requires_grad_()
        lab = torch.randint(0, C, (N, 3), generator=gen)
        lab[::4] = -100
        lab = lab.to(DEVICE)
        kw = dict(alpha=0.25, background_index=C - 1, gamma=1.5, reduction=red)
        a = fp.softmax_focal_loss(x, lab, impl="fused", **kw)
        b = fp.softmax_focal_loss(x, lab, impl="reference", **kw)
        go = torch.rand(b.shape, generator=gen).to(DEVICE) + 0.5
        close(f"public softmax dense {red}", a, b)
        close(f"public softmax dense {red} grad", ref_grad(a, x, go), ref_grad(b, x, go))
    for use_sigmoid in (True, False):
        mf = fp.GHMC(bins=30, momentum=0.75, use_sigmoid=use_sigmoid, impl="fused").to(DEVICE)
        mr = fp.GHMC(bins=30, momentum=0.75, use_sigmoid=use_sigmoid, impl="reference").to(DEVICE)
        for call in range(3):
            x = (torch.randn(N, C, generator=gen) * 3).to(DEVICE).requires_grad_()
            lab = torch.randint(0, C + (1 if use_sigmoid else 0), (N,), generator=gen).to(DEVICE)
            lw = (torch.rand(N, generator=gen) > 0.2).float().to(DEVICE)
            a, b = mf(x, lab, lw), mr(x, lab, lw)
            tag = f"public GHMC sigmoid={use_sigmoid} call{call}"
            close(tag, a, b)
            close(tag + " grad", ref_grad(a, x, None), ref_grad(b, x, None))
            close(tag + " state", mf.acc_sum, mr.acc_sum)
    mf = fp.GHMR(mu=0.02, bins=10, momentum=0.7, impl="fused").to(DEVICE)
    mr = fp.GHMR(mu=0.02, bins=10, momentum=0.7, impl="reference").to(DEVICE)
    for call in range(3):
        x = (torch.randn(300, 4, generator=gen) * 0.1).to(DEVICE).requires_grad_()
        y = (torch.randn(300, 4, generator=gen) * 0.1).to(DEVICE)
        lw = (torch.rand(300, generator=gen) > 0.3).float().to(DEVICE)
        a, b = mf(x, y, lw), mr(x, y, lw)
        close(f"public GHMR call{call}", a, b)
        close(f"public GHMR call{call} grad", ref_grad(a, x, None), ref_grad(b, x, None))
        close(f"public GHMR call{call} state", mf.acc_sum, mr.acc_sum)


def check_float_targets(gen):
    """Float targets as torchvision / fvcore users pass them: soft in (0, 1) and one-hot,
    fp32, fp16 and bf16 (the kernels read them natively), with fp32 and fp16 logits; and
    logits of any shape through the public losses (impl="fused" vs "reference")."""
    import focal_plugins as fp
    N, C = 150, 9
    edges = torch.arange(31).float() / 30
    edges[-1] += 1e-6
    edges = edges.to(DEVICE)
    for tdt in (torch.float32, torch.float16, torch.bfloat16):
        for xdt in (torch.float32, torch.float16):
            x = (torch.randn(N, C, generator=gen) * 3).to(DEVICE).to(xdt).requires_grad_()
            t = (torch.rand(N, C, generator=gen) * 0.98 + 0.01).to(DEVICE).to(tdt)
            t[::4] = (torch.rand(C, generator=gen) < 0.3).to(DEVICE).to(tdt)   # one-hot rows
            xr = x.detach().float().requires_grad_()
            tr = t.float()
            ap = torch.rand(C, generator=gen).to(DEVICE)
            an = torch.rand(C, generator=gen).to(DEVICE)
            tag = f"float targets {tdt} logits {xdt}"
            for red in ("none", "sum"):
                ref = _sigmoid_focal_reference(xr, tr, ap, an, 2.0)
                ref = ref.sum() if red == "sum" else ref
                out = KK.sigmoid_focal(x, t, None, ap, an, 2.0, red)
                close(f"{tag} sigmoid_focal {red} loss", out, ref)
                go = torch.rand(ref.shape, generator=gen).to(DEVICE) + 0.5
                g, gr = ref_grad(out, x, go), ref_grad(ref, xr, go)
                _close_grad(f"{tag} sigmoid_focal {red} grad", g, gr, xdt)
                tot = torch.tensor(float(N * C), device=DEVICE)
                g0 = (xr.detach().sigmoid() - tr).abs()
                bce = F.binary_cross_entropy_with_logits(xr, tr, reduction="none")
                ref = _ref_ghm(bce, g0, torch.ones_like(g0), edges, tot)
                ref = ref.sum() if red == "sum" else ref
                out = KK.ghm_sigmoid(x, t, None, edges, _weigh(tot), red)
                close(f"{tag} ghmc {red} loss", out, ref)
                _close_grad(f"{tag} ghmc {red} grad", ref_grad(out, x, go), ref_grad(ref, xr, go),
                            xdt)
    for shape in ((70,), (3, 5, 4, 6)):
        for red in ("mean", "sum", "none"):
            for alpha in (0.25, [0.1, 0.3, 0.5, 0.7, 0.9]):
                if not isinstance(alpha, float) and len(shape) < 3:
                    continue
                x = (torch.randn(shape, generator=gen) * 3).to(DEVICE).requires_grad_()
                t = torch.rand(shape, generator=gen).to(DEVICE)
                w = torch.rand(shape[-1], generator=gen).to(DEVICE)
                kw = dict(alpha=alpha, gamma=1.5, reduction=red)
                a = fp.sigmoid_focal_loss(x, t, w, impl="fused", **kw)
                b = fp.sigmoid_focal_loss(x, t, w, impl="reference", **kw)
                go = torch.rand(b.shape, generator=gen).to(DEVICE) + 0.5
                tag = f"public sigmoid {shape} {red} alpha={alpha}"
                close(tag, a, b)
                close(tag + " grad", ref_grad(a, x, go), ref_grad(b, x, go))
        mf = fp.GHMC(bins=30, momentum=0.75, impl="fused").to(DEVICE)
        mr = fp.GHMC(bins=30, momentum=0.75, impl="reference").to(DEVICE)
        for call in range(2):
            x = (torch.randn(shape, generator=gen) * 3).to(DEVICE).requires_grad_()
            t = torch.rand(shape, generator=gen).to(DEVICE)
            a, b = mf(x, t), mr(x, t)
            tag = f"public GHMC {shape} call{call}"
            close(tag, a, b)
            close(tag + " grad", ref_grad(a, x, None), ref_grad(b, x, None))
            close(tag + " state", mf.acc_sum, mr.acc_sum)


def _close_grad(name, g, gr, dt):
    """fp32 logits: as ``close``; fp16: the gradient rounded once to fp16."""
    if dt == torch.float32:
        close(name, g, gr)
        return
    global N_CHECKS
    assert g.dtype == dt, name
    eps = torch.finfo(dt).eps
    assert ((g.float() - gr).abs() <= eps * gr.abs() + 1e-6).all(), name
    N_CHECKS += 1


class _Budget:
    """While active: every aten op outside the kernel launches is inspected. Ops that make
    a CUDA caller wait for the device (``.item()``, ``bool()``, nonzero and boolean
    masking) are listed; the bytes of each new storage an op returns are summed, an upper
    bound of the peak extra memory (a freed buffer is still counted)."""

    SYNCS = ("_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2",
             "repeat_interleave", "masked_scatter")

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        budget = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                if budget.in_kernel == 0:
                    budget.inspect(func, args, kwargs, out)
                return out

        self.mode, self.in_kernel, self.syncs, self.allocated = Mode(), 0, [], 0

    def inspect(self, func, args, kwargs, out):
        from torch.utils._pytree import tree_leaves
        if func.overloadpacket.__name__ in self.SYNCS:
            import traceback
            here = [f for f in traceback.extract_stack()[:-3] if "focal_plugins" in f.filename
                    and "tests" not in f.filename]
            where = f"{here[-1].filename.split('focal_plugins')[-1]}:{here[-1].lineno}" \
                if here else "?"
            self.syncs.append(f"{func} at {where}")
        ins = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
               if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in ins:
                self.allocated += t.untyped_storage().nbytes()

    def around(self, name, fn, args, kw, run):
        """Launches run the interpreter, whose own tensor ops are not the GPU's: skip them."""
        self.in_kernel += 1
        try:
            return run()
        finally:
            self.in_kernel -= 1


def wrap_kernels(around):
    """Replace every kernel of _triton by a stand-in whose launches call
    ``around(name, kernel, args, kwargs, run)``, where ``run()`` launches the real kernel."""
    class Wrapped:
        def __init__(self, name, fn):
            self.name, self.fn = name, fn

        def __getitem__(self, grid):
            def launch(*args, **kw):
                return around(self.name, self.fn, args, kw, lambda: self.fn[grid](*args, **kw))
            return launch

    for name in dir(_triton):
        if name.endswith("_kernel"):
            setattr(_triton, name, Wrapped(name, getattr(_triton, name)))


def check_budget(gen):
    """The public losses on the fused path, forward + backward: no host synchronisation,
    and at most 1.5x the logits' bytes allocated in all (the gradient included)."""
    import focal_plugins as fp
    from focal_plugins.core import checks as _checks
    _checks.DEVICE_ASSERTS_ON_CPU = True      # value checks as on CUDA (CPU: eager .item())
    budget = _Budget()
    wrap_kernels(budget.around)
    probe = torch.ones(10, 10)
    with budget.mode:                         # the probe itself sees syncs and allocations
        probe.sum().item()
        probe * 2
    assert len(budget.syncs) == 1 and budget.allocated == 4 + 400, (budget.syncs,
                                                                     budget.allocated)
    N, C = 4000, 80
    lab = torch.randint(0, C + 1, (N,), generator=gen).to(DEVICE)
    slab = torch.randint(0, C + 1, (N,), generator=gen).to(DEVICE)
    lw = (torch.rand(N, generator=gen) > 0.1).float().to(DEVICE)
    onehot = (lab[:, None] == torch.arange(C, device=DEVICE)).float()
    box_t = torch.randn(N, 4, generator=gen).to(DEVICE)
    box_w = torch.ones(N, 4).to(DEVICE)
    ghmc = fp.GHMC(bins=30, momentum=0.75, impl="fused").to(DEVICE)
    ghmc_s = fp.GHMC(bins=30, momentum=0.75, use_sigmoid=False, impl="fused").to(DEVICE)
    ghmr = fp.GHMR(mu=0.02, bins=10, momentum=0.7, impl="fused").to(DEVICE)
    cases = {
        "sigmoid_focal_loss": (C, lambda x: fp.sigmoid_focal_loss(
            x, lab, alpha=0.25, gamma=2.0, reduction="mean", avg_factor=100.0, impl="fused")),
        "sigmoid_focal_loss one-hot float": (C, lambda x: fp.sigmoid_focal_loss(
            x, onehot, alpha=0.25, gamma=2.0, reduction="mean", impl="fused")),
        "softmax_focal_loss": (C + 1, lambda x: fp.softmax_focal_loss(
            x, slab, alpha=0.25, background_index=C, gamma=2.0, impl="fused")),
        "GHMC sigmoid": (C, lambda x: ghmc(x, lab, lw)),
        "GHMC softmax": (C + 1, lambda x: ghmc_s(x, slab, lw)),
        "GHMR": (4, lambda x: ghmr(x, box_t, box_w)),
    }
    for name, (width, fn) in cases.items():
        for call in range(2):      # the second call runs with GHM's EMA state set
            x = torch.randn(N, width, generator=gen).to(DEVICE).requires_grad_()
            budget.syncs, budget.allocated = [], 0
            with budget.mode:
                fn(x).backward()
            ratio = budget.allocated / (x.numel() * x.element_size())
            assert not budget.syncs, f"{name}: host-synchronising ops {budget.syncs}"
            assert ratio <= 1.5, f"{name}: allocated {ratio:.2f}x the logits' bytes"
            assert x.grad is not None and torch.isfinite(x.grad).all(), name
            print(f"  {name} call {call}: allocated {ratio:.3f}x the logits' bytes, "
                  "no host sync", flush=True)
    global N_CHECKS
    N_CHECKS += 1


def main():
    assert KK.triton_usable(torch.empty(1, device=DEVICE)), "triton not usable here"
    gen = torch.Generator().manual_seed(0)
    extra = sys.argv[2:] or ["sigmoid", "lowp", "softmax", "ghm", "counts", "bins", "robust", "nan",
                             "autograd", "public", "float", "budget"]
    checks = {"sigmoid": check_sigmoid_focal, "lowp": check_sigmoid_focal_lowp,
              "softmax": check_softmax_focal, "ghm": check_ghm, "counts": check_counts,
              "bins": check_bins,
              "robust": check_robust, "nan": check_nan, "autograd": check_autograd,
              "public": check_public, "float": check_float_targets, "budget": check_budget}
    for name in extra:
        checks[name](gen)
        print(f"{name}: ok", flush=True)
    print(f"ALL OK {N_CHECKS} comparisons")


if __name__ == "__main__":
    main()
