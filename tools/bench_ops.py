"""Host cost of focal_plugins.ops.sigmoid_focal_loss against torchvision's and fvcore's, forward
+ backward, interleaved (each round times every implementation once, in turn, so a load
change on a shared machine hits them alike); median and interquartile range per call.

    python tools/bench_ops.py [--shapes 64x80 50000x80] [--rounds 200] [--threads 1]

Also times the two halves of focal_plugins.ops (its reference body, and the package's fast
path it dispatches to at and above ``CPU_FAST_MIN_NUMEL`` elements on the CPU), which is how
that threshold was chosen. docs/ops.md records a run.
"""
import argparse
import statistics
import time
import warnings

import torch


def implementations():
    from torchvision.ops import sigmoid_focal_loss as tv

    from focal_plugins import ops
    from focal_plugins.core import sigmoid_focal_loss as core

    impls = {"torchvision.ops": tv}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from fvcore.nn import sigmoid_focal_loss_jit
        impls["fvcore _jit"] = sigmoid_focal_loss_jit
    except ImportError:
        pass
    impls["focal_plugins.ops"] = ops.sigmoid_focal_loss
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        impls["focal_plugins.ops scripted"] = torch.jit.script(ops.sigmoid_focal_loss)
    impls["  its reference body"] = ops._reference
    impls["  its fast path (core, impl=auto)"] = (
        lambda x, t, a, g, r: core(x, t, alpha=a, gamma=g, reduction=r))
    return impls


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", nargs="+", default=["64x80", "50000x80"])
    p.add_argument("--rounds", type=int, default=200)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    impls = implementations()
    print(f"torch {torch.__version__}, {args.threads} thread(s), fp32, forward + backward, "
          "reduction 'sum', alpha 0.25, gamma 2")
    for shape in args.shapes:
        n, c = (int(v) for v in shape.split("x"))
        g = torch.Generator().manual_seed(0)
        x = torch.randn(n, c, generator=g)
        t = (torch.rand(n, c, generator=g) < 0.01).float()
        rounds = args.rounds if n * c < 10 ** 6 else max(10, args.rounds // 10)
        times = {k: [] for k in impls}
        for _ in range(3):  # warm-up (scripting profiles its first calls)
            for f in impls.values():
                xi = x.clone().requires_grad_()
                f(xi, t, 0.25, 2.0, "sum").backward()
        for _ in range(rounds):
            for k, f in impls.items():
                xi = x.clone().requires_grad_()
                t0 = time.perf_counter()
                f(xi, t, 0.25, 2.0, "sum").backward()
                times[k].append(time.perf_counter() - t0)
        print(f"\n{n} x {c} logits, {rounds} rounds: median (25%-75%) per call")
        base = statistics.median(times["torchvision.ops"])
        for k, v in times.items():
            q = statistics.quantiles(v, n=4)
            med = statistics.median(v)
            unit, s = ("us", 1e6) if base < 1e-2 else ("ms", 1e3)
            print(f"  {k:34s} {med * s:9.1f} {unit} ({q[0] * s:.1f}-{q[2] * s:.1f})"
                  f"  x{med / base:.2f} of torchvision")


if __name__ == "__main__":
    main()
