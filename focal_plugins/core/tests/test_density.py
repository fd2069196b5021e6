"""The GHM binning rule of ``focal_plugins.core.density``, one statement that the reference,
the CPU fast path and the Triton kernels follow: the same bin at every edge (g exactly on
each edge, its float32 neighbours, 0, 1, NaN). The Triton side runs in the kernel checks
("bins", under TRITON_INTERPRET=1), on the same values from ``edge_values``."""
import pytest
import torch

from focal_plugins import GHMC, GHMR
from focal_plugins.core import density
from focal_plugins.kernels import cpu as kcpu

BINS = (1, 2, 3, 7, 10, 30, 100, 254)


def edge_values(edges):
    """Every edge e_k, k < bins, and its float32 neighbours three steps each way, 0, 1,
    NaN, and random g, clamped to [0, 1] (the range of both GHM g's)."""
    bins = edges.numel() - 1
    e = edges[:bins]
    near, lo, hi = [e], e, e
    for _ in range(3):
        lo, hi = torch.nextafter(lo, torch.tensor(-1.0)), torch.nextafter(hi, torch.tensor(2.0))
        near += [lo, hi]
    g = torch.cat(near + [torch.tensor([0.0, 1.0]),
                          torch.rand(3000, generator=torch.Generator().manual_seed(bins))])
    g = g.clamp(0, 1)
    return torch.cat([g, torch.tensor([float("nan")] * 3)])


def rule(g, edges):
    """The rule written out: #{k in 1 .. bins - 1 : e_k <= g}; NaN: no bin (``bins``)."""
    bins = edges.numel() - 1
    inner = edges[1:bins].double()
    n = (g.double()[:, None] >= inner[None, :]).sum(1)
    return torch.where(torch.isnan(g), bins, n)


@pytest.mark.parametrize("bins", BINS)
@pytest.mark.parametrize("last", [density.GHMC_LAST_EDGE, density.GHMR_LAST_EDGE])
def test_reference_and_cpu_bin_by_the_one_rule_at_every_edge(bins, last):
    edges = density.bin_edges(bins, last)
    assert torch.equal(edges[:bins], torch.arange(bins).float() / bins)
    g = edge_values(edges)
    want = rule(g, edges)
    idx, counts, binned = density.bin_counts(g, torch.ones_like(g), edges)
    ref = torch.where(binned, idx, bins)
    assert torch.equal(ref, want)
    assert torch.equal(counts, torch.bincount(want, minlength=bins + 1)[:bins])
    assert torch.equal(kcpu.bin_index(g, edges), want)     # the fast path's own binning
    assert torch.equal(kcpu.small_bin_index(g, edges), want)   # its small-input binning
    # the modules bin by it (GHMC's and GHMR's edges)
    m = (GHMC if last < 2 else GHMR)(bins=bins)
    assert torch.equal(torch.where(m.bin_counts(g, g == g)[2], m.bin_counts(g, g == g)[0], bins),
                       want)


def test_cpu_fast_path_bins_just_below_an_edge_in_its_own_pass():
    # the hist pass computed g into a buffer its exact correction overwrote, so g one ulp
    # below an edge (e.g. fl32(0.37) at 100 bins) landed one bin up (failed before)
    bins = 100
    edges = density.bin_edges(bins, density.GHMC_LAST_EDGE)
    g = torch.nextafter(edges[1:bins], torch.tensor(-1.0))
    assert torch.equal(kcpu.bin_index(g, edges), torch.arange(bins - 1))


def test_nan_label_weight_is_invalid_on_every_path():
    # valid means label_weight > 0; the CPU fast path took `<= 0` as invalid, so NaN was
    # binned there and not in the reference (failed before)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=gen) * 2
    lab = torch.randint(0, 7, (40,), generator=gen)
    for lw in (torch.ones(40), torch.ones(40, 6)):
        lw[3] = float("nan")
        lw[5] = 0.0
        outs = []
        for impl in ("reference", "fused"):
            m = GHMC(bins=10, momentum=0.75, impl=impl)
            xr = x.clone().requires_grad_()
            out = m(xr, lab, lw)
            out.backward()
            outs.append((out.detach(), xr.grad, m.acc_sum.clone()))
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b)
        # the NaN-weighted row counts nowhere: the EMA holds 0.25 x the valid counts
        assert outs[0][2].sum().item() == pytest.approx(0.25 * (40 - 2) * 6)


def test_public_density_api_gives_ghmr_bins_and_weights():
    # what focal_plugins.tools.ghmr_mu and the stats hook read: bins of g and the per-bin weights
    m = GHMR(mu=0.02, bins=10, momentum=0.0)
    g = torch.tensor([0.05, 0.05, 0.55, 0.95, float("nan")])
    idx, counts, binned = m.bin_counts(g, torch.ones(5))
    assert idx[:4].tolist() == [0, 0, 5, 9] and binned.tolist() == [True] * 4 + [False]
    assert counts.tolist() == [2, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    w, tot, world = m.bin_weights(counts, torch.tensor(4.0))
    assert world == 1 and tot.item() == 4.0
    assert w.tolist() == pytest.approx([4 / 2 / 3, 0, 0, 0, 0, 4 / 3, 0, 0, 0, 4 / 3])
    pb, t = density.bin_weights(counts, torch.tensor(4.0))
    assert torch.equal(pb, w)


def test_cpu_fast_path_counts_g_one_ulp_below_an_edge_as_the_reference():
    # x = 0 and soft targets t = 0.5 - g put g = |sigmoid(0) - t| exactly one float32 ulp
    # below the edges k / 100 (k = 26 .. 49, where 0.5 - g is exact): the CPU fast path
    # counted some of them one bin up (its hist pass overwrote g while correcting floor(g
    # * bins)), so the EMA state differed from the reference's (failed before)
    bins = 100
    edges = density.bin_edges(bins, density.GHMC_LAST_EDGE)
    g = torch.nextafter(edges[26:50], torch.tensor(-1.0))
    t = (0.5 - g).reshape(1, -1)
    assert torch.equal((torch.zeros_like(t).sigmoid() - t).abs().reshape(-1), g)
    accs = []
    for impl in ("reference", "fused"):
        m = GHMC(bins=bins, momentum=0.5, impl=impl)
        m(torch.zeros_like(t), t)
        accs.append(m.acc_sum)
    assert torch.equal(accs[0], accs[1])
    assert accs[0].nonzero().flatten().tolist() == list(range(25, 49))
