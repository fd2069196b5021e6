"""Host-side robustness of the CPU losses under CPU contention (issue 23 item 5): medians and
maxima of forward + backward at 50,000 x 80 fp32 for the plugin's sigmoid focal loss (its
chunked CPU fast path), torch's BCE with logits and torchvision's focal loss, after a few
float64 calls of the plugin loss (the reported trigger), at a given thread count.

    python tools/bench_contention.py [--threads 2] [--rounds 9] [--repeat 2]

Run it while other processes load the cores (e.g. beside ``make demo``) and once on a quiet
machine; rows are interleaved per round so each loss sees the same load. Prints one line
per repeat: loss, median ms, max ms.
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--size", default="50000x80")
    a = p.parse_args(argv)
    for name in ("threads", "rounds", "repeat"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(a, name)}")
    n, c = (int(v) for v in a.size.split("x"))
    import focal_plugins as fp
    import torchvision

    torch.set_num_threads(a.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, c, generator=g)
    lab = torch.randint(0, c + 1, (n,), generator=g)
    onehot = (lab[:, None] == torch.arange(c)).float()
    for _ in range(3):      # the float64 calls after which the slow calls were seen
        fp.sigmoid_focal_loss(x.double().requires_grad_(), lab).backward()
    rows = {"plugin sigmoid_focal_loss (auto)": lambda v: fp.sigmoid_focal_loss(v, lab),
            "BCE with logits": lambda v: F.binary_cross_entropy_with_logits(v, onehot),
            "torchvision sigmoid_focal_loss": lambda v: torchvision.ops.sigmoid_focal_loss(
                v, onehot, reduction="mean")}
    for rep in range(a.repeat):
        times = {k: [] for k in rows}
        for _ in range(a.rounds):
            for k, fn in rows.items():
                v = x.clone().requires_grad_()
                t = time.perf_counter()
                fn(v).backward()
                times[k].append((time.perf_counter() - t) * 1e3)
        print(f"repeat {rep}, {a.threads} thread(s), {n} x {c}: " + "; ".join(
            f"{k} {statistics.median(ts):.0f} / {max(ts):.0f} ms" for k, ts in times.items()))


if __name__ == "__main__":
    main()
