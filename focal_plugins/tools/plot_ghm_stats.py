"""Draw what the GHM losses did while training, from the scalars GHMStatsHook logged.

    python -m focal_plugins.tools.plot_ghm_stats LOG [--out ghm_stats.png] [--module NAME ...]

LOG is mmdet's ``vis_data/scalars.json`` or detectron2's ``metrics.json`` (json lines), or
a folder to search for the newest of them. Enable the hook with
``custom_hooks = [dict(type='GHMStatsHook', interval=50)]`` (mmdet) or
``MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD 20`` (detectron2).

One row per GHM loss: on the left the gradient density, as the fraction of the density in
each bin of g (log colour scale: most examples sit in one or two bins); on the right the
share of the gradient each bin receives. x: iteration; y: g from 0 (well fitted) to 1.
Under GHM's equal budget per non-empty bin the right panel is flat where the loss does what
the paper intends; a bright top row means the gradient goes to the examples with the
largest g.
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import os.path as osp
import re
from collections import defaultdict

KEY = re.compile(r"^ghm/(.+)/(density|count|loss_share|grad_share)_(\d+)$")
LOG_NAMES = ("scalars.json", "metrics.json")


def find_log(path: str) -> str:
    """``path`` if a file, else the newest scalars.json / metrics.json below it."""
    if osp.isfile(path):
        return path
    found = [f for name in LOG_NAMES
             for f in glob.glob(osp.join(path, "**", name), recursive=True)]
    if not found:
        raise FileNotFoundError(f"no {' or '.join(LOG_NAMES)} under {path}")
    return max(found, key=osp.getmtime)


def read_log(path: str):
    """``{module: {"iters": [...], key: [[per-bin values] per logged iteration]}}`` for the
    keys density, count, loss_share, grad_share, in iteration order."""
    rows = defaultdict(dict)  # (module, iteration) -> {key: {bin: value}}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            it = rec.get("step", rec.get("iteration"))
            for k, v in rec.items():
                m = KEY.match(k)
                if m and it is not None:
                    rows[(m.group(1), int(it))].setdefault(m.group(2), {})[int(m.group(3))] = v
    out = {}
    for (module, it) in sorted(rows, key=lambda x: (x[0], x[1])):
        entry = out.setdefault(module, {"iters": []})
        entry["iters"].append(it)
        for key, per_bin in rows[(module, it)].items():
            entry.setdefault(key, []).append([per_bin[i] for i in sorted(per_bin)])
    return out


def _edges(iters):
    """Cell edges around the logged iterations (midpoints; the ends one half-step out)."""
    if len(iters) == 1:
        return [iters[0] - 0.5, iters[0] + 0.5]
    mids = [(a + b) / 2 for a, b in zip(iters, iters[1:])]
    return [2 * iters[0] - mids[0]] + mids + [2 * iters[-1] - mids[-1]]


def plot(stats, out: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    names = sorted(stats)
    fig, axes = plt.subplots(len(names), 2, figsize=(12, 3.2 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        s = stats[name]
        x = _edges(s["iters"])
        dens = np.asarray(s["density"], dtype=float)
        frac = dens / np.where(dens.sum(1, keepdims=True) > 0, dens.sum(1, keepdims=True), 1)
        grad = np.asarray(s["grad_share"], dtype=float)
        bins = frac.shape[1]
        y = np.linspace(0, 1, bins + 1)
        pos = frac[frac > 0]
        norm = LogNorm(vmin=max(pos.min(), 1e-6), vmax=1) if pos.size else None
        im = row[0].pcolormesh(x, y, np.where(frac > 0, frac, np.nan).T, norm=norm,
                               cmap="viridis", shading="flat")
        fig.colorbar(im, ax=row[0], label="fraction of the density")
        row[0].set_title(f"{name}: gradient density per bin")
        im = row[1].pcolormesh(x, y, grad.T, vmin=0, vmax=max(grad.max(), 1e-12),
                               cmap="magma", shading="flat")
        fig.colorbar(im, ax=row[1], label="share of the gradient")
        row[1].set_title(f"{name}: gradient share per bin (equal: {1 / bins:.3f})")
        for ax in row:
            ax.set_xlabel("iteration")
            ax.set_ylabel("g")
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def last_bin_table(s, tail=None) -> str:
    """Per logged iteration: % of the elements (this iteration's counts) and % of the
    gradient in the last bin, or in the bins whose lower edge is >= tail; then the means
    over the logged iterations."""
    bins = len(s["count"][0])
    first = bins - 1 if tail is None else math.ceil(tail * bins - 1e-9)
    elems = [100 * sum(c[first:]) / sum(c) if sum(c) else float("nan") for c in s["count"]]
    grads = [100 * sum(g[first:]) for g in s["grad_share"]]
    name = "last-bin" if tail is None else f"g>={first / bins:g}"
    lines = [f"  iteration  {name} % of elements  {name} % of gradient"]
    lines += [f"  {it:9d}  {e:22.3f}  {g:22.1f}" for it, e, g in zip(s["iters"], elems, grads)]
    lines.append(f"  {'mean':>9}  {sum(elems) / len(elems):22.3f}  {sum(grads) / len(grads):22.1f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m focal_plugins.tools.plot_ghm_stats",
                                description=__doc__.split("\n")[0])
    p.add_argument("log", help="scalars.json / metrics.json, or a folder holding one")
    p.add_argument("--out", default="ghm_stats.png")
    p.add_argument("--module", action="append", help="only these GHM losses (repeatable)")
    p.add_argument("--last-bin", action="store_true",
                   help="also print, per logged iteration, the share of the elements and of "
                   "the gradient in the last g bin, and their means over the run")
    p.add_argument("--tail", type=float, metavar="G",
                   help="as --last-bin, for all the bins whose lower edge is >= G (0 < G < 1)")
    args = p.parse_args(argv)
    if args.tail is not None and not 0 < args.tail < 1:
        p.error(f"--tail must lie in (0, 1), got {args.tail}")
    path = find_log(args.log)
    stats = read_log(path)
    if args.module:
        missing = [m for m in args.module if m not in stats]
        if missing:
            raise SystemExit(f"--module {missing}: not in {path} (found {sorted(stats)})")
        stats = {m: stats[m] for m in args.module}
    if not stats:
        raise SystemExit(f"{path} has no ghm/ scalars: train with GHMStatsHook enabled")
    for name, s in sorted(stats.items()):
        last = " ".join(f"{v:.3f}" for v in s["grad_share"][-1])
        print(f"{name}: {len(s['iters'])} logged iterations; grad share per bin at "
              f"iteration {s['iters'][-1]}: {last}")
        if args.last_bin:
            print(last_bin_table(s))
        if args.tail is not None:
            print(last_bin_table(s, args.tail))
    out = plot(stats, args.out)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
