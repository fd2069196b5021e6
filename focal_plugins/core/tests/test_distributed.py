"""Two CPU processes (gloo): GHM bins by the density of the whole, global batch.

'Equal' here: each rank's "mean" loss is sum_rank(w * loss) / (tot_global / world), so the
mean over ranks of the losses (and of the gradients, as DDP averages them) equals the loss
(gradient) of one process over the concatenated batch; the EMA state is equal on all ranks.
"""
import socket

import pytest
import torch
import torch.multiprocessing as mp

from focal_plugins import GHMC, GHMR

from ._dist_worker import run


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_ghm_equals_single_process(tmp_path):
    torch.manual_seed(0)
    world, n = 2, 40
    batches = {
        "ghmc": [(torch.randn(n, 5) * 2, torch.randint(0, 6, (n,)), (torch.rand(n) > 0.2).float())
                 for _ in range(3)],
        "ghmc_softmax": [(torch.randn(n, 4) * 2, torch.randint(0, 4, (n,)), (torch.rand(n) > 0.2).float())
                         for _ in range(2)],
        "ghmr": [(torch.randn(n, 4) * 0.1, torch.randn(n, 4) * 0.1, (torch.rand(n, 4) > 0.3).float())
                 for _ in range(3)],
        "ghmc_local": [(torch.randn(n, 5) * 2, torch.randint(0, 6, (n,)), torch.ones(n))],
    }
    mp.spawn(run, args=(world, _free_port(), str(tmp_path), batches), nprocs=world, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]

    single = {"ghmc": GHMC(bins=10, momentum=0.75), "ghmc_softmax": GHMC(bins=7, use_sigmoid=False),
              "ghmr": GHMR(bins=10, momentum=0.7)}
    for name, m in single.items():
        for step, (x, t, lw) in enumerate(batches[name]):
            x = x.clone().requires_grad_()
            loss = m(x, t, lw)
            loss.backward()
            per_rank = torch.stack([r[name][0][step] for r in ranks])
            torch.testing.assert_close(per_rank.mean(), loss.detach())
            grad = torch.cat([r[name][1][step] for r in ranks]) / world  # DDP's average
            torch.testing.assert_close(grad, x.grad)
        if name != "ghmc_softmax":
            for r in ranks:
                torch.testing.assert_close(r[name][2], m.acc_sum)

    # distributed=False: each rank bins its own half only
    x, t, lw = batches["ghmc_local"][0]
    for rank, r in enumerate(ranks):
        local = GHMC(bins=10)(x.chunk(world)[rank], t.chunk(world)[rank], lw.chunk(world)[rank])
        torch.testing.assert_close(r["ghmc_local"][0][0], local)
