"""focal_plugins.tools.ghmr_mu: the GHM-R bin arithmetic behind its suggestion (the end-to-end
run on a demo checkpoint is in tests/test_demo.py)."""
import pytest
import torch

from focal_plugins.core import GHMR
from focal_plugins.tools import ghmr_mu


def test_suggested_mu_starts_a_quarter_of_the_coordinates_in_the_last_bin():
    d = torch.tensor([0.01, 0.05, 0.2, 0.3, 0.9], dtype=torch.float64)
    mu = ghmr_mu.suggested_mu(d)
    assert mu == pytest.approx(0.3 / 2.0647, rel=1e-4)   # 75th percentile 0.3
    assert 0.3 / (0.3 ** 2 + mu ** 2) ** 0.5 == pytest.approx(0.9)
    d = torch.rand(40001, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert ghmr_mu.last_bin_share(d, ghmr_mu.suggested_mu(d), 10) == pytest.approx(0.25, abs=1e-3)


def test_last_bin_share_matches_the_loss_modules_binning():
    torch.manual_seed(0)
    d = torch.randn(4000, dtype=torch.float64).abs() * 0.2
    for mu in (0.02, 0.1, 0.3):
        ghm = GHMR(mu=mu, bins=10, momentum=0.0)
        g = d / (d * d + mu * mu).sqrt()
        idx, _, _ = ghm.bin_counts(g, torch.ones_like(g, dtype=torch.bool))
        assert ghmr_mu.last_bin_share(d, mu, 10) == pytest.approx(
            (idx == 9).double().mean().item())


def test_bin_shares_give_every_non_empty_bin_an_equal_weight_budget():
    # GHM-R's weight for bin b is tot / (n_b * M): each of the M non-empty bins gets the same
    # total weight, so a bin's share of the gradient is its mean g over the sum of mean g
    d = torch.tensor([0.001] * 2 + [0.5] * 96 + [0.03] * 2, dtype=torch.float64)
    mu = 0.02
    coords, grad = ghmr_mu.bin_shares(d, mu, 10)
    g = d / (d * d + mu * mu).sqrt()
    idx = torch.clamp((g * 10).floor().long(), max=9)
    assert coords.tolist() == pytest.approx(torch.bincount(idx, minlength=10).double().div(100)
                                            .tolist())
    means = torch.stack([g[idx == b].mean() for b in idx.unique()])
    assert grad[idx.unique()].tolist() == pytest.approx((means / means.sum()).tolist())
    assert grad[9] == pytest.approx(means[-1] / means.sum()) and coords[9] == 0.96


def test_bad_arguments_are_refused(capsys):
    for argv, word in ((["c.py", "--bins", "1"], "--bins"), (["c.py", "--mu", "0"], "--mu"),
                       (["c.py", "--num-images", "0"], "--num-images")):
        with pytest.raises(SystemExit):
            ghmr_mu.main(argv)
        assert word in capsys.readouterr().err
