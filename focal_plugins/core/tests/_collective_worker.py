"""Worker for test_collective: one rank of a 2-process gloo group on 127.0.0.1 playing a
scenario; what each rank saw (returned values, errors, warnings) goes to rank<r>.pt."""
import datetime
import os
import traceback
import warnings

import torch
import torch.distributed as dist


def _error(e):
    return {"type": type(e).__name__, "msg": str(e)}


def _call(m, rank, n=6, C=4):
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(n, C, generator=g, requires_grad=True)
    if type(m).__name__ == "GHMC":
        m(x, torch.randint(0, C + 1, (n,), generator=g)).backward()
    else:
        m(x, torch.randn(n, C, generator=g)).backward()


def _healthy(rank, out):
    """Faults that leave the groups usable, one after another, and the state check."""
    from focal_plugins import GHMC, GHMR
    from focal_plugins.core import collective

    def attempt(key, fn):
        try:
            out[key] = fn()
        except Exception as e:  # noqa: BLE001  (the test reads what was raised)
            out[key] = _error(e)

    # settings that differ: bins (a size mismatch: gloo aborted the process before)
    attempt("bins", lambda: _call(GHMC(bins=10 if rank == 0 else 20), rank))
    # momentum and ema (before: the EMA states silently diverged)
    attempt("ema", lambda: _call(GHMR(bins=10, momentum=0.7 if rank == 0 else 0.75,
                                      ema="nonempty" if rank == 0 else "all"), rank))
    # named losses; in the second iteration rank 1 skips loss_cls and calls loss_bbox
    # (before: a 31- and an 11-element all-reduce paired, gloo aborted)
    heads = torch.nn.ModuleDict({"loss_cls": GHMC(bins=30, momentum=0.75),
                                 "loss_bbox": GHMR(bins=10, momentum=0.7)})
    collective.name_modules(heads, prefix="bbox_head.")
    attempt("cls0", lambda: _call(heads["loss_cls"], rank))
    attempt("bbox0", lambda: _call(heads["loss_bbox"], rank))
    if rank == 0:
        attempt("cls1", lambda: _call(heads["loss_cls"], rank))
    else:
        attempt("bbox1", lambda: _call(heads["loss_bbox"], rank))
    # the settings of a whole model, before training (as the train fronts' hooks do)
    built = torch.nn.ModuleDict({"cls": GHMC(bins=30, momentum=0.75),
                                 "box": GHMR(bins=10, mu=0.02 if rank == 0 else 0.1)})
    attempt("model_settings", lambda: collective.check_settings(built))
    attempt("model_settings_same", lambda: collective.check_settings(heads))
    # the state check: equal, then one buffer changed on rank 1 (error, then warning)
    model = torch.nn.ModuleDict({"a": GHMC(bins=5, momentum=0.5), "b": GHMR(bins=4)})
    for _ in range(2):
        _call(model["a"], rank, n=16)
        _call(model["b"], rank, n=16)
    attempt("state_equal", lambda: collective.check_state(model))
    if rank == 1:
        model["a"].acc_sum[2] += 1.5
    attempt("state_differs", lambda: collective.check_state(model))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        attempt("state_warn", lambda: collective.check_state(model, on_mismatch="warn"))
    out["state_warn_warnings"] = [str(x.message) for x in w]
    out["acc_sum"] = model["a"].acc_sum.clone()


def _skip(rank, out, impl, at):
    """Rank 1 skips GHM call #``at`` and goes to a gradient all-reduce, as DDP's backward
    would (before: two all-reduces of different sizes paired, gloo aborted a process)."""
    from focal_plugins import GHMC

    m = GHMC(bins=10, momentum=0.75, impl=impl)
    try:
        for it in range(at):
            if rank == 1 and it == at - 1:
                dist.all_reduce(torch.ones(100_000))
            else:
                _call(m, rank)
        out["done"] = True
    except Exception as e:  # noqa: BLE001
        out["error"] = _error(e)


def run(rank, world, port, out_dir, scenario, timeout):
    from focal_plugins.core import collective

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    collective.set_timeout(timeout)
    out = {}
    try:
        if scenario == "healthy":
            _healthy(rank, out)
        elif scenario.startswith("skip"):
            _, impl, at = scenario.split(":")
            _skip(rank, out, impl, int(at))
    except Exception:  # noqa: BLE001
        out["crash"] = traceback.format_exc()
    torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    if "error" not in out:
        dist.destroy_process_group()
    else:
        # after a failed collective gloo's destructors often abort at interpreter exit,
        # plain torch too: leave without them, as tools/train.py does
        os._exit(0)
