"""The scale of a detector's box-regression targets, and the GHM-R mu that fits it.

    python -m focal_plugins.tools.ghmr_mu CONFIG [--checkpoint CKPT] [--data-root DIR]
        [--num-images 64] [--bins 10] [--mu 0.02 0.1 ...]

For an mmdet anchor-based dense head (RetinaNet and kin), the positive anchors of the
training images are matched with the head's own assigner and encoded with its own box coder
(so the coder's ``target_means``/``target_stds`` are applied, as the loss sees them). The tool
prints the quantiles of |d| over all positive coordinates, where d is the target delta, or,
with ``--checkpoint``, the residual (predicted delta - target delta) of that model; then, for
each mu, the share of coordinates and of GHM-R's gradient per bin (GHM-R with momentum 0 on
those residuals, as at the first iteration: d = target with the predicted deltas at 0),
the share of coordinates GHM-R (``--bins`` bins over g = |d| / sqrt(d^2 + mu^2)) puts
in its last bin, and the suggested mu = (75th percentile of |d|) / 2.065: the mu at which a
quarter of the coordinates start at g >= 0.9, in the last of 10 bins (docs/demo.md, "GHM-R: choosing mu").
"""
from __future__ import annotations

import argparse
import sys

import torch

from focal_plugins.tools.plot_grad_density import flat_levels, head_batches

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
LAST_BIN_G = 0.9        # lower edge of the last of GHM-R's 10 bins
LAST_BIN_SHARE = 0.25   # the share of coordinates the suggestion starts in that bin
# |d| / mu at which g = |d| / sqrt(d^2 + mu^2) equals 0.9
D_OVER_MU = LAST_BIN_G / (1 - LAST_BIN_G ** 2) ** 0.5


def positive_deltas(config, checkpoint=None, data_root=None, num_images=64):
    """|d| of every positive box coordinate: target deltas, or residuals with a checkpoint."""
    out = []
    for head, _, bbox_preds, (_, _, targets, weights, *_) in head_batches(
            config, checkpoint, data_root, num_images):
        if getattr(head, "reg_decoded_bbox", False):
            raise ValueError(f"{config}: the head regresses decoded boxes "
                             "(reg_decoded_bbox=True); GHM-R's mu applies to coder deltas")
        t = torch.cat(targets, 1)
        keep = torch.cat(weights, 1) > 0
        d = flat_levels(bbox_preds, t.shape[-1]) - t if checkpoint else t
        out.append(d[keep].abs())
    return torch.cat(out).double()


def last_bin_share(d, mu, bins):
    g = d / (d * d + mu * mu).sqrt()
    return (g >= (bins - 1) / bins).double().mean().item()


def bin_shares(d, mu, bins):
    """(share of coordinates, share of |dL/dpred|) per GHM-R bin, one GHM-R call (momentum 0)
    on residuals d, from the loss module itself and autograd."""
    from focal_plugins.core import GHMR

    ghm = GHMR(mu=mu, bins=bins, momentum=0.0)
    pred = torch.zeros_like(d, requires_grad=True)
    ghm(pred.reshape(-1, 1), d.reshape(-1, 1)).backward()
    g = d / (d * d + mu * mu).sqrt()
    idx, counts, _ = ghm.bin_counts(g, torch.ones_like(g, dtype=torch.bool))
    grad = torch.zeros(bins, dtype=torch.float64).index_add_(0, idx, pred.grad.abs().double())
    return counts.double() / counts.sum(), grad / grad.sum()


def suggested_mu(d):
    return torch.quantile(d, 1 - LAST_BIN_SHARE).item() / D_OVER_MU


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m focal_plugins.tools.ghmr_mu",
                                description=__doc__.split("\n")[0])
    p.add_argument("config", help="an mmdet config file, or a shipped config's name "
                   "(python -m focal_plugins.configs lists them)")
    p.add_argument("--checkpoint", help="measure the residuals of this model instead")
    p.add_argument("--data-root", help="COCO-format root (focal_plugins.tools.data_root)")
    p.add_argument("--num-images", type=int, default=64)
    p.add_argument("--bins", type=int, default=10, help="GHM-R bins (default 10, the paper's)")
    p.add_argument("--mu", type=float, nargs="*", default=[0.02, 0.05, 0.1, 0.2])
    args = p.parse_args(argv)
    if args.num_images < 1:
        p.error(f"--num-images must be >= 1, got {args.num_images}")
    if args.bins < 2:
        p.error(f"--bins must be >= 2, got {args.bins}")
    bad = [m for m in args.mu if not m > 0]
    if bad:
        p.error(f"--mu values must be > 0, got {bad}")
    d = positive_deltas(args.config, args.checkpoint, args.data_root, args.num_images)
    if d.numel() == 0:
        sys.exit(f"no positive anchors in the first {args.num_images} training images")
    what = "residual |pred - target|" if args.checkpoint else "target |d|"
    q = torch.quantile(d, torch.tensor(QUANTILES, dtype=d.dtype))
    print(f"{d.numel()} positive box coordinates; {what} quantiles:")
    print("  " + "  ".join(f"{int(k * 100)}%: {v:.4f}" for k, v in zip(QUANTILES, q.tolist())))
    for mu in args.mu:
        print(f"mu {mu:g}: {100 * last_bin_share(d, mu, args.bins):.1f}% of coordinates in "
              f"GHM-R's last bin (g >= {(args.bins - 1) / args.bins:g})")
        coords, grad = bin_shares(d, mu, args.bins)
        print("  per bin, % of coordinates: " + " ".join(f"{100 * v:.1f}" for v in coords))
        print("  per bin, % of the gradient: " + " ".join(f"{100 * v:.1f}" for v in grad))
    print(f"suggested mu (75th percentile of |d| / {D_OVER_MU:.3f}): {suggested_mu(d):.3g}")


if __name__ == "__main__":
    main()
