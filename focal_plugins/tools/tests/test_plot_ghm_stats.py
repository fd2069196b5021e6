"""focal_plugins.tools.plot_ghm_stats on synthetic logs in mmdet's and detectron2's formats."""
import json
import os

import pytest

from focal_plugins.tools import plot_ghm_stats


def _row(module, it, step_key, bins=4):
    r = {step_key: it}
    for i in range(bins):
        r[f"ghm/{module}/density_{i}"] = float(it + i)
        r[f"ghm/{module}/count_{i}"] = float(i)
        r[f"ghm/{module}/loss_share_{i}"] = 1 / bins
        r[f"ghm/{module}/grad_share_{i}"] = (i + 1) / (bins * (bins + 1) / 2)
    return r


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    return path


@pytest.mark.parametrize("step_key,name", [("step", "scalars.json"), ("iteration", "metrics.json")])
def test_reads_both_formats_and_writes_png(tmp_path, step_key, name):
    rows = [{"loss": 1.0, step_key: 10}]  # a framework's own line, no ghm keys
    for it in (20, 40, 60):
        rows += [_row(m, it, step_key) for m in ("bbox_head.loss_cls", "bbox_head.loss_bbox")]
    log = _write(tmp_path / name, rows)
    stats = plot_ghm_stats.read_log(str(log))
    assert sorted(stats) == ["bbox_head.loss_bbox", "bbox_head.loss_cls"]
    s = stats["bbox_head.loss_cls"]
    assert s["iters"] == [20, 40, 60]
    assert s["density"][1] == [40.0, 41.0, 42.0, 43.0]
    assert s["grad_share"][0] == [0.1, 0.2, 0.3, 0.4]
    # a folder: the log below it is found
    out = plot_ghm_stats.main([str(tmp_path), "--out", str(tmp_path / "g.png")])
    assert os.path.getsize(out) > 10000
    out = plot_ghm_stats.main([str(log), "--out", str(tmp_path / "one.png"),
                               "--module", "bbox_head.loss_bbox"])
    assert os.path.getsize(out) > 5000


def test_one_logged_iteration_and_errors(tmp_path):
    log = _write(tmp_path / "metrics.json", [_row("cls_loss", 19, "iteration", bins=30)])
    assert plot_ghm_stats._edges([19]) == [18.5, 19.5]
    assert plot_ghm_stats._edges([20, 40, 80]) == [10, 30, 60, 100]
    assert os.path.getsize(plot_ghm_stats.main([str(log), "--out", str(tmp_path / "a.png")])) > 5000
    with pytest.raises(SystemExit, match="no_such"):
        plot_ghm_stats.main([str(log), "--module", "no_such", "--out", str(tmp_path / "b.png")])
    plain = _write(tmp_path / "scalars.json", [{"loss": 1.0, "step": 1}])
    with pytest.raises(SystemExit, match="no ghm/ scalars"):
        plot_ghm_stats.main([str(plain), "--out", str(tmp_path / "c.png")])
    with pytest.raises(FileNotFoundError):
        plot_ghm_stats.main([str(tmp_path / "empty_dir_missing")])


def test_last_bin_table(tmp_path, capsys):
    # counts per bin 0, 1, 2, 3: the last bin holds 3/6 = 50% of the elements; grad share 0.4
    rows = [_row("bbox_head.loss_bbox", it, "step") for it in (20, 40)]
    rows[1]["ghm/bbox_head.loss_bbox/count_3"] = 9.0   # 9 / 12 = 75%
    log = _write(tmp_path / "scalars.json", rows)
    plot_ghm_stats.main([str(log), "--out", str(tmp_path / "t.png"), "--last-bin"])
    lines = capsys.readouterr().out.splitlines()
    table = [ln.split() for ln in lines if ln.strip()[:2] in ("20", "40", "me")]
    assert table == [["20", "50.000", "40.0"], ["40", "75.000", "40.0"],
                     ["mean", "62.500", "40.0"]]


def test_tail_table(tmp_path, capsys):
    rows = [_row("cls", 20, "step", bins=10)]   # counts 0..9, grad share (i+1)/55
    log = _write(tmp_path / "scalars.json", rows)
    plot_ghm_stats.main([str(log), "--out", str(tmp_path / "t.png"), "--tail", "0.5"])
    out = capsys.readouterr().out
    assert "g>=0.5 % of elements" in out
    row = [ln.split() for ln in out.splitlines() if ln.split()[:1] == ["20"]][0]
    assert row == ["20", f"{100 * 35 / 45:.3f}", f"{100 * 40 / 55:.1f}"]
    with pytest.raises(SystemExit):
        plot_ghm_stats.main([str(log), "--tail", "1.5"])
    assert "--tail" in capsys.readouterr().err
