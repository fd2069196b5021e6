"""GHMStats against autograd and the module's state: counts, densities, loss and gradient
shares per bin, summed over several calls; no hook left when stopped."""
import copy

import pytest
import torch
from torch import nn

from focal_plugins.core import GHMC, GHMR
from focal_plugins.core.ghm_stats import GHMStats, call_stats, ghm_modules, histogram, scalars

from ._stats_reference import replay


def _cls_call(c=6, n=70, softmax=False):
    x = torch.randn(n, c) * 2.5
    if softmax:
        y = torch.randint(0, c, (n,))
        y[:5] = -100  # ignored
    else:
        y = torch.randint(0, c + 1, (n,))  # c = background
    lw = (torch.rand(n) > 0.2).float()
    return x, y, lw


CASES = [
    ("ghmc", lambda: GHMC(bins=10, momentum=0.0), dict()),
    ("ghmc-ema", lambda: GHMC(bins=10, momentum=0.7, loss_weight=2.0), dict()),
    ("ghmc-softmax", lambda: GHMC(bins=8, momentum=0.5, use_sigmoid=False), dict(softmax=True)),
    ("ghmr", lambda: GHMR(mu=0.1, bins=10, momentum=0.0), None),
    ("ghmr-ema", lambda: GHMR(mu=0.02, bins=10, momentum=0.7, loss_weight=10.0), None),
]


def _calls(kind_kw, k=3):
    out = []
    for i in range(k):
        if kind_kw is None:  # box regression: (N, 4), per-row label weights
            x = torch.randn(40 + 10 * i, 4) * 0.3
            y = torch.randn(40 + 10 * i, 4) * 0.3
            lw = (torch.rand(40 + 10 * i) > 0.3).float()[:, None].expand(-1, 4).contiguous()
            out.append((x, y, lw))
        else:
            out.append(_cls_call(n=60 + 10 * i, **kind_kw))
    return out


@pytest.mark.parametrize("name,make,kw", CASES, ids=[c[0] for c in CASES])
def test_stats_over_several_calls_match_autograd_and_state(name, make, kw):
    torch.manual_seed(1)
    model = nn.ModuleDict(dict(head=nn.ModuleDict(dict(loss=make()))))
    m = model["head"]["loss"]
    calls = _calls(kw)
    reductions = ["mean", "sum", None]
    ref = copy.deepcopy(m)
    cnt, loss_share, grad_share, last = replay(
        ref, [((x, y, lw), dict(reduction_override=r)) for (x, y, lw), r in zip(calls, reductions)])

    stats = GHMStats(model)
    assert [n for n, _ in stats.modules] == ["head.loss"]
    stats.start()
    for (x, y, lw), red in zip(calls, reductions):
        m(x.clone().requires_grad_(), y, lw, reduction_override=red).sum().backward()
    s = stats.stop()["head.loss"]
    torch.testing.assert_close(s["count"], cnt.float())
    torch.testing.assert_close(s["loss_share"], loss_share.float())
    torch.testing.assert_close(s["grad_share"], grad_share.float())
    for key in ("loss_share", "grad_share"):
        assert abs(float(s[key].sum()) - 1) < 1e-5
    if m.momentum > 0:
        torch.testing.assert_close(s["density"], m.acc_sum.float())
        torch.testing.assert_close(m.acc_sum, ref.acc_sum)  # the hook changes no state
    else:  # the last call's counts
        torch.testing.assert_close(s["density"], last.float())


def test_hooks_only_between_start_and_stop():
    model = nn.Sequential(nn.Linear(2, 2), GHMC(bins=5), GHMR(bins=5))
    stats = GHMStats(model, rename=lambda n: "L" + n)
    assert [n for n, _ in stats.modules] == ["L1", "L2"]
    assert all(not m._forward_hooks for m in model.modules())
    stats.start()
    stats.start()  # idempotent
    assert [len(m._forward_hooks) for _, m in stats.modules] == [1, 1]
    x, y, lw = _cls_call(c=3)
    model[1](x, y, lw)
    out = stats.stop()
    assert list(out) == ["L1"]  # GHMR was not called: nothing for it
    assert all(not m._forward_hooks for m in model.modules())
    model[1](x, y, lw)  # not recorded
    stats.start()
    assert stats.stop() == {}


def test_output_keyword_forms_and_avg_factor():
    # keyword label weight and avg_factor: the shares do not depend on how a call is spelt
    torch.manual_seed(0)
    a, b = GHMC(bins=10), GHMC(bins=10)
    x, y, lw = _cls_call()
    ra = call_stats(a, (x, y, lw), {}, a(x, y, lw))
    rb = call_stats(b, (x, y), dict(label_weight=lw, avg_factor=3.0), b(x, y, lw, avg_factor=3.0))
    torch.testing.assert_close(ra["count"], rb["count"])
    torch.testing.assert_close(ra["loss"] / ra["loss"].sum(), rb["loss"] / rb["loss"].sum())


def test_scalars_and_histogram():
    s = {"h.l": dict(density=torch.tensor([1.0, 3.0]), count=torch.tensor([2.0, 0.0]),
                     loss_share=torch.tensor([0.25, 0.75]), grad_share=torch.tensor([1.0, 0.0]))}
    d = scalars(s)
    assert d["ghm/h.l/density_1"] == 3.0 and d["ghm/h.l/loss_share_0"] == 0.25
    assert len(d) == 8
    h = histogram(torch.tensor([1.0, 3.0]), 2)
    assert h["bucket_limits"] == [0.5, 1.0] and h["num"] == 4.0
    assert h["sum"] == pytest.approx(1 * 0.25 + 3 * 0.75)
    assert ghm_modules(nn.Linear(1, 1)) == []


@pytest.mark.slow
def test_two_processes_log_the_statistics_of_the_global_batch(tmp_path):
    import socket

    import torch.multiprocessing as mp

    from ._dist_stats_worker import run

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torch.manual_seed(0)
    world, n = 2, 40
    cls = [(torch.randn(n, 5) * 2, torch.randint(0, 6, (n,)), (torch.rand(n) > 0.2).float())
           for _ in range(2)]
    batches = {"ghmc": cls, "ghmc_ema": cls,
               "ghmr": [(torch.randn(n, 4) * 0.1, torch.randn(n, 4) * 0.1,
                         (torch.rand(n, 4) > 0.3).float()) for _ in range(2)]}
    mp.spawn(run, args=(world, port, str(tmp_path), batches), nprocs=world, join=True)
    single = nn.ModuleDict({"ghmc": GHMC(bins=10), "ghmc_ema": GHMC(bins=10, momentum=0.75),
                            "ghmr": GHMR(mu=0.05, bins=10, momentum=0.7)})
    stats = GHMStats(single)
    stats.start()
    for name, m in single.items():
        for x, t, lw in batches[name]:
            m(x.clone().requires_grad_(), t, lw).backward()
    want = stats.stop()
    for rank in range(world):
        got = torch.load(tmp_path / f"stats{rank}.pt")
        assert set(got) == set(want)
        for name in want:
            for key in want[name]:
                torch.testing.assert_close(got[name][key], want[name][key], msg=f"{name} {key}")
