"""The main job (`make demo`): train a small RetinaNet with four classification losses on the
embedded synthetic dataset, evaluate COCO AP, print one table and write plots.

    python tools/demo.py [--framework mmdet|detectron2] [--iters N] [--losses a,b,...]
                         [--noise F] [--work-dir DIR] [--data-dir DIR]

Steps:

1. generate the dataset (``focal_plugins.data.synthetic``) into ``data/synthetic`` unless an
   identical copy (same seed and settings) is cached there;
2. for each loss, run the framework's training front (``tools/train.py`` for mmdet,
   ``tools/train_net.py`` for detectron2) as a subprocess on the configs in ``configs/demo/``,
   with the plugin's losses loaded through the adapter; per-iteration progress with ETA is
   echoed from the framework's logger, the full log goes to ``<work-dir>/<loss>/train.log``;
3. the framework's COCO evaluator runs on the val split after training (mmdet's CocoMetric
   with classwise=True, detectron2's COCOEvaluator); the table has AP, AP50, AP75 (COCO
   AP x 100) and AP_rare, the mean per-class AP of the ``--rare-k`` classes with the fewest
   training boxes, and the training time;
4. writes ``<work-dir>/results.md``, ``results.json``, ``losses.png`` (training loss curves)
   and ``ap.png`` (AP per loss).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import os.path as osp
import re
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from focal_plugins.data.synthetic import SyntheticConfig, ensure_dataset  # noqa: E402

# loss key -> (label in the table, mmdet config, detectron2 config)
LOSSES = {
    "bce": ("BCE (sigmoid CE, no focal term)",
            "configs/demo/retinanet_r18_synthetic_bce.py",
            "configs/demo/d2_retinanet_r18_synthetic_bce.yaml"),
    "sigmoid_focal": ("sigmoid focal (gamma 2, alpha 0.25)",
                      "configs/demo/retinanet_r18_synthetic_sigmoid_focal.py",
                      "configs/demo/d2_retinanet_r18_synthetic_sigmoid_focal.yaml"),
    "softmax_focal": ("softmax focal (gamma 2)",
                      "configs/demo/retinanet_r18_synthetic_softmax_focal.py",
                      "configs/demo/d2_retinanet_r18_synthetic_softmax_focal.yaml"),
    "ghm": ("GHM-C + GHM-R",
            "configs/demo/retinanet_r18_synthetic_ghm.py",
            "configs/demo/d2_retinanet_r18_synthetic_ghm.yaml"),
}

# what is echoed from a training subprocess (everything goes to its train.log)
ECHO = re.compile(r"Iter\(train\)|Iter\(val\) \[\d+/\d+\]\s+coco|bbox_mAP_copypaste|eta:|"
                  r"Traceback|Error|error:|Evaluation results for bbox|copypaste")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--framework", choices=("mmdet", "detectron2"), default="mmdet")
    p.add_argument("--iters", type=int, default=400, help="training iterations per loss")
    p.add_argument("--losses", default=",".join(LOSSES),
                   help=f"comma-separated subset of {','.join(LOSSES)}")
    p.add_argument("--data-dir", default=osp.join(ROOT, "data", "synthetic"),
                   help="where the synthetic dataset is generated/cached")
    p.add_argument("--work-dir", default=osp.join(ROOT, "work_dirs", "demo"))
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.add_argument("--num-train", type=int, default=SyntheticConfig.num_train)
    p.add_argument("--num-val", type=int, default=SyntheticConfig.num_val)
    p.add_argument("--noise", type=float, default=0.0,
                   help="fraction of noisy training labels in the generated dataset")
    p.add_argument("--rare-k", type=int, default=3,
                   help="AP_rare averages the per-class AP of this many rarest classes")
    p.add_argument("--quiet", action="store_true", help="do not echo training progress")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- subprocess
def _run(cmd, log_path, quiet=False, prefix=""):
    """Runs cmd, streaming selected lines; returns (returncode, wall seconds)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    t0 = time.time()
    tail = []
    with open(log_path, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            log.write(line)
            log.flush()
            tail = (tail + [line])[-60:]
            if not quiet and ECHO.search(line):
                sys.stdout.write(prefix + _shorten(line))
                sys.stdout.flush()
        rc = proc.wait()
    if rc != 0:
        sys.stdout.write("".join(tail))
    return rc, time.time() - t0


def _shorten(line: str) -> str:
    line = re.sub(r"^\d+/\d+ \d\d:\d\d:\d\d - mmengine - INFO - ", "", line)
    line = re.sub(r"coco/\w+_precision: [\d.]+\s+", "", line)
    line = re.sub(r"\[\d\d/\d\d \d\d:\d\d:\d\d d2\.\S+\]: ", "", line)
    return line


# ------------------------------------------------------------------------------ read back
def _read_json_lines(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def collect_mmdet(work_dir, class_names):
    files = sorted(glob.glob(osp.join(work_dir, "*", "vis_data", "scalars.json")))
    if not files:
        raise FileNotFoundError(f"no mmengine scalars.json under {work_dir}")
    rows = _read_json_lines(files[-1])
    train = [r for r in rows if "loss" in r and "iter" in r]
    val = [r for r in rows if "coco/bbox_mAP" in r]
    if not val:
        # CocoMetric logs no AP when the model made no detection above the score threshold
        if not any("step" in r and "loss" not in r for r in rows):
            raise RuntimeError(f"no evaluation in {files[-1]}")
        print("[demo] no detections above the score threshold: AP 0")
        val = [{"coco/bbox_mAP": 0.0, "coco/bbox_mAP_50": 0.0, "coco/bbox_mAP_75": 0.0,
                **{f"coco/{n}_precision": 0.0 for n in class_names}}]
    v = val[-1]
    # the logger averages 'time' over its interval: sum(time) x interval ~ loop time
    iters = [r["iter"] for r in train]
    train_time = 0.0
    prev = 0
    for r in train:
        train_time += r["time"] * (r["iter"] - prev)
        prev = r["iter"]
    return dict(
        curve=[(r["iter"], r["loss"]) for r in train],
        AP=100 * v["coco/bbox_mAP"], AP50=100 * v["coco/bbox_mAP_50"],
        AP75=100 * v["coco/bbox_mAP_75"],
        per_class={n: 100 * v.get(f"coco/{n}_precision", float("nan")) for n in class_names},
        train_time=train_time, iters=iters[-1] if iters else 0)


def collect_detectron2(work_dir, class_names):
    path = osp.join(work_dir, "metrics.json")
    rows = _read_json_lines(path)
    train = [r for r in rows if "total_loss" in r]
    val = [r for r in rows if "bbox/AP" in r]
    if not val:
        raise RuntimeError(f"no COCO evaluation in {path}")
    v = val[-1]
    train_time = 0.0
    prev = 0
    for r in train:  # 'time' is the median over the logger's window
        it = r["iteration"] + 1
        train_time += r.get("time", 0.0) * (it - prev)
        prev = it
    return dict(
        curve=[(r["iteration"] + 1, r["total_loss"]) for r in train],
        AP=v["bbox/AP"], AP50=v["bbox/AP50"], AP75=v["bbox/AP75"],
        per_class={n: v.get(f"bbox/AP-{n}", float("nan")) for n in class_names},
        train_time=train_time, iters=prev)


def _nanmean(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(xs) / len(xs) if xs else float("nan")


# --------------------------------------------------------------------------------- output
def make_table(results, rare, args, dataset_line):
    head = ("| loss | AP | AP50 | AP75 | AP_rare | train time (s) | wall (s) |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    body = ""
    for key, r in results.items():
        body += (f"| {LOSSES[key][0]} | {r['AP']:.1f} | {r['AP50']:.1f} | {r['AP75']:.1f} | "
                 f"{r['AP_rare']:.1f} | {r['train_time']:.0f} | {r['wall']:.0f} |\n")
    notes = (f"\nframework {args.framework}; {args.iters} iterations per loss; {dataset_line}; "
             f"COCO AP x 100 on the val split; AP_rare = mean per-class AP of the "
             f"{len(rare)} classes with the fewest training boxes ({', '.join(rare)}); "
             "train time = the training loop as the framework's logger timed it, wall = the "
             "whole subprocess (start-up, training, evaluation).\n")
    return head + body + notes


def plot(results, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, r in results.items():
        if r["curve"]:
            xs, ys = zip(*r["curve"])
            ax.plot(xs, ys, label=LOSSES[key][0])
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (cls + box)")
    ax.set_yscale("log")
    ax.set_title("Training loss per classification loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(osp.join(out_dir, "losses.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    metrics = ("AP", "AP50", "AP75", "AP_rare")
    width = 0.8 / max(1, len(results))
    for i, (key, r) in enumerate(results.items()):
        xs = [m + i * width for m in range(len(metrics))]
        ax.bar(xs, [0 if math.isnan(r[m]) else r[m] for m in metrics], width,
               label=LOSSES[key][0])
    ax.set_xticks([m + width * (len(results) - 1) / 2 for m in range(len(metrics))])
    ax.set_xticklabels(metrics)
    ax.set_ylabel("COCO AP x 100 (val)")
    ax.set_title("AP per loss")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(osp.join(out_dir, "ap.png"), dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    keys = [k.strip() for k in args.losses.split(",") if k.strip()]
    for k in keys:
        if k not in LOSSES:
            raise SystemExit(f"unknown loss {k!r}; choose from {', '.join(LOSSES)}")
    t_start = time.time()
    os.makedirs(args.work_dir, exist_ok=True)

    dcfg = SyntheticConfig(seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                           noise=args.noise)
    ensure_dataset(dcfg, args.data_dir, verbose=True)
    with open(osp.join(args.data_dir, "annotations", "instances_train.json")) as f:
        train_coco = json.load(f)
    counts = train_coco["info"]["class_counts"]
    class_names = [c["name"] for c in train_coco["categories"]]
    rare = sorted(class_names, key=lambda n: (counts[n], -class_names.index(n)))[: args.rare_k]
    dataset_line = (f"synthetic dataset seed {args.seed}: {len(train_coco['images'])} train / "
                    f"{args.num_val} val images of {dcfg.image_size}x{dcfg.image_size}, "
                    f"{len(train_coco['annotations'])} train boxes, noise {args.noise}")

    results = {}
    for n, key in enumerate(keys, 1):
        label, mm_cfg, d2_cfg = LOSSES[key]
        wd = osp.join(args.work_dir, args.framework, key)
        os.makedirs(wd, exist_ok=True)
        if args.framework == "mmdet":
            for old in glob.glob(osp.join(wd, "2*", "vis_data", "scalars.json")):
                os.remove(old)
            cmd = [sys.executable, "tools/train.py", mm_cfg, "--work-dir", wd,
                   "--data-root", args.data_dir, "--max-iters", str(args.iters)]
        else:
            if osp.exists(osp.join(wd, "metrics.json")):
                os.remove(osp.join(wd, "metrics.json"))
            cmd = [sys.executable, "tools/train_net.py", "--config-file", d2_cfg,
                   "--data-root", args.data_dir, "--max-iter", str(args.iters),
                   "OUTPUT_DIR", wd]
        print(f"\n[demo] ({n}/{len(keys)}) {label}: {' '.join(cmd[1:])}", flush=True)
        rc, wall = _run(cmd, osp.join(wd, "train.log"), quiet=args.quiet,
                        prefix=f"[{key}] ")
        if rc != 0:
            raise SystemExit(f"[demo] training with {key} failed (exit {rc}); log: "
                             f"{osp.join(wd, 'train.log')}")
        collect = collect_mmdet if args.framework == "mmdet" else collect_detectron2
        r = collect(wd, class_names)
        r["wall"] = wall
        r["AP_rare"] = _nanmean([r["per_class"][c] for c in rare])
        results[key] = r
        elapsed = time.time() - t_start
        print(f"[demo] {key}: AP {r['AP']:.1f}, AP_rare {r['AP_rare']:.1f}, "
              f"{wall:.0f} s; {elapsed / 60:.1f} min since the start", flush=True)

    table = make_table(results, rare, args, dataset_line)
    cmdline = "python tools/demo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    with open(osp.join(args.work_dir, "results.md"), "w") as f:
        f.write(f"`{cmdline.strip()}`\n\n{table}")
    with open(osp.join(args.work_dir, "results.json"), "w") as f:
        json.dump({"command": cmdline.strip(), "framework": args.framework,
                   "iters": args.iters, "rare_classes": rare, "class_counts": counts,
                   "results": results}, f, indent=1)
    plot(results, args.work_dir)
    print("\n" + table)
    print(f"[demo] per-class AP: " + "; ".join(
        f"{k}: " + ", ".join(f"{c} {v:.1f}" for c, v in r["per_class"].items())
        for k, r in results.items()))
    print(f"[demo] wrote {osp.join(args.work_dir, 'results.md')}, losses.png, ap.png; "
          f"total {(time.time() - t_start) / 60:.1f} min")
    return results


if __name__ == "__main__":
    main()
