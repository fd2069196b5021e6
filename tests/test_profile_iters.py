"""tools/profile_iters.py (the GPU profile of tools/gpu_checks.sh), smoke-run on the CPU."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools"))
import profile_iters  # noqa: E402


@pytest.mark.slow
def test_profiles_the_plugin_and_mmdet_ghm_side_by_side(tmp_path):
    rows = profile_iters.main(["--out", str(tmp_path), "--device", "cpu", "--size", "64x96",
                               "--warmup", "1", "--iters", "1", "--profile-iters", "1",
                               "--variants", "plugin_ghm,mmdet_ghm", "--clip", "off"])
    assert [r["variant"] for r in rows] == ["plugin_ghm", "mmdet_ghm"]
    assert rows[0]["loss_cls"] == "focal_plugins.mmdet.losses.GHMC"
    assert rows[1]["loss_cls"] == "mmdet.models.losses.ghm_loss.GHMC"
    for r in rows:
        assert r["iter_ms"] > 0 and r["loss_host_ms"] > 0 and r["loss_ops"] > 0
        assert r["busy_ms"] is None and r["idle_ms"] is None     # no GPU columns on the CPU
    # mmdet's GHM loops over the bins with a host sync per bin; the plugin's does not
    assert rows[1]["loss_syncs"] > rows[0]["loss_syncs"]
    text = open(tmp_path / "profile.md").read()
    assert "| plugin_ghm | off |" in text and "| mmdet_ghm | off |" in text
    for tag in ("plugin_ghm_noclip", "mmdet_ghm_noclip"):
        assert (tmp_path / f"{tag}.json").stat().st_size > 0
        assert "Self CPU" in open(tmp_path / f"{tag}.txt").read()


@pytest.mark.parametrize("argv,word", [
    (["--variants", "focal_l2"], "--variants"), (["--size", "800"], "--size"),
    (["--size", "16x16"], "--size"), (["--iters", "0"], "--iters"),
    (["--warmup", "-1"], "--warmup")])
def test_bad_arguments_are_refused(tmp_path, capsys, argv, word):
    with pytest.raises(SystemExit):
        profile_iters.parse_args(["--out", str(tmp_path), "--device", "cpu"] + argv)
    assert word in capsys.readouterr().err


def test_gpu_idle_is_the_span_minus_the_union_of_kernels():
    assert profile_iters._union([(0, 2), (1, 3), (5, 6)]) == 4
    assert profile_iters._union([(4, 5), (0, 10)]) == 10
    assert profile_iters._union([]) == 0
