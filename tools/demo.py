"""The main job (`make demo`): a multi-seed loss study. A small RetinaNet is trained with each
loss on the embedded synthetic dataset, several times with different training seeds (the
dataset fixed), evaluated with the framework's COCO evaluator, and every loss is reported
as mean +- std over the seeds.

    python tools/demo.py [--framework mmdet|detectron2] [--seeds 3 | --seeds 0,1,2]
                         [--iters N] [--losses a,b,...] [--noise F]
                         [--noise-type mixed|class|jitter|spurious] [--jobs J]
                         [--work-dir DIR] [--data-dir DIR]

Steps:

1. generate the dataset (``focal_plugins.data.synthetic``) into ``data/synthetic`` (or
   ``data/synthetic_noise<F>`` with ``--noise F``, ``..._noise<F>_<type>`` with one
   ``--noise-type``, ``..._train<N>`` with a non-default ``--num-train``) unless an identical
   copy (same seed and settings) is cached there;
2. for each loss and each training seed, run the framework's own training front
   (``tools/train.py`` with ``--cfg-options randomness.seed=S`` for mmdet,
   ``tools/train_net.py ... SEED S`` for detectron2) as a subprocess on the configs in
   ``configs/demo/``, with the plugin's losses loaded through the adapter. ``--jobs`` runs
   that many trainings side by side, each on ``--threads`` CPU threads (default: one
   job per core, one thread each, so a run's result does not depend on ``--jobs``);
3. the framework's COCO evaluator runs on the val split after training (mmdet's CocoMetric
   with classwise=True, detectron2's COCOEvaluator): AP, AP50, AP75 (COCO AP x 100) and
   AP_rare, the mean per-class AP of the ``--rare-k`` classes with the fewest training boxes;
4. prints one table of mean +- std (sample standard deviation over the seeds) per loss and
   writes ``<work-dir>/<framework>[_noise<F>[_<type>]]/``: ``results.md``, ``results.json`` (every
   run's numbers and training-loss curve), ``ap.png`` (mean +- std per metric and loss) and
   ``losses.png`` (mean training loss per loss, the band spanning the seeds).
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
import threading
import time
from concurrent.futures import ThreadPoolExecutor

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from focal_plugins.data.synthetic import NOISE_TYPES, SyntheticConfig, ensure_dataset  # noqa: E402

# loss key -> (label in the table, mmdet config, detectron2 config)
LOSSES = {
    "bce": ("BCE (sigmoid CE, no focal term) + L1",
            "configs/demo/retinanet_r18_synthetic_bce.py",
            "configs/demo/d2_retinanet_r18_synthetic_bce.yaml"),
    "sigmoid_focal": ("sigmoid focal (gamma 2, alpha 0.25) + L1",
                      "configs/demo/retinanet_r18_synthetic_sigmoid_focal.py",
                      "configs/demo/d2_retinanet_r18_synthetic_sigmoid_focal.yaml"),
    "softmax_focal": ("softmax focal (gamma 2) + L1",
                      "configs/demo/retinanet_r18_synthetic_softmax_focal.py",
                      "configs/demo/d2_retinanet_r18_synthetic_softmax_focal.yaml"),
    "ghmc": ("GHM-C + L1",
             "configs/demo/retinanet_r18_synthetic_ghmc.py",
             "configs/demo/d2_retinanet_r18_synthetic_ghmc.yaml"),
    "ghm": ("GHM-C + GHM-R (mu 0.1)",
            "configs/demo/retinanet_r18_synthetic_ghm.py",
            "configs/demo/d2_retinanet_r18_synthetic_ghm.yaml"),
    "ghm_paper": ("GHM-C + GHM-R, paper settings (mu 0.02)",
                  "configs/demo/retinanet_r18_synthetic_ghm_paper.py",
                  "configs/demo/d2_retinanet_r18_synthetic_ghm_paper.yaml"),
}
METRICS = ("AP", "AP50", "AP75", "AP_rare")
STD_TARGET = 2.0   # the study's bar: seed std of AP at most this many points
# training iterations per run, as in configs/demo/_base_/ (max_iters, SOLVER.MAX_ITER)
DEFAULT_ITERS = {"mmdet": 400, "detectron2": 600}

# what is echoed from a training subprocess (everything goes to its train.log)
ECHO = re.compile(r"Iter\(train\)|bbox_mAP_copypaste|eta:|Traceback|Error|error:|"
                  r"Evaluation results for bbox|copypaste")


def parse_seeds(text: str):
    """'3' -> [0, 1, 2]; '0,4,7' -> [0, 4, 7]."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes a count or a comma-separated list of "
                                         f"integers, got {text!r}") from None
    if len(values) == 1 and "," not in str(text):
        if values[0] < 1:
            raise argparse.ArgumentTypeError(f"--seeds count must be >= 1, got {text!r}")
        return list(range(values[0]))
    if not values or len(set(values)) != len(values) or min(values) < 0:
        raise argparse.ArgumentTypeError(f"--seeds list must hold distinct integers >= 0, "
                                         f"got {text!r}")
    return values


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--framework", choices=("mmdet", "detectron2"), default="mmdet")
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("3"),
                   help="training seeds: a count N (seeds 0..N-1) or a list '0,1,2'")
    p.add_argument("--iters", type=int, default=None,
                   help="training iterations per run (default: the demo configs' own, "
                   + ", ".join(f"{k} {v}" for k, v in DEFAULT_ITERS.items()) + ")")
    p.add_argument("--losses", default=",".join(LOSSES),
                   help=f"comma-separated subset of {','.join(LOSSES)}")
    p.add_argument("--jobs", type=int, default=None,
                   help="trainings run side by side (default: one per CPU core)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads of each training (default 1)")
    p.add_argument("--data-dir", default=None,
                   help="where the synthetic dataset is generated/cached (default "
                   "data/synthetic, or data/synthetic_noise<F> with --noise F)")
    p.add_argument("--work-dir", default=osp.join(ROOT, "work_dirs", "demo"))
    p.add_argument("--seed", type=int, default=0, help="dataset seed (fixed across runs)")
    p.add_argument("--num-train", type=int, default=SyntheticConfig.num_train)
    p.add_argument("--num-val", type=int, default=400,
                   help="validation images (400: the AP of one model varies less than "
                   "on 100)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="fraction of noisy training labels in the generated dataset")
    p.add_argument("--noise-type", choices=NOISE_TYPES, default="mixed",
                   help="with --noise: corrupt labels by one kind only (class: a wrong "
                   "class, jitter: a badly shifted box, spurious: a box on background) or "
                   "a third each (mixed, the default)")
    p.add_argument("--rare-k", type=int, default=3,
                   help="AP_rare averages the per-class AP of this many rarest classes")
    p.add_argument("--quiet", action="store_true", help="do not echo training progress")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                   help="config overrides for every training, e.g. "
                   "model.bbox_head.loss_bbox.mu=0.05 (mmdet --cfg-options) or "
                   "MODEL.FOCAL_PLUGINS.RETINANET.BOX_LOSS.MU=0.05 (detectron2 opts)")
    p.add_argument("--ghm-stats", type=int, default=0, metavar="N",
                   help="log the GHM losses' bin statistics every N iterations (0: off)")
    args = p.parse_args(argv)
    if args.iters is None:
        args.iters = DEFAULT_ITERS[args.framework]
    bad = [kv for kv in args.set if "=" not in kv or kv.startswith("=")]
    if bad:
        p.error(f"--set takes KEY=VALUE pairs, got {bad}")
    if args.ghm_stats < 0:
        p.error(f"--ghm-stats must be >= 0, got {args.ghm_stats}")
    for name in ("iters", "threads", "rare_k"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.jobs is not None and args.jobs < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    if not 0.0 <= args.noise <= 1.0:
        p.error(f"--noise must lie in [0, 1], got {args.noise}")
    if args.noise_type != "mixed" and args.noise == 0:
        p.error(f"--noise-type {args.noise_type} needs --noise > 0")
    if args.num_train < 1:
        p.error(f"--num-train must be >= 1, got {args.num_train}")
    if args.data_dir is None:
        args.data_dir = osp.join(ROOT, "data", "synthetic" + _data_suffix(args))
    return args


def _noise_suffix(args) -> str:
    """What tells a noisy dataset apart in folder names ('' without noise)."""
    tag = "" if args.noise == 0 else f"_noise{args.noise:g}"
    return tag + ("" if args.noise_type == "mixed" else f"_{args.noise_type}")


def _data_suffix(args) -> str:
    """The dataset folder's suffix: the noise, and a non-default --num-train."""
    train = "" if args.num_train == SyntheticConfig.num_train else f"_train{args.num_train}"
    return _noise_suffix(args) + train


def run_tag(args) -> str:
    """The result folder under --work-dir: the framework and the noise (not --num-train:
    give a larger set its own --work-dir)."""
    return args.framework + _noise_suffix(args)


# ----------------------------------------------------------------------------- subprocess
_print_lock = threading.Lock()


def _say(text: str) -> None:
    with _print_lock:
        sys.stdout.write(text)
        sys.stdout.flush()


def _run(cmd, log_path, threads, quiet=False, prefix=""):
    """Runs cmd, streaming selected lines; returns (returncode, wall seconds)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
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
                _say(prefix + _shorten(line))
        rc = proc.wait()
    if rc != 0:
        _say("".join(prefix + t for t in tail))
    return rc, time.time() - t0


def _shorten(line: str) -> str:
    line = re.sub(r"^\d+/\d+ \d\d:\d\d:\d\d - mmengine - INFO - ", "", line)
    line = re.sub(r"\s+(lr|data_time|memory): [\d.e+-]+", "", line)
    line = re.sub(r"\[\d\d/\d\d \d\d:\d\d:\d\d d2\.\S+\]: ", "", line)
    return line


def train_command(args, key, seed, wd):
    _, mm_cfg, d2_cfg = LOSSES[key]
    if args.framework == "mmdet":
        return [sys.executable, "tools/train.py", mm_cfg, "--work-dir", wd,
                "--data-root", args.data_dir, "--max-iters", str(args.iters),
                *(["--ghm-stats", str(args.ghm_stats)] if args.ghm_stats else []),
                "--cfg-options", f"randomness.seed={seed}", *args.set]
    opts = [part for kv in args.set for part in kv.split("=", 1)]
    return [sys.executable, "tools/train_net.py", "--config-file", d2_cfg,
            "--data-root", args.data_dir, "--max-iter", str(args.iters),
            "SEED", str(seed), "OUTPUT_DIR", wd,
            "MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD", str(args.ghm_stats), *opts]


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
        _say("[demo] no detections above the score threshold: AP 0\n")
        val = [{"coco/bbox_mAP": 0.0, "coco/bbox_mAP_50": 0.0, "coco/bbox_mAP_75": 0.0,
                **{f"coco/{n}_precision": 0.0 for n in class_names}}]
    v = val[-1]
    # the logger averages 'time' over its interval: sum(time) x interval ~ loop time
    train_time, prev = 0.0, 0
    for r in train:
        train_time += r["time"] * (r["iter"] - prev)
        prev = r["iter"]
    return dict(
        curve=[(r["iter"], r["loss"]) for r in train],
        AP=100 * v["coco/bbox_mAP"], AP50=100 * v["coco/bbox_mAP_50"],
        AP75=100 * v["coco/bbox_mAP_75"],
        per_class={n: 100 * v.get(f"coco/{n}_precision", float("nan")) for n in class_names},
        train_time=train_time, iters=prev)


def collect_detectron2(work_dir, class_names):
    path = osp.join(work_dir, "metrics.json")
    rows = _read_json_lines(path)
    train = [r for r in rows if "total_loss" in r]
    val = [r for r in rows if "bbox/AP" in r]
    if not val:
        raise RuntimeError(f"no COCO evaluation in {path}")
    v = val[-1]
    train_time, prev = 0.0, 0
    for r in train:  # 'time' is the median over the logger's window
        it = r["iteration"] + 1
        train_time += r.get("time", 0.0) * (it - prev)
        prev = it
    return dict(
        curve=[(r["iteration"] + 1, r["total_loss"]) for r in train],
        AP=v["bbox/AP"], AP50=v["bbox/AP50"], AP75=v["bbox/AP75"],
        per_class={n: v.get(f"bbox/AP-{n}", float("nan")) for n in class_names},
        train_time=train_time, iters=prev)


def _finite(xs):
    return [x for x in xs if x is not None and not math.isnan(x)]


def mean_std(xs):
    """(mean, sample std) of the finite values; std is nan for fewer than 2."""
    xs = _finite(xs)
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def summarise(runs):
    """{metric: (mean, std)} over a loss's runs, plus the train time and wall means."""
    out = {m: mean_std([r[m] for r in runs]) for m in METRICS}
    out["train_time"] = mean_std([r["train_time"] for r in runs])
    out["wall"] = mean_std([r["wall"] for r in runs])
    return out


# --------------------------------------------------------------------------------- output
def row_label(key, overrides):
    """The row's name in tables and plots: the loss's label, with any ``--set`` overrides,
    which may change what the label says (e.g. GHM-R's mu)."""
    label = LOSSES[key][0]
    return f"{label} [{', '.join(overrides)}]" if overrides else label


def _pm(ms, digits=1):
    m, s = ms
    if math.isnan(s):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def make_table(results, rare, args, dataset_line):
    n = len(args.seeds)
    head = (f"| loss | AP | AP50 | AP75 | AP_rare | train time (s) |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: |\n")
    body = ""
    for key, res in results.items():
        s = res["summary"]
        body += (f"| {res['label']} | " + " | ".join(_pm(s[m]) for m in METRICS)
                 + f" | {s['train_time'][0]:.0f} |\n")
    notes = (f"\nMean ± sample std over {n} training seed{'s' if n > 1 else ''} "
             f"({', '.join(map(str, args.seeds))}); framework {args.framework}; "
             f"{args.iters} iterations per run; {dataset_line}; COCO AP x 100 on the val "
             f"split; AP_rare = mean per-class AP of the {len(rare)} classes with the fewest "
             f"training boxes ({', '.join(rare)}); train time = the training loop as the "
             "framework's logger timed it (mean per run)"
             + (f"; overrides for every run: {' '.join(args.set)}" if args.set else "")
             + ".\n")
    return head + body + notes


def make_runs_table(results):
    head = ("| loss | seed | AP | AP50 | AP75 | AP_rare | train time (s) | wall (s) |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
    body = ""
    for key, res in results.items():
        for r in res["runs"]:
            body += (f"| {key} | {r['seed']} | " + " | ".join(f"{r[m]:.1f}" for m in METRICS)
                     + f" | {r['train_time']:.0f} | {r['wall']:.0f} |\n")
    return head + body


def plot(results, out_dir, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, res in results.items():
        curves = [dict(r["curve"]) for r in res["runs"] if r["curve"]]
        if not curves:
            continue
        xs = sorted(set.intersection(*(set(c) for c in curves)))
        ys = [[c[x] for c in curves] for x in xs]
        line, = ax.plot(xs, [sum(y) / len(y) for y in ys], label=res['label'])
        if len(curves) > 1:
            ax.fill_between(xs, [min(y) for y in ys], [max(y) for y in ys],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss (cls + box)")
    ax.set_yscale("log")
    ax.set_title(f"Training loss, mean over seeds (band: min-max); {title}", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(osp.join(out_dir, "losses.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.8 / max(1, len(results))
    for i, (key, res) in enumerate(results.items()):
        s = res["summary"]
        xs = [m + i * width for m in range(len(METRICS))]
        means = [0.0 if math.isnan(s[m][0]) else s[m][0] for m in METRICS]
        stds = [0.0 if math.isnan(s[m][1]) else s[m][1] for m in METRICS]
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=res['label'])
    ax.set_xticks([m + width * (len(results) - 1) / 2 for m in range(len(METRICS))])
    ax.set_xticklabels(METRICS)
    ax.set_ylabel("COCO AP x 100 (val), mean ± std over seeds")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
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
    out_dir = osp.join(args.work_dir, run_tag(args))
    os.makedirs(out_dir, exist_ok=True)

    dcfg = SyntheticConfig(seed=args.seed, num_train=args.num_train, num_val=args.num_val,
                           noise=args.noise, noise_type=args.noise_type)
    ensure_dataset(dcfg, args.data_dir, verbose=True)
    with open(osp.join(args.data_dir, "annotations", "instances_train.json")) as f:
        train_coco = json.load(f)
    counts = train_coco["info"]["class_counts"]
    class_names = [c["name"] for c in train_coco["categories"]]
    rare = sorted(class_names, key=lambda n: (counts[n], -class_names.index(n)))[: args.rare_k]
    dataset_line = (f"synthetic dataset seed {args.seed}: {len(train_coco['images'])} train / "
                    f"{args.num_val} val images of {dcfg.image_size}x{dcfg.image_size}, "
                    f"{len(train_coco['annotations'])} train boxes, noise {args.noise:g}"
                    + ("" if args.noise_type == "mixed" else f" ({args.noise_type})"))

    runs = [(key, seed) for key in keys for seed in args.seeds]
    jobs = min(args.jobs or max(1, _cores() // args.threads), len(runs))
    _say(f"[demo] {len(runs)} trainings ({len(keys)} losses x {len(args.seeds)} seeds), "
         f"{jobs} at a time, {args.threads} thread(s) each\n")
    collect = collect_mmdet if args.framework == "mmdet" else collect_detectron2
    done = []

    def one(item):
        n, (key, seed) = item
        wd = osp.join(out_dir, key, f"seed{seed}")
        os.makedirs(wd, exist_ok=True)
        for old in glob.glob(osp.join(wd, "2*", "vis_data", "scalars.json")) + \
                glob.glob(osp.join(wd, "metrics.json")):
            os.remove(old)
        cmd = train_command(args, key, seed, wd)
        _say(f"\n[demo] ({n}/{len(runs)}) {LOSSES[key][0]}, seed {seed}: "
             f"{' '.join(cmd[1:])}\n")
        rc, wall = _run(cmd, osp.join(wd, "train.log"), args.threads, quiet=args.quiet,
                        prefix=f"[{key} s{seed}] ")
        if rc != 0:
            raise RuntimeError(f"training {key} seed {seed} failed (exit {rc}); log: "
                               f"{osp.join(wd, 'train.log')}")
        r = collect(wd, class_names)
        r.update(seed=seed, wall=wall, work_dir=wd,
                 AP_rare=mean_std([r["per_class"][c] for c in rare])[0])
        done.append(1)
        _say(f"[demo] {key} seed {seed}: AP {r['AP']:.1f}, AP_rare {r['AP_rare']:.1f}, "
             f"{wall:.0f} s; {len(done)}/{len(runs)} done, "
             f"{(time.time() - t_start) / 60:.1f} min since the start\n")
        return key, r

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        try:
            finished = list(pool.map(one, enumerate(runs, 1)))
        except RuntimeError as e:
            raise SystemExit(f"[demo] {e}")
    results = {}
    for key in keys:
        rs = sorted((r for k, r in finished if k == key), key=lambda r: r["seed"])
        results[key] = dict(label=row_label(key, args.set), runs=rs, summary=summarise(rs))

    table = make_table(results, rare, args, dataset_line)
    runs_table = make_runs_table(results)
    cmdline = "python tools/demo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    total = time.time() - t_start
    with open(osp.join(out_dir, "results.md"), "w") as f:
        f.write(f"`{cmdline.strip()}` ({total / 60:.1f} min)\n\n{table}\nEvery run:\n\n"
                f"{runs_table}")
    with open(osp.join(out_dir, "results.json"), "w") as f:
        json.dump({"command": cmdline.strip(), "framework": args.framework,
                   "iters": args.iters, "seeds": args.seeds, "noise": args.noise,
                   "noise_type": args.noise_type, "set": args.set,
                   "dataset": dataset_line, "rare_classes": rare, "class_counts": counts,
                   "minutes": total / 60, "results": results}, f, indent=1)
    plot(results, out_dir, f"{args.framework}, noise {args.noise:g}, {args.iters} iterations, "
         f"{len(args.seeds)} seeds")
    print("\n" + table)
    wide = [LOSSES[k][0] for k, r in results.items()
            if r["summary"]["AP"][1] > STD_TARGET]
    if wide:
        print(f"[demo] note: seed std of AP above {STD_TARGET:g} for: {'; '.join(wide)}")
    print(f"[demo] wrote {osp.join(out_dir, 'results.md')}, results.json, losses.png, "
          f"ap.png; total {total / 60:.1f} min")
    return results


if __name__ == "__main__":
    main()
