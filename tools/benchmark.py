"""Side-by-side loss benchmark: the plugin's losses against what users have today.

    python tools/benchmark.py                      # CPU table (+ CUDA table when a GPU is there)
    python tools/benchmark.py --device cuda --repeats 50
    python tools/benchmark.py --quick              # small sizes, few repeats (smoke run)
    python tools/benchmark.py --host               # per-call host cost at 64 x 80 (issue 23)

One table per device. Each row: median ms of forward + backward (the loss of random
logits and its gradient w.r.t. them), the ratio to the group's yardstick (plain BCE with
logits, cross-entropy, L1), and the peak extra memory during the step (CUDA:
torch.cuda.max_memory_allocated minus the inputs' memory; CPU: not measured, "n/a").
Sizes: the first is RetinaNet on COCO (2 images 800x1333: 401,400 anchors x 80 classes)
on CUDA and 50,000 x 80 on the CPU (as in the issue); the second is small.
Target forms: integer labels (N,) (90 % background), the same as one-hot float (N, C)
targets, and soft targets in (0, 1); the "dense" group lays the same number of logits out
as (N / 100, C, 10, 10) with float targets of that shape (the torchvision / fvcore way).
Targets (issue 7) are checked by reading the table, not asserted.
"""
import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

# RetinaNet anchors per FPN level (P3..P7) for 800x1333, 9 anchors per location, 2 images
LEVEL_FRACTIONS = (0.7481, 0.1870, 0.0474, 0.0121, 0.0054)


def _levels(n):
    sizes = [max(1, int(round(n * f))) for f in LEVEL_FRACTIONS[:-1]]
    return sizes + [max(1, n - sum(sizes))]


SKIPPED = {}   # why a peer's rows are missing: "ExcType: message" -> times seen


def _try(fn):
    """fn(), or None where it raises (a peer library not installed, not built, or not
    importable here): its rows are left out, and the reason is printed under the table."""
    try:
        return fn()
    except Exception as e:
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]
        SKIPPED[why] = SKIPPED.get(why, 0) + 1
        return None


def cases(N, C, device, dtype):
    """(group, name, make) where make() -> (inputs requiring grad, fn computing the loss)."""
    import focal_plugins as fp
    gen = torch.Generator().manual_seed(0)
    x0 = (torch.randn(N, C, generator=gen) * 2).to(device, dtype)
    lab = torch.randint(0, C + 1, (N,), generator=gen).to(device)   # C = background
    lab[torch.rand(N, generator=gen).to(device) < 0.9] = C            # mostly background
    onehot = (lab[:, None] == torch.arange(C, device=device)).to(dtype)
    soft = torch.rand(N, C, generator=gen).to(device, dtype)
    lw = torch.ones(N, device=device)
    xs0 = (torch.randn(N, C + 1, generator=gen) * 2).to(device, dtype)
    slab = torch.randint(0, C + 1, (N,), generator=gen).to(device)
    r0 = (torch.randn(N, 4, generator=gen) * 0.2).to(device, dtype)
    rt = (torch.randn(N, 4, generator=gen) * 0.2).to(device, dtype)
    rw = torch.ones(N, 4, device=device)
    out = []

    def add(group, name, x, fn):
        if fn is not None:
            out.append((group, name, x, fn))

    add("sigmoid", "BCE with logits (yardstick)", x0,
        lambda x: F.binary_cross_entropy_with_logits(x, onehot))
    add("sigmoid", "plugin sigmoid_focal_loss (auto)", x0,
        lambda x: fp.sigmoid_focal_loss(x, lab))
    add("sigmoid", "plugin sigmoid_focal_loss (reference)", x0,
        lambda x: fp.sigmoid_focal_loss(x, lab, impl="reference"))
    add("sigmoid", "plugin sigmoid_focal_loss, one-hot float targets (auto)", x0,
        lambda x: fp.sigmoid_focal_loss(x, onehot))
    add("sigmoid", "plugin sigmoid_focal_loss, one-hot float targets (reference)", x0,
        lambda x: fp.sigmoid_focal_loss(x, onehot, impl="reference"))
    add("sigmoid", "plugin sigmoid_focal_loss, soft targets (auto)", x0,
        lambda x: fp.sigmoid_focal_loss(x, soft))
    tv = _try(lambda: __import__("torchvision.ops", fromlist=["sigmoid_focal_loss"]))
    if tv is not None:
        add("sigmoid", "torchvision sigmoid_focal_loss", x0,
            lambda x: tv.sigmoid_focal_loss(x, onehot, reduction="mean"))
    fv = _try(lambda: __import__("fvcore.nn", fromlist=["sigmoid_focal_loss_jit"]))
    if fv is not None:
        add("sigmoid", "fvcore sigmoid_focal_loss_jit", x0,
            lambda x: fv.sigmoid_focal_loss_jit(x, onehot, reduction="mean"))
    mm = _try(lambda: __import__("mmdet.models.losses", fromlist=["FocalLoss", "GHMC", "GHMR"]))
    if mm is not None:
        fl = mm.FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25)
        add("sigmoid", "mmdet FocalLoss" + (" (mmcv CUDA op)" if x0.is_cuda else " (PyTorch path)"),
            x0, lambda x: fl(x, lab))
    if device == "cuda":
        ops = _try(lambda: __import__("mmcv.ops", fromlist=["sigmoid_focal_loss"]))
        if ops is not None and _try(lambda: ops.sigmoid_focal_loss(x0[:2].float(), lab[:2], 2.0, 0.25)) is not None:
            add("sigmoid", "mmcv sigmoid_focal_loss CUDA op", x0,
                lambda x: ops.sigmoid_focal_loss(x.float(), lab, 2.0, 0.25, None, "mean"))
    # GHM-C, bins 30, momentum 0.75 (GHM paper / mmdet RetinaNet-GHM config)
    lv = _levels(N)
    if mm is not None and dtype == torch.float32:
        g1 = mm.GHMC(bins=30, momentum=0.75, use_sigmoid=True)
        add("sigmoid", "mmdet GHMC, one call", x0, lambda x: g1(x, onehot, onehot.new_ones(N, C)))
        g5 = mm.GHMC(bins=30, momentum=0.75, use_sigmoid=True)
        oh5, lw5 = onehot.split(lv), onehot.new_ones(N, C).split(lv)
        add("sigmoid", "mmdet GHMC, per FPN level (x5)", x0,
            lambda x: sum(g5(a, b, c) for a, b, c in zip(x.split(lv), oh5, lw5)))
    p1 = fp.GHMC(bins=30, momentum=0.75)
    add("sigmoid", "plugin GHMC (auto), one call", x0, lambda x: p1(x, lab, lw))
    p5 = fp.GHMC(bins=30, momentum=0.75)
    lab5, lws5 = lab.split(lv), lw.split(lv)
    add("sigmoid", "plugin GHMC (auto), per FPN level (x5)", x0,
        lambda x: sum(p5(a, b, c) for a, b, c in zip(x.split(lv), lab5, lws5)))
    pr = fp.GHMC(bins=30, momentum=0.75, impl="reference")
    add("sigmoid", "plugin GHMC (reference), one call", x0, lambda x: pr(x, lab, lw))
    pf = fp.GHMC(bins=30, momentum=0.75)
    lwf = onehot.new_ones(N, C)
    add("sigmoid", "plugin GHMC (auto), one-hot float targets, one call", x0,
        lambda x: pf(x, onehot, lwf))
    ps = fp.GHMC(bins=30, momentum=0.75)
    add("sigmoid", "plugin GHMC (auto), soft targets, one call", x0, lambda x: ps(x, soft, lwf))
    # dense: the same number of logits as (N / 100, C, 10, 10), float targets of that shape
    dshape = (max(N // 100, 1), C, 10, 10)
    xd0 = (torch.randn(dshape, generator=gen) * 2).to(device, dtype)
    td = (torch.rand(dshape, generator=gen) < 0.01).to(device, dtype)
    dname = "x".join(str(v) for v in dshape)
    add("dense", f"BCE with logits, {dname} (yardstick)", xd0,
        lambda x: F.binary_cross_entropy_with_logits(x, td))
    add("dense", "plugin sigmoid_focal_loss (auto)", xd0,
        lambda x: fp.sigmoid_focal_loss(x, td))
    add("dense", "plugin sigmoid_focal_loss, per-class alpha (auto)", xd0,
        lambda x: fp.sigmoid_focal_loss(x, td, alpha=[0.25] * C))
    add("dense", "plugin sigmoid_focal_loss (reference)", xd0,
        lambda x: fp.sigmoid_focal_loss(x, td, impl="reference"))
    if tv is not None:
        add("dense", "torchvision sigmoid_focal_loss", xd0,
            lambda x: tv.sigmoid_focal_loss(x, td, reduction="mean"))
    if fv is not None:
        add("dense", "fvcore sigmoid_focal_loss_jit", xd0,
            lambda x: fv.sigmoid_focal_loss_jit(x, td, alpha=0.25, reduction="mean"))
    if mm is not None and dtype == torch.float32:
        gd = mm.GHMC(bins=30, momentum=0.75, use_sigmoid=True)
        lwd = torch.ones_like(td)
        add("dense", "mmdet GHMC", xd0, lambda x: gd(x, td, lwd))
    pd = fp.GHMC(bins=30, momentum=0.75)
    add("dense", "plugin GHMC (auto)", xd0, lambda x: pd(x, td))
    # softmax, C + 1 classes (background included)
    add("softmax", "cross_entropy (yardstick)", xs0, lambda x: F.cross_entropy(x, slab))
    add("softmax", "plugin softmax_focal_loss (auto)", xs0,
        lambda x: fp.softmax_focal_loss(x, slab, alpha=0.25, background_index=C))
    add("softmax", "plugin softmax_focal_loss (reference)", xs0,
        lambda x: fp.softmax_focal_loss(x, slab, alpha=0.25, background_index=C, impl="reference"))
    if device == "cuda":
        ops = _try(lambda: __import__("mmcv.ops", fromlist=["softmax_focal_loss"]))
        if ops is not None and _try(lambda: ops.softmax_focal_loss(xs0[:2].float(), slab[:2], 2.0, 0.25)) is not None:
            add("softmax", "mmcv softmax_focal_loss CUDA op", xs0,
                lambda x: ops.softmax_focal_loss(x.float(), slab, 2.0, 0.25, None, "mean"))
    sg = fp.GHMC(bins=30, momentum=0.75, use_sigmoid=False)
    add("softmax", "plugin GHMC softmax (auto)", xs0, lambda x: sg(x, slab))
    # regression (N, 4)
    add("regression", "L1 (yardstick)", r0, lambda x: F.l1_loss(x, rt))
    if mm is not None and dtype == torch.float32:
        mr = mm.GHMR(mu=0.02, bins=10, momentum=0.7)
        add("regression", "mmdet GHMR", r0, lambda x: mr(x, rt, rw))
    pg = fp.GHMR(mu=0.02, bins=10, momentum=0.7)
    add("regression", "plugin GHMR (auto)", r0, lambda x: pg(x, rt, rw))
    return out


def _load():
    """The 1/5/15-minute load averages (other processes' share of the CPU), where known."""
    try:
        return "load average " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "load average unknown"


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _step(x, fn, device):
    _sync(device)
    t0 = time.perf_counter()
    fn(x).backward()
    _sync(device)
    x.grad = None
    return (time.perf_counter() - t0) * 1e3


def run(device, sizes, repeats, dtypes, groups=None):
    """The cases of one size and dtype are timed round-robin (repeat r of every case, then
    repeat r + 1), so load from other processes spreads evenly over the rows."""
    SKIPPED.clear()   # this device's reasons only
    print(f"\n## {device}: {torch.cuda.get_device_name() if device == 'cuda' else 'CPU'}"
          f" (torch {torch.__version__}, {torch.get_num_threads()} threads, {_load()})\n")
    print("| size | dtype | loss | median ms | min ms | ratio to yardstick | peak extra MiB |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for N, C in sizes:
        for dt in dtypes:
            rows = []
            for group, name, x0, fn in cases(N, C, device, dt):
                if groups and group not in groups:
                    continue
                x = x0.detach().clone().requires_grad_()
                try:
                    for _ in range(2):
                        _step(x, fn, device)
                except Exception as e:     # e.g. an implementation that rejects this dtype
                    rows.append((group, name, None, None, type(e).__name__))
                    continue
                peak = None
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                    base = torch.cuda.memory_allocated()
                    _step(x, fn, device)
                    peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
                rows.append([group, name, (x, fn), [], peak])
            for _ in range(repeats):
                for r in rows:
                    if r[2] is not None:
                        r[3].append(_step(*r[2], device))
            yard = {}
            for group, name, xf, times, peak in rows:
                if xf is None:
                    print(f"| {N}x{C} | {str(dt)[6:]} | {name} | failed: {peak} | | | |")
                    continue
                ms = statistics.median(times)
                yard.setdefault(group, ms)
                pk = "n/a" if peak is None else f"{peak:.1f}"
                print(f"| {N}x{C} | {str(dt)[6:]} | {name} | {ms:.2f} | {min(times):.2f} | "
                      f"{ms / yard[group]:.2f} | {pk} |", flush=True)
    for why, n in SKIPPED.items():
        print(f"(rows left out {n}x, a peer call raised {why})")
    print(f"\n(after: {_load()})")


HOST_TARGETS = (   # issue 23: (loss row, yardstick row, most x yardstick)
    ("plugin sigmoid_focal_loss", "BCE with logits", 2.5),
    ("plugin GHMC", "BCE with logits", 3.0),
    ("plugin softmax_focal_loss", "cross_entropy", 3.0),
    ("plugin GHMR", "L1", 3.0),
)


def host_cases(N, C):
    """(name, logits, fn) of the --host table: each loss, its yardstick and peers."""
    import focal_plugins as fp
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(N, C, generator=gen) * 2
    lab = torch.randint(0, C + 1, (N,), generator=gen)
    lab[torch.rand(N, generator=gen) < 0.9] = C
    onehot = (lab[:, None] == torch.arange(C)).float()
    lw = torch.ones(N)
    xs0 = torch.randn(N, C + 1, generator=gen) * 2
    slab = torch.randint(0, C + 1, (N,), generator=gen)
    r0, rt = (torch.randn(N, 4, generator=gen) * 0.2 for _ in range(2))
    rw = torch.ones(N, 4)
    ghmc, ghmr = fp.GHMC(bins=30, momentum=0.75), fp.GHMR(mu=0.02, bins=10, momentum=0.7)
    out = [("BCE with logits", x0, lambda x: F.binary_cross_entropy_with_logits(x, onehot)),
           ("plugin sigmoid_focal_loss", x0, lambda x: fp.sigmoid_focal_loss(x, lab))]
    tv = _try(lambda: __import__("torchvision.ops", fromlist=["sigmoid_focal_loss"]))
    if tv is not None:
        out.append(("torchvision sigmoid_focal_loss", x0,
                    lambda x: tv.sigmoid_focal_loss(x, onehot, reduction="mean")))
    out.append(("plugin GHMC", x0, lambda x: ghmc(x, lab, lw)))
    mm = _try(lambda: __import__("mmdet.models.losses", fromlist=["GHMC", "GHMR"]))
    if mm is not None:
        mg, mr = mm.GHMC(bins=30, momentum=0.75), mm.GHMR(mu=0.02, bins=10, momentum=0.7)
        lwf = torch.ones(N, C)
        out.append(("mmdet GHMC", x0, lambda x: mg(x, onehot, lwf)))
    out += [("cross_entropy", xs0, lambda x: F.cross_entropy(x, slab)),
            ("plugin softmax_focal_loss", xs0,
             lambda x: fp.softmax_focal_loss(x, slab, alpha=0.25, background_index=C)),
            ("L1", r0, lambda x: F.l1_loss(x, rt)),
            ("plugin GHMR", r0, lambda x: ghmr(x, rt, rw))]
    if mm is not None:
        out.append(("mmdet GHMR", r0, lambda x: mr(x, rt, rw)))
    return out


def count_ops(fn, x):
    """aten ops dispatched by one forward + backward (TorchDispatchMode: every op below
    autograd, views and scalar reads included; the autograd seed counts too)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))
    with Count():
        fn(x).backward()
    x.grad = None
    return Count.n


def host(N=64, C=80, repeats=300):
    """Per-call host cost: forward + backward of tiny inputs on the CPU, 1 thread, every
    row timed round-robin (repeat r of every row, then r + 1), medians; ratios to the
    row's yardstick; the issue-23 targets checked."""
    torch.set_num_threads(1)
    print(f"\n## host cost, CPU {N}x{C} fp32 forward + backward (torch {torch.__version__}, "
          f"1 thread, {repeats} interleaved repeats, {_load()})\n")
    rows = []
    for name, x0, fn in host_cases(N, C):
        x = x0.clone().requires_grad_()
        for _ in range(20):
            _step(x, fn, "cpu")
        rows.append((name, x, fn, [], count_ops(fn, x)))
    for _ in range(repeats):
        for _, x, fn, times, _ in rows:
            times.append(_step(x, fn, "cpu"))
    med = {name: statistics.median(times) * 1e3 for name, _, _, times, _ in rows}
    yard = {"BCE with logits": "BCE with logits", "plugin sigmoid_focal_loss": "BCE with logits",
            "torchvision sigmoid_focal_loss": "BCE with logits", "plugin GHMC": "BCE with logits",
            "mmdet GHMC": "BCE with logits", "cross_entropy": "cross_entropy",
            "plugin softmax_focal_loss": "cross_entropy", "L1": "L1", "plugin GHMR": "L1",
            "mmdet GHMR": "L1"}
    print("| loss | median us | ratio to yardstick | torch ops per call |")
    print("| --- | ---: | ---: | ---: |")
    for name, _, _, _, ops in rows:
        y = yard[name]
        print(f"| {name} | {med[name]:.1f} | {med[name] / med[y]:.2f}x {y} | {ops} |")
    print("\n| target | measured | met |")
    print("| --- | ---: | --- |")
    for name, y, most in HOST_TARGETS:
        r = med[name] / med[y]
        print(f"| {name} <= {most}x {y} | {r:.2f}x | {'yes' if r <= most else 'no'} |")
    tv = "torchvision sigmoid_focal_loss"
    if tv in med:
        r, rt = med["plugin sigmoid_focal_loss"] / med["BCE with logits"], med[tv] / med["BCE with logits"]
        print(f"| plugin sigmoid_focal_loss <= torchvision's ratio ({rt:.2f}x) | {r:.2f}x | "
              f"{'yes' if r <= rt else 'no'} |")
    for why, n in SKIPPED.items():
        print(f"(rows left out {n}x, a peer call raised {why})")
    print(f"\n(after: {_load()})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda", "all"), default="all")
    ap.add_argument("--sizes", default=None,
                    help="comma-separated NxC, e.g. 50000x80,2000x80 (default per device)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--quick", action="store_true", help="small sizes and 3 repeats")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--groups", default=None,
                    help="comma-separated groups to time: sigmoid,dense,softmax,regression")
    ap.add_argument("--host", action="store_true",
                    help="per-call host cost at 64x80 on the CPU (1 thread) and the targets")
    a = ap.parse_args()
    if a.host:
        host(repeats=a.repeats or 300)
        return
    if a.threads:
        torch.set_num_threads(a.threads)
    devices = ["cpu", "cuda"] if a.device == "all" else [a.device]
    if "cuda" in devices and not torch.cuda.is_available():
        if a.device == "cuda":
            raise SystemExit("no CUDA device")
        devices.remove("cuda")
    for dev in devices:
        if a.sizes:
            sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
        elif a.quick:
            sizes = [(2000, 80)]
        else:
            sizes = [(401400, 80), (20000, 80)] if dev == "cuda" else [(50000, 80), (2000, 80)]
        reps = a.repeats or (3 if a.quick else (50 if dev == "cuda" else 7))
        dts = [torch.float32] + ([torch.bfloat16, torch.float16] if dev == "cuda" else [])
        run(dev, sizes, reps, dts, a.groups.split(",") if a.groups else None)


if __name__ == "__main__":
    main()
