"""Triton kernels vs the core's reference math, on random data. Run in its own process:

    TRITON_INTERPRET=1 python -m focal_plugins.kernels.tests._kernel_checks cpu   # CI
    python -m focal_plugins.kernels.tests._kernel_checks cuda                     # a GPU

Every kernel output is prefilled with NaN (ints: a large negative) so an element the
kernel leaves unwritten fails the comparison. Prints one line per check and "ALL OK".
"""
import os
import sys

DEVICE = sys.argv[1] if len(sys.argv) > 1 else "cpu"
if DEVICE == "cpu":
    os.environ["TRITON_INTERPRET"] = "1"     # before triton's first import

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from focal_plugins import kernels as KK  # noqa: E402
from focal_plugins.core.focal import _sigmoid_focal_reference, _softmax_focal_reference  # noqa: E402
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


def main():
    assert KK.triton_usable(torch.empty(1, device=DEVICE)), "triton not usable here"
    gen = torch.Generator().manual_seed(0)
    extra = sys.argv[2:] or ["sigmoid", "lowp", "softmax", "ghm", "public"]
    checks = {"sigmoid": check_sigmoid_focal, "lowp": check_sigmoid_focal_lowp,
              "softmax": check_softmax_focal, "ghm": check_ghm, "public": check_public}
    for name in extra:
        checks[name](gen)
        print(f"{name}: ok", flush=True)
    print(f"ALL OK {N_CHECKS} comparisons")


if __name__ == "__main__":
    main()
