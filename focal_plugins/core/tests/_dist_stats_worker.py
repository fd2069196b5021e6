"""Worker for test_ghm_stats' distributed test: one rank of a 2-process gloo group."""
import os

import torch
import torch.distributed as dist


def run(rank, world, port, out_dir, batches):
    from focal_plugins import GHMC, GHMR
    from focal_plugins.core.ghm_stats import GHMStats

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mods = torch.nn.ModuleDict({"ghmc": GHMC(bins=10), "ghmc_ema": GHMC(bins=10, momentum=0.75),
                                    "ghmr": GHMR(mu=0.05, bins=10, momentum=0.7)})
        stats = GHMStats(mods)
        stats.start()
        for name, m in mods.items():
            for b in batches[name]:
                x, t, lw = (v.chunk(world)[rank] for v in b)
                m(x.clone().requires_grad_(), t, lw).backward()
        torch.save(stats.stop(), os.path.join(out_dir, f"stats{rank}.pt"))
    finally:
        dist.destroy_process_group()
