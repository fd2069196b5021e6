"""tools/demo.py, the multi-seed loss study: seeds, mean +- std, outputs, both frameworks end
to end on a tiny dataset (subprocesses, CPU)."""
import argparse
import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))

import demo  # noqa: E402


def _env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def test_seeds_take_a_count_or_a_list():
    assert demo.parse_seeds("3") == [0, 1, 2]
    assert demo.parse_seeds("1") == [0]
    assert demo.parse_seeds("4,0,7") == [4, 0, 7]
    assert demo.parse_seeds("5,") == [5]
    for bad in ("0", "-2", "a", "1,1", "1,-3", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="--seeds"):
            demo.parse_seeds(bad)


def test_mean_and_sample_std():
    m, s = demo.mean_std([50.0, 52.0, 57.0])
    assert m == pytest.approx(53.0)
    assert s == pytest.approx(math.sqrt((9 + 1 + 16) / 2))
    m, s = demo.mean_std([41.0, float("nan")])   # a class without AP is left out
    assert m == 41.0 and math.isnan(s)
    assert all(math.isnan(v) for v in demo.mean_std([]))


def test_bad_arguments_are_refused(capsys):
    for argv, word in ((["--iters", "0"], "--iters"), (["--jobs", "0"], "--jobs"),
                       (["--noise", "1.5"], "--noise"), (["--seeds", "0"], "--seeds"),
                       (["--set", "mu0.05"], "--set"), (["--set", "=1"], "--set"),
                       (["--ghm-stats", "-1"], "--ghm-stats"),
                       (["--noise-type", "class"], "--noise-type"),
                       (["--noise", "0.2", "--noise-type", "labels"], "--noise-type"),
                       (["--num-train", "0"], "--num-train")):
        with pytest.raises(SystemExit):
            demo.parse_args(argv)
        assert word in capsys.readouterr().err


def test_noise_gets_its_own_dataset_and_result_folders():
    clean, noisy = demo.parse_args([]), demo.parse_args(["--noise", "0.2"])
    assert clean.data_dir != noisy.data_dir and noisy.data_dir.endswith("synthetic_noise0.2")
    assert demo.run_tag(clean) == "mmdet" and demo.run_tag(noisy) == "mmdet_noise0.2"


def test_one_noise_type_and_a_larger_set_get_their_own_folders():
    one = demo.parse_args(["--noise", "0.2", "--noise-type", "jitter"])
    assert one.data_dir.endswith("synthetic_noise0.2_jitter")
    assert demo.run_tag(one) == "mmdet_noise0.2_jitter"
    big = demo.parse_args(["--framework", "detectron2", "--noise", "0.2", "--noise-type",
                           "class", "--num-train", "1600"])
    assert big.data_dir.endswith("synthetic_noise0.2_class_train1600")
    assert demo.run_tag(big) == "detectron2_noise0.2_class"   # a larger set: its own --work-dir
    assert demo.parse_args(["--noise", "0.2", "--noise-type", "mixed"]).data_dir.endswith(
        "synthetic_noise0.2")


def test_overrides_reach_both_frameworks_commands():
    args = demo.parse_args(["--set", "model.bbox_head.loss_bbox.mu=0.05", "a.b=c=d"])
    mm = demo.train_command(args, "ghm", 2, "wd")
    assert mm[-3:] == ["randomness.seed=2", "model.bbox_head.loss_bbox.mu=0.05", "a.b=c=d"]
    args = demo.parse_args(["--framework", "detectron2", "--set",
                            "MODEL.FOCAL_PLUGINS.RETINANET.BOX_LOSS.MU=0.05"])
    d2 = demo.train_command(args, "ghm", 1, "wd")
    assert d2[-8:] == ["SEED", "1", "OUTPUT_DIR", "wd", "MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD",
                       "0", "MODEL.FOCAL_PLUGINS.RETINANET.BOX_LOSS.MU", "0.05"]
    assert "overrides for every run: " in demo.make_table({}, ["bar"], args, "data")


def test_overrides_name_the_row():
    # a --set can change what the loss's label says (GHM-R's mu): the row names the override
    summary = dict({m: (54.8, 1.4) for m in demo.METRICS}, train_time=(95.0, 0.5))
    for over in ([], ["model.bbox_head.loss_bbox.mu=0.2"]):
        label = demo.row_label("ghm", over)
        table = demo.make_table({"ghm": dict(label=label, runs=[], summary=summary)}, ["bar"],
                                demo.parse_args(["--set", *over] if over else []), "data")
        row = table.splitlines()[2]
        assert row.startswith(f"| {demo.LOSSES['ghm'][0]}")
        assert ("[model.bbox_head.loss_bbox.mu=0.2] |" in row) == bool(over), row
        assert "54.8 ± 1.4" in row


def test_ghm_stats_reach_both_frameworks_commands():
    mm = demo.train_command(demo.parse_args(["--ghm-stats", "20"]), "ghm", 0, "wd")
    assert mm[mm.index("--ghm-stats") + 1] == "20"
    assert "--ghm-stats" not in demo.train_command(demo.parse_args([]), "ghm", 0, "wd")
    d2 = demo.train_command(demo.parse_args(["--framework", "detectron2", "--ghm-stats", "20"]),
                            "ghm", 0, "wd")
    assert d2[d2.index("MODEL.FOCAL_PLUGINS.GHM_STATS_PERIOD") + 1] == "20"


def test_every_row_has_configs_for_both_frameworks():
    for key, (label, mm, d2) in demo.LOSSES.items():
        assert os.path.isfile(os.path.join(ROOT, mm)), mm
        assert os.path.isfile(os.path.join(ROOT, d2)), d2



def test_default_iterations_are_the_configs_own():
    """The demo's default --iters per framework is what its configs train for alone, so
    `tools/train.py` / `tools/train_net.py` on a demo config reproduce a demo run."""
    from mmengine.config import Config
    import yaml

    mm = Config.fromfile(os.path.join(ROOT, "configs/demo/_base_/retinanet_r18_synthetic.py"))
    assert mm.train_cfg.max_iters == demo.DEFAULT_ITERS["mmdet"]
    with open(os.path.join(ROOT, "configs/demo/_base_/d2_retinanet_r18_synthetic.yaml")) as f:
        d2 = yaml.safe_load(f)
    assert d2["SOLVER"]["MAX_ITER"] == demo.DEFAULT_ITERS["detectron2"]
    for fw in ("mmdet", "detectron2"):
        args = demo.parse_args(["--framework", fw])
        assert args.iters == demo.DEFAULT_ITERS[fw]
        cmd = demo.train_command(args, "bce", 0, "wd")
        flag = "--max-iters" if fw == "mmdet" else "--max-iter"
        assert cmd[cmd.index(flag) + 1] == str(demo.DEFAULT_ITERS[fw])
    assert demo.parse_args(["--iters", "7"]).iters == 7

def _tiny(tmp_path, *extra):
    wd = tmp_path / "work"
    cmd = [sys.executable, os.path.join(ROOT, "tools", "demo.py"), "--iters", "2",
           "--num-train", "8", "--num-val", "4", "--data-dir", str(tmp_path / "data"),
           "--work-dir", str(wd), *extra]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out, wd


@pytest.mark.slow
def test_demo_mmdet_two_seeds_end_to_end(tmp_path):
    pytest.importorskip("mmdet")
    out, wd = _tiny(tmp_path, "--losses", "sigmoid_focal,ghm", "--seeds", "2", "--jobs", "2")
    assert "| loss | AP | AP50 | AP75 | AP_rare |" in out.stdout
    assert "Iter(train)" in out.stdout and "eta:" in out.stdout  # progress was visible
    res_dir = wd / "mmdet"
    for name in ("results.md", "results.json", "losses.png", "ap.png"):
        assert (res_dir / name).is_file() and (res_dir / name).stat().st_size > 0, name
    res = json.loads((res_dir / "results.json").read_text())
    assert res["seeds"] == [0, 1] and set(res["results"]) == {"sigmoid_focal", "ghm"}
    assert len(res["rare_classes"]) == 3
    for key, r in res["results"].items():
        runs = r["runs"]
        assert [x["seed"] for x in runs] == [0, 1]
        for x in runs:
            assert 0.0 <= x["AP"] <= 100.0 and x["curve"]
        # the summary is the mean and sample std of the runs
        for m in demo.METRICS:
            mean, std = demo.mean_std([x[m] for x in runs])
            assert r["summary"][m][0] == pytest.approx(mean, nan_ok=True)
            assert r["summary"][m][1] == pytest.approx(std, nan_ok=True)
        # the training seed reached the training: other initial weights, another first loss
        assert runs[0]["curve"][0][1] != runs[1]["curve"][0][1], key
    md = (res_dir / "results.md").read_text()
    assert "±" in md and "Every run:" in md and md.count("| ghm |") == 2
    # a demo checkpoint feeds the density figure
    ckpt = res_dir / "ghm" / "seed0" / "iter_2.pth"
    cmd = [sys.executable, "-m", "focal_plugins.tools.plot_grad_density",
           "--run", "GHM", os.path.join(ROOT, demo.LOSSES["ghm"][1]),
           str(ckpt), "--data-root", str(tmp_path / "data"), "--num-images", "4",
           "--out", str(tmp_path / "gd.png")]
    out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert (tmp_path / "gd.png").stat().st_size > 1000
    # and the GHM-R mu tool, on the targets and on that model's residuals
    for extra in ([], ["--checkpoint", str(ckpt)]):
        cmd = [sys.executable, "-m", "focal_plugins.tools.ghmr_mu",
               os.path.join(ROOT, demo.LOSSES["ghm"][1]), "--data-root", str(tmp_path / "data"),
               "--num-images", "4", "--mu", "0.02", "0.1", *extra]
        out = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
        word = "residual" if extra else "target"
        assert f"positive box coordinates; {word}" in out.stdout
        assert out.stdout.count("in GHM-R's last bin") == 2 and "suggested mu" in out.stdout


@pytest.mark.slow
def test_demo_detectron2_end_to_end(tmp_path):
    pytest.importorskip("detectron2")
    out, wd = _tiny(tmp_path, "--framework", "detectron2", "--losses", "softmax_focal",
                    "--seeds", "1")
    assert "| loss | AP | AP50 | AP75 | AP_rare |" in out.stdout
    res = json.loads((wd / "detectron2" / "results.json").read_text())
    assert res["framework"] == "detectron2" and set(res["results"]) == {"softmax_focal"}
    (run,) = res["results"]["softmax_focal"]["runs"]
    assert run["seed"] == 0 and run["curve"]
    assert (wd / "detectron2" / "losses.png").is_file()
    assert (wd / "detectron2" / "ap.png").is_file()
