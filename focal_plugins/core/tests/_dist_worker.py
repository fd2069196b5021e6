"""Worker for test_distributed: one rank of a 2-process gloo group on 127.0.0.1."""
import os

import torch
import torch.distributed as dist


def run(rank, world, port, out_dir, batches):
    from focal_plugins import GHMC, GHMR

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        mods = {"ghmc": GHMC(bins=10, momentum=0.75), "ghmc_softmax": GHMC(bins=7, use_sigmoid=False),
                "ghmr": GHMR(bins=10, momentum=0.7), "ghmc_local": GHMC(bins=10, distributed=False)}
        out = {}
        for name, m in mods.items():
            losses, grads = [], []
            for b in batches[name]:
                x, t, lw = (v.chunk(world)[rank] for v in b)
                x = x.clone().requires_grad_()
                loss = m(x, t, lw)
                loss.backward()
                losses.append(loss.detach())
                grads.append(x.grad)
            out[name] = (losses, grads, getattr(m, "acc_sum", None))
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
