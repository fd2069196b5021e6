"""Collective faults of the GHM losses as named errors in bounded time (two CPU processes,
gloo), and the cross-rank GHM state check (focal_plugins.core.collective)."""
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from focal_plugins import GHMC
from focal_plugins.core import collective

from ._collective_worker import run

RULE = "every rank must call each GHM loss every iteration, in the same order"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(tmp_path, scenario, timeout=3.0, deadline=90.0):
    """Runs the scenario on 2 ranks; returns (exit codes, what each rank saved, seconds).
    Processes still alive at the deadline are killed: the test then fails on their code."""
    ctx = mp.get_context("spawn")
    port = _free_port()
    procs = [ctx.Process(target=run, args=(r, 2, port, str(tmp_path), scenario, timeout))
             for r in range(2)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    for p in procs:
        p.join(max(0.0, deadline - (time.monotonic() - t0)))
    took = time.monotonic() - t0
    codes = []
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
            codes.append("hung")
        else:
            codes.append(p.exitcode)
    outs = [torch.load(tmp_path / f"rank{r}.pt") if (tmp_path / f"rank{r}.pt").exists()
            else None for r in range(2)]
    return codes, outs, took


def test_settings_and_timeout_arguments_are_checked(monkeypatch):
    for bad in (0, -1.0, "3", True):
        with pytest.raises(ValueError, match="seconds"):
            collective.set_timeout(bad)
    with pytest.raises(ValueError, match="which"):
        collective.set_checks("sometimes")
    monkeypatch.setenv(collective.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match=collective.TIMEOUT_ENV):
        collective.get_timeout()
    monkeypatch.setenv(collective.TIMEOUT_ENV, "7.5")
    assert collective.get_timeout() == 7.5
    collective.set_timeout(2)
    try:
        assert collective.get_timeout() == 2.0
    finally:
        collective.set_timeout(None)
    with pytest.raises(ValueError, match="on_mismatch"):
        collective.check_state(torch.nn.Linear(1, 1), on_mismatch="ignore")
    s = collective.settings(GHMC(bins=7, momentum=0.5))
    assert s["type"] == "GHMC" and s["bins"] == 7 and s["momentum"] == 0.5 and "impl" not in s


def test_one_process_checks_nothing():
    m = GHMC(bins=5, momentum=0.5)
    m(torch.randn(4, 3), torch.randint(0, 4, (4,)))
    assert collective.check_state(torch.nn.ModuleDict({"m": m})) is None
    world, names, diffs = collective.state_differences(torch.nn.ModuleDict({"m": m}))
    assert (world, names, diffs) == (1, ["m.acc_sum", "m.edges"], [])


@pytest.mark.slow
def test_mismatched_calls_and_state_are_named_errors(tmp_path):
    codes, outs, took = _spawn(tmp_path, "healthy")
    assert codes == [0, 0], (codes, outs)
    for rank, out in enumerate(outs):
        assert "crash" not in out, out["crash"]
        for key in ("bins", "ema", "cls1" if rank == 0 else "bbox1", "state_differs"):
            assert isinstance(out.get(key), dict), (rank, key, out.get(key))
        assert out["bins"]["type"] == "GHMCollectiveError"
        assert "GHM settings differ across ranks" in out["bins"]["msg"]
        assert "bins: rank 0 = 10, rank 1 = 20" in out["bins"]["msg"] and RULE in out["bins"]["msg"]
        msg = out["ema"]["msg"]
        assert "momentum: rank 0 = 0.7, rank 1 = 0.75" in msg
        assert "ema: rank 0 = 'nonempty', rank 1 = 'all'" in msg and "bins" not in msg.split(";")[0]
        # the first iteration was fine; in the second rank 1 skipped loss_cls
        assert out["cls0"] is None and out["bbox0"] is None
        key = "cls1" if rank == 0 else "bbox1"
        msg = out[key]["msg"]
        assert out[key]["type"] == "GHMCollectiveError" and "different GHM calls" in msg
        assert "rank 0 is at distributed call #2 of bbox_head.loss_cls (GHMC(bins=30" in msg
        assert "rank 1 is at distributed call #2 of bbox_head.loss_bbox (GHMR(" in msg
        assert RULE in msg
        assert out["model_settings"]["type"] == "GHMCollectiveError"
        assert out["model_settings"]["msg"].startswith(
            "GHM settings differ across ranks: box.mu: rank 0 = 0.02, rank 1 = 0.1; " + RULE)
        assert out["model_settings_same"] is None
        # the state check
        assert out["state_equal"] == ("GHM state equal across 2 ranks "
                                      "(a.acc_sum, a.edges, b.edges)")
        assert out["state_differs"]["type"] == "GHMStateMismatchError"
        assert out["state_differs"]["msg"] == (
            "GHM state differs across 2 ranks: a.acc_sum: rank(s) 1 differ from rank 0 "
            "(max |difference| 1.5)")
        assert out["state_warn"] == out["state_differs"]["msg"]
        assert out["state_warn_warnings"] == [out["state_warn"]]
    torch.testing.assert_close(outs[1]["acc_sum"][2], outs[0]["acc_sum"][2] + 1.5)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["skip:auto:2", "skip:reference:2", "skip:auto:1"])
def test_a_skipped_call_is_a_named_error_in_bounded_time(tmp_path, scenario):
    """Rank 1 skips a GHM call and waits in a gradient all-reduce (DDP's backward); before,
    gloo paired the two all-reduces and aborted a process (SIGABRT). Now rank 0 names the
    loss after the check timeout (3 s), exits, and rank 1's all-reduce fails on the closed
    connection: both end with an error, none killed by a signal, none hangs. ``:1``: the
    very first GHM call (the check group is set up there), ``auto``: the CPU fast path,
    whose all-reduce runs inside an autograd.Function. (A worker that saw an error leaves
    with os._exit: after a failed gloo collective torch's destructors often abort at
    interpreter exit, without focal_plugins too.)"""
    codes, outs, took = _spawn(tmp_path, scenario)
    assert codes == [0, 0], (codes, outs)  # the workers save what they saw and return
    assert all("crash" not in o for o in outs), outs
    err = outs[0]["error"]
    assert err["type"] == "GHMCollectiveError", err
    assert "GHM loss GHMC(bins=10, momentum=0.75" in err["msg"]
    assert f"distributed call #{scenario[-1]} on rank 0" in err["msg"]
    assert "not every rank" in err["msg"] and "within 3 s" in err["msg"] and RULE in err["msg"]
    assert outs[1]["error"]["type"] in ("RuntimeError", "DistBackendError"), outs[1]
    assert took < 60, took
