"""Focal loss against the probability of the ground-truth class, p_t, for several gamma
(the focal loss paper's Figure 1: FL(p_t) = -(1 - p_t)^gamma log(p_t), no alpha), computed
with the package's own ``focal_plugins.core.sigmoid_focal_loss``.

    python -m focal_plugins.tools.plot_focal [--out focal_loss.png] [--gammas 0 0.5 1 2 5]
"""
from __future__ import annotations

import argparse
import os
import os.path as osp

import torch

from focal_plugins.core import sigmoid_focal_loss


def focal_curve(p_t: torch.Tensor, gamma: float) -> torch.Tensor:
    """FL(p_t) for a positive example whose predicted probability is p_t (alpha: none)."""
    logits = torch.logit(p_t.double()).reshape(-1, 1)
    target = torch.ones_like(logits)
    return sigmoid_focal_loss(logits, target, alpha=None, gamma=gamma,
                              reduction="none").reshape(-1)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m focal_plugins.tools.plot_focal",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", default="focal_loss.png")
    p.add_argument("--gammas", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 5.0])
    p.add_argument("--points", type=int, default=400)
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p_t = torch.linspace(1e-3, 1 - 1e-3, args.points, dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for g in args.gammas:
        y = focal_curve(p_t, g)
        label = f"$\\gamma$ = {g:g}" + (" (CE)" if g == 0 else "")
        ax.plot(p_t.numpy(), y.detach().numpy(), label=label)
    ax.axvspan(0.6, 1.0, color="0.9", zorder=0)
    ax.text(0.8, 4.3, "well-classified\nexamples", ha="center", va="top", fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 5)
    ax.set_xlabel("probability of ground truth class $p_t$")
    ax.set_ylabel("loss")
    ax.set_title("Focal loss $-(1-p_t)^\\gamma \\log p_t$ (focal_plugins.core)")
    ax.legend()
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
