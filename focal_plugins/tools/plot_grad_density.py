"""The distribution of the gradient norm g = |p - y| over anchor examples (the GHM paper's
density figure), from trained mmdet RetinaNet checkpoints on a dataset, and how CE, focal
loss and GHM-C reweight it.

    python -m focal_plugins.tools.plot_grad_density --run LABEL CONFIG CHECKPOINT [--run ...]
        [--data-root DIR] [--num-images 64] [--bins 30] [--out grad_density.png]

e.g. after ``make demo``::

    python -m focal_plugins.tools.plot_grad_density \\
        --run BCE configs/demo/retinanet_r18_synthetic_bce.py work_dirs/demo/mmdet/bce/seed0/iter_400.pth \\
        --run focal configs/demo/retinanet_r18_synthetic_sigmoid_focal.py work_dirs/demo/mmdet/sigmoid_focal/seed0/iter_400.pth \\
        --run GHM configs/demo/retinanet_r18_synthetic_ghm.py work_dirs/demo/mmdet/ghm/seed0/iter_400.pth \\
        --data-root data/synthetic

For each checkpoint the classification logits of the training images are matched to their
anchor targets with the head's own assigner (``get_targets``), and g is taken over every
valid (anchor, class) element (sigmoid heads; for softmax heads g = 1 - p of the target
class per anchor). Left panel: fraction of examples per g bin, log scale (most are easy
negatives at g ~ 0, and a bump of very hard or mislabelled ones sits at g ~ 1). Right panel,
for the first sigmoid run: the summed gradient norm |dL/dx| each g bin contributes under CE,
sigmoid focal (gamma 2, alpha 0.25) and GHM-C (the package's losses on the same logits),
normalised to the total of CE.
"""
from __future__ import annotations

import argparse
import os
import os.path as osp

import torch

from focal_plugins.core import GHMC, sigmoid_focal_loss
from focal_plugins.tools.data_root import apply_data_root, resolve_config


def head_batches(config, checkpoint=None, data_root=None, num_images=64, batch_size=8):
    """Yield ``(head, cls_scores, bbox_preds, targets)`` for the training images of an mmdet
    dense-head config, in order, until ``num_images`` images are seen; ``targets`` is what
    the head's own ``get_targets`` (its assigner and box coder) returns for them."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    cfg = Config.fromfile(resolve_config(config))
    if data_root:
        apply_data_root(cfg, data_root)
    init_default_scope(cfg.get("default_scope", "mmdet"))
    if cfg.get("custom_imports"):
        import importlib

        for m in cfg.custom_imports["imports"]:
            importlib.import_module(m)
    from mmdet.registry import MODELS

    model = MODELS.build(cfg.model)
    if checkpoint:
        # an mmengine checkpoint also pickles its log history: weights_only=False (trusted
        # files only, as any pickle)
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(state.get("state_dict", state))
    model.eval()
    head = model.bbox_head
    loader_cfg = cfg.train_dataloader.copy()
    loader_cfg["batch_size"] = batch_size
    loader_cfg["sampler"] = dict(type="DefaultSampler", shuffle=False)
    loader_cfg.pop("batch_sampler", None)
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    seen = 0
    with torch.no_grad():
        for batch in loader:
            data = model.data_preprocessor(batch, training=True)
            samples = data["data_samples"]
            cls_scores, bbox_preds = head(model.extract_feat(data["inputs"]))
            metas = [s.metainfo for s in samples]
            gts = [s.gt_instances for s in samples]
            sizes = [c.shape[-2:] for c in cls_scores]
            anchors, valid = head.get_anchors(sizes, metas, device=cls_scores[0].device)
            yield head, cls_scores, bbox_preds, head.get_targets(anchors, valid, gts, metas)
            seen += len(samples)
            if seen >= num_images:
                return


def flat_levels(maps, channels):
    """Per-level (B, A*channels, H, W) head outputs as one (B, anchors, channels) tensor."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, channels) for m in maps], 1)


def collect_logits(config, checkpoint, data_root=None, num_images=64, batch_size=8):
    """(logits (N, C), targets (N,) class index with C = background, sigmoid?) on the
    training images, valid anchors only."""
    logits, targets, sigmoid = [], [], True
    for head, cls_scores, _, (labels, label_w, *_) in head_batches(
            config, checkpoint, data_root, num_images, batch_size):
        x = flat_levels(cls_scores, head.cls_out_channels)
        keep = torch.cat(label_w, 1) > 0
        logits.append(x[keep])
        targets.append(torch.cat(labels, 1)[keep])
        sigmoid = bool(head.use_sigmoid_cls)
    return torch.cat(logits), torch.cat(targets), sigmoid


def grad_norms(logits, targets, sigmoid):
    C = logits.shape[1]
    if sigmoid:
        onehot = torch.zeros_like(logits)
        fg = targets < C
        onehot[fg.nonzero()[:, 0], targets[fg]] = 1.0
        return (logits.sigmoid() - onehot).abs().reshape(-1), onehot
    p = logits.softmax(1)
    return 1 - p[torch.arange(len(targets)), targets], None


def per_bin_gradient(logits, onehot, g, edges):
    """Summed |dL/dx| per g bin for CE, focal and GHM-C on the same logits (sigmoid)."""
    out = {}
    n_pos = max(1.0, onehot.sum().item())
    ghm = GHMC(bins=len(edges) - 1, momentum=0.0, use_sigmoid=True)
    losses = {
        "CE": lambda x: torch.nn.functional.binary_cross_entropy_with_logits(
            x, onehot, reduction="sum") / n_pos,
        "focal (gamma 2, alpha 0.25)": lambda x: sigmoid_focal_loss(
            x, onehot, alpha=0.25, gamma=2.0, reduction="sum") / n_pos,
        "GHM-C (bins 30)": lambda x: ghm(x, onehot),
    }
    idx = torch.bucketize(g, edges[1:-1])
    for name, fn in losses.items():
        x = logits.detach().clone().requires_grad_(True)
        fn(x).backward()
        gx = x.grad.abs().reshape(-1)
        out[name] = torch.zeros(len(edges) - 1, dtype=torch.float64).index_add_(
            0, idx, gx.double())
    ce_total = out["CE"].sum()
    return {k: v / ce_total for k, v in out.items()}


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m focal_plugins.tools.plot_grad_density",
                                description=__doc__.split("\n")[0])
    p.add_argument("--run", nargs=3, action="append", metavar=("LABEL", "CONFIG", "CKPT"),
                   required=True, help="a trained model (CKPT may be '' for random init)")
    p.add_argument("--data-root", help="COCO-format root (focal_plugins.tools.data_root)")
    p.add_argument("--num-images", type=int, default=64)
    p.add_argument("--bins", type=int, default=30)
    p.add_argument("--out", default="grad_density.png")
    p.add_argument("--hard", type=float, default=0.5,
                   help="print each loss's share of the gradient from examples with g >= this")
    args = p.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = torch.linspace(0, 1, args.bins + 1, dtype=torch.float64)
    edges[-1] += 1e-6
    centers = (0.5 * (edges[:-1] + edges[1:])).clamp(max=1).numpy()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    reweighted = None
    for label, config, ckpt in args.run:
        logits, targets, sigmoid = collect_logits(config, ckpt or None, args.data_root,
                                                  args.num_images)
        g, onehot = grad_norms(logits.double(), targets, sigmoid)
        hist = torch.histc(g.float(), bins=args.bins, min=0, max=1).double()
        frac = (hist / hist.sum()).numpy()
        frac[frac <= 0] = float("nan")
        ax1.semilogy(centers, frac, marker=".", label=f"{label} ({len(g):,} examples)")
        print(f"{label}: {len(g)} examples; fraction with g < 0.1: "
              f"{(g < 0.1).double().mean():.4f}, g > 0.9: {(g > 0.9).double().mean():.5f}")
        if reweighted is None and sigmoid:
            reweighted = (label, per_bin_gradient(logits.double(), onehot, g, edges))
            hard = edges[:-1] >= args.hard - 1e-9
            print(f"  {label}: {100 * (g >= args.hard).double().mean():.3f}% of the examples "
                  f"have g >= {args.hard:g}; their share of each loss's gradient on these logits:")
            for name, v in reweighted[1].items():
                print(f"    {name}: {100 * v[hard].sum() / v.sum():.1f}%")
    ax1.set_xlabel("gradient norm g = |p - y|")
    ax1.set_ylabel("fraction of examples (log)")
    ax1.set_title("Gradient norm density")
    ax1.legend(fontsize=8)
    if reweighted is not None:
        label, curves = reweighted
        for name, v in curves.items():
            vals = v.numpy().copy()
            vals[vals <= 0] = float("nan")  # empty bins: no point
            ax2.semilogy(centers, vals, marker=".", label=name)
        ax2.set_title(f"Gradient contributed per g bin ({label} logits)")
        ax2.set_xlabel("gradient norm g")
        ax2.set_ylabel("summed |dL/dx|, relative to CE total (log)")
        ax2.legend(fontsize=8)
    else:
        ax2.set_axis_off()
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
