"""Collective checks for the GHM losses' distributed bin counting (framework-free).

In a multi-process run every GHM-C / GHM-R call all-reduces its bin counts
(``density.GHMBase.bin_weights``), so the ranks must make the same GHM calls, in the same order, with the same settings: a rank
whose call is matched with another rank's different collective either crashes the process
(gloo aborts on a size mismatch: ``bins=10`` on one rank, 20 on another), waits for the
process group's timeout, or silently sums unrelated numbers. This module turns those faults
into named errors in bounded time, and compares the GHM state across ranks:

* :func:`check_call` runs before each distributed GHM all-reduce. Every rank contributes a
  header of three integers, all-gathered over a separate gloo group of this module (so it
  never pairs with another collective of the default group, e.g. DDP's gradient buckets):

      (k, c, s) = (which GHM module this is, in the order of first calls on the rank;
                   how many distributed calls the module made before this one;
                   a checksum of its settings: type, bins, momentum, ema, mu, ...)

  Equal headers on all ranks -> the all-reduce of the counts follows. Otherwise every rank
  gathers the ranks' descriptions and raises :class:`GHMCollectiveError` naming the settings
  that differ (``bins: rank 0 = 10, rank 1 = 20``) or the calls each rank is making. A rank
  that does not reach the call within the timeout (it skipped it and waits elsewhere) gives
  the same error, naming the loss, on the ranks that made it; the ranks exit, so the one that
  skipped fails too (gloo: "connection closed") instead of hanging.
* :func:`check_settings` compares the settings of every GHM module of a model across ranks
  before training, where a framework's own start-up collectives would otherwise pair
  buffers of different sizes first (mmengine broadcasts the initial weights: gloo aborts).
* :func:`check_state` compares the buffers of every GHM module of a model (``acc_sum``,
  ``edges``) across ranks, exactly, and returns ``"GHM state equal across N ranks ..."`` or
  raises :class:`GHMStateMismatchError` naming each buffer and the ranks that differ (with
  ``on_mismatch="warn"``: warns and returns the message). The train fronts call it at each
  checkpoint and at the end of training (``focal_plugins.mmdet.dist_hooks``,
  ``focal_plugins.detectron2.dist_hooks``).

Which calls are checked: every distributed call (default), or with ``set_checks("first")``
or ``FOCAL_PLUGINS_DIST_CHECKS=first`` only each module's first one (the settings; a call
skipped later is then not caught). Timeout of the checks: :func:`set_timeout` or the
environment variable ``FOCAL_PLUGINS_DIST_TIMEOUT`` (seconds), read when the check group is
created (at the first check after ``init_process_group``); default torch's
``default_pg_timeout`` (30 min). :func:`name_modules` gives the GHM modules of a model the
names errors use (``bbox_head.loss_cls``); unnamed modules are described by their settings.

Cost: one all-gather of 3 int64 per distributed GHM call, on the CPU (no device
synchronisation); nothing at all when torch.distributed is not initialised or world == 1.
"""
from __future__ import annotations

import atexit
import os
import warnings
import weakref
import zlib
from datetime import timedelta
from typing import Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["GHMCollectiveError", "GHMStateMismatchError", "check_call", "check_settings",
           "check_state", "state_differences", "state_report", "name_modules",
           "set_timeout", "get_timeout", "set_checks", "settings", "TIMEOUT_ENV",
           "CHECKS_ENV"]

TIMEOUT_ENV = "FOCAL_PLUGINS_DIST_TIMEOUT"
CHECKS_ENV = "FOCAL_PLUGINS_DIST_CHECKS"
# the settings that must be equal on every rank (impl, the implementation, may differ:
# it changes how, not what is computed)
SETTINGS = ("bins", "momentum", "ema", "use_sigmoid", "mu", "ignore_index", "loss_weight",
            "reduction")
RULE = ("every rank must call each GHM loss every iteration, in the same order, with the "
        "same settings (a rank that skips a call, e.g. on a batch without objects, or builds "
        "a loss with other settings, desynchronises the all-reduce of the bin counts)")


class GHMCollectiveError(RuntimeError):
    """The ranks' GHM calls do not match (settings, order, a skipped call, a timeout)."""


class GHMStateMismatchError(RuntimeError):
    """The GHM buffers of the ranks differ."""


_timeout: Optional[float] = None
_checks: Optional[str] = None
_names: "weakref.WeakKeyDictionary[nn.Module, str]" = weakref.WeakKeyDictionary()


def set_timeout(seconds: Optional[float]) -> None:
    """Timeout of the collective checks in seconds (None: the environment variable
    ``FOCAL_PLUGINS_DIST_TIMEOUT``, else torch's default). Takes effect for check groups
    created afterwards, i.e. call it before the first distributed GHM call."""
    global _timeout
    if seconds is not None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
                or not seconds > 0:
            raise ValueError(f"seconds must be a number > 0 or None, got {seconds!r}")
        seconds = float(seconds)
    _timeout = seconds


def set_checks(which: Optional[str]) -> None:
    """``"every"`` distributed GHM call is checked (the default), or only each module's
    ``"first"`` (its settings); None: the environment variable ``FOCAL_PLUGINS_DIST_CHECKS``
    (``every`` or ``first``), else ``"every"``."""
    global _checks
    if which not in (None, "every", "first"):
        raise ValueError(f"which must be 'every', 'first' or None, got {which!r}")
    _checks = which


def _which_checks() -> str:
    if _checks is not None:
        return _checks
    env = os.environ.get(CHECKS_ENV) or "every"
    if env not in ("every", "first"):
        raise ValueError(f"{CHECKS_ENV} must be 'every' or 'first', got {env!r}")
    return env


def get_timeout() -> float:
    """The timeout of the collective checks in seconds (see :func:`set_timeout`)."""
    if _timeout is not None:
        return _timeout
    env = os.environ.get(TIMEOUT_ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            value = float("nan")
        if not value > 0:
            raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {env!r}")
        return value
    return dist.default_pg_timeout.total_seconds()


def name_modules(model: nn.Module, prefix: str = "") -> None:
    """Remember the ``named_modules`` names of the GHM modules of ``model`` for messages."""
    for name, m in _ghm_modules(model):
        _names[m] = prefix + name


def settings(module: nn.Module) -> Dict[str, object]:
    """The settings of a GHM module that must be equal on every rank (type first)."""
    out: Dict[str, object] = {"type": type(module).__name__}
    for k in SETTINGS:
        if hasattr(module, k):
            out[k] = getattr(module, k)
    return out


def _describe(module: nn.Module) -> str:
    s = settings(module)
    args = ", ".join(f"{k}={v!r}" for k, v in s.items() if k != "type")
    name = _names.get(module)
    return f"{name} ({s['type']}({args}))" if name else f"{s['type']}({args})"


def _checksum(s: Dict[str, object]) -> int:
    return zlib.crc32(repr(sorted(s.items())).encode())


def _ghm_modules(model: nn.Module):
    from .density import GHMBase  # lazily: density imports this module

    return [(n, m) for n, m in model.named_modules() if isinstance(m, GHMBase)]


class _State:
    """The check group and the call counters of one default process group."""

    def __init__(self, world_group):
        self.world_group = world_group
        self.group = None
        self.timeout = None
        self.order: "weakref.WeakKeyDictionary[nn.Module, int]" = weakref.WeakKeyDictionary()
        self.calls: "weakref.WeakKeyDictionary[nn.Module, int]" = weakref.WeakKeyDictionary()
        self.next = 0


_state: Optional[_State] = None


@atexit.register
def _release() -> None:
    """Drop the check group before the interpreter tears down: a gloo group object that
    outlives its destroyed process group until then can abort the exiting process."""
    global _state
    _state = None


def _current() -> _State:
    global _state
    world = dist.group.WORLD
    if _state is None or _state.world_group is not world:  # a new init_process_group
        _state = _State(world)
    return _state


def _group(st: _State, what: str):
    """The gloo group of the checks, created at first use (every rank must create it)."""
    if st.group is None:
        st.timeout = get_timeout()
        try:
            st.group = dist.new_group(backend="gloo", timeout=timedelta(seconds=st.timeout))
        except RuntimeError as e:
            raise GHMCollectiveError(
                f"{what}: not every rank took part within {st.timeout:g} s in setting up the "
                f"GHM check group, which every rank does at its first distributed GHM call "
                f"({str(e).splitlines()[0][:200]}); {RULE}") from e
    return st.group


def check_call(module: nn.Module) -> None:
    """Before a distributed GHM all-reduce: check that every rank makes the same call of
    the same loss with the same settings (module doc); raise :class:`GHMCollectiveError`
    otherwise. Collective: every rank of the default group must call it."""
    st = _current()
    if module not in st.order:
        st.order[module] = st.next
        st.next += 1
    k, c = st.order[module], st.calls.get(module, 0)
    st.calls[module] = c + 1
    if c > 0 and _which_checks() == "first":
        return
    s = settings(module)
    rank, world = dist.get_rank(), dist.get_world_size()
    what = f"GHM loss {_describe(module)}, distributed call #{c + 1} on rank {rank}"
    group = _group(st, what)
    header = torch.tensor([k, c, _checksum(s)], dtype=torch.int64)
    got = [torch.empty_like(header) for _ in range(world)]
    try:
        dist.all_gather(got, header, group=group)
    except RuntimeError as e:
        raise GHMCollectiveError(
            f"{what}: not every rank made this call within {st.timeout:g} s, or a rank "
            f"stopped ({str(e).splitlines()[0][:300]}); {RULE}") from e
    if all(torch.equal(g, header) for g in got):
        return
    # the ranks disagree, and all of them know it: gather what each one is calling
    mine = dict(rank=rank, k=k, c=c, settings=s, name=_names.get(module), what=_describe(module))
    descs: List[dict] = [None] * world  # type: ignore[list-item]
    dist.all_gather_object(descs, mine, group=group)
    raise GHMCollectiveError(_mismatch_message(descs))


def _mismatch_message(descs: List[dict]) -> str:
    first = descs[0]
    same_call = all(d["k"] == first["k"] and d["c"] == first["c"] for d in descs)
    same_type = all(d["settings"]["type"] == first["settings"]["type"] for d in descs)
    if same_call and same_type:
        keys = [k for k in first["settings"]
                if any(d["settings"].get(k) != first["settings"].get(k) for d in descs)]
        keys += [k for d in descs for k in d["settings"] if k not in first["settings"]
                 and k not in keys]
        named = first["name"] or "the same GHM loss"
        diff = "; ".join(k + ": " + ", ".join(f"rank {d['rank']} = {d['settings'].get(k)!r}"
                                              for d in descs) for k in keys)
        return (f"GHM settings differ across ranks for {named} (distributed call "
                f"#{first['c'] + 1}, the first one compares them): {diff}; {RULE}")
    calls = "; ".join(f"rank {d['rank']} is at distributed call #{d['c'] + 1} of "
                      f"{d['what']} (the GHM loss it called #{d['k'] + 1})" for d in descs)
    return f"the ranks are making different GHM calls: {calls}; {RULE}"


def check_settings(model: nn.Module) -> None:
    """Compare the settings of every GHM module of ``model`` across ranks before training
    (a framework's own start-up collectives, e.g. mmengine's broadcast of the initial
    weights, would pair buffers of different sizes first: gloo aborts). Raises
    :class:`GHMCollectiveError` naming each module and setting that differ, with every
    rank's value. Collective: every rank must call it at the same point; nothing with one
    process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    name_modules(model)
    mine = [(n, settings(m)) for n, m in _ghm_modules(model)]
    st = _current()
    world = dist.get_world_size()
    group = _group(st, "the GHM settings check")
    got: List[list] = [None] * world  # type: ignore[list-item]
    try:
        dist.all_gather_object(got, mine, group=group)
    except RuntimeError as e:
        raise GHMCollectiveError(
            f"the GHM settings check: not every rank took part within {st.timeout:g} s "
            f"({str(e).splitlines()[0][:300]}); {RULE}") from e
    per_rank = [dict(g) for g in got]
    names = list(dict.fromkeys(n for g in got for n, _ in g))
    problems = []
    for n in names:
        missing = [r for r in range(world) if n not in per_rank[r]]
        if missing:
            problems.append(f"{n or 'the model'}: no GHM loss there on rank(s) "
                            f"{', '.join(map(str, missing))}")
            continue
        keys = list(dict.fromkeys(k for r in range(world) for k in per_rank[r][n]))
        for k in keys:
            vals = [per_rank[r][n].get(k) for r in range(world)]
            if any(v != vals[0] for v in vals):
                problems.append(f"{n}.{k}: " + ", ".join(f"rank {r} = {v!r}"
                                                        for r, v in enumerate(vals)))
    if problems:
        raise GHMCollectiveError("GHM settings differ across ranks: " + "; ".join(problems)
                                 + f"; {RULE}")


# ------------------------------------------------------------------------- state checks
def _buffers(model: nn.Module) -> Dict[str, torch.Tensor]:
    out = {}
    for name, m in _ghm_modules(model):
        for b, t in m.named_buffers(recurse=False):
            if t is not None:
                out[f"{name}.{b}" if name else b] = t.detach().to("cpu", copy=True)
    return out


def state_differences(model: nn.Module):
    """All-gather the GHM buffers of ``model`` (every GHM module's ``named_buffers``) and
    compare them exactly with rank 0's. Returns ``(world, names, differences)``, each
    difference a string naming the buffer and the ranks that differ. Collective over all
    ranks (world 1, or torch.distributed not initialised: nothing to compare)."""
    mine = _buffers(model)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return 1, sorted(mine), []
    st = _current()
    world = dist.get_world_size()
    group = _group(st, "the GHM state check")
    got: List[Dict[str, torch.Tensor]] = [None] * world  # type: ignore[list-item]
    try:
        dist.all_gather_object(got, mine, group=group)
    except RuntimeError as e:
        raise GHMStateMismatchError(
            f"the GHM state check: not every rank took part within {st.timeout:g} s "
            f"({str(e).splitlines()[0][:300]}); every rank must run it at the same point") from e
    names = sorted(set().union(*got))
    diffs = []
    for n in names:
        ref = got[0].get(n)
        missing = [r for r in range(world) if n not in got[r]]
        if missing:
            diffs.append(f"{n}: missing on rank(s) {', '.join(map(str, missing))}")
            continue
        bad = [r for r in range(1, world)
               if got[r][n].shape != ref.shape or not torch.equal(got[r][n], ref)]
        if bad:
            worst = max((got[r][n].double() - ref.double()).abs().max().item()
                        if got[r][n].shape == ref.shape else float("inf") for r in bad)
            diffs.append(f"{n}: rank(s) {', '.join(map(str, bad))} differ from rank 0 "
                         f"(max |difference| {worst:g})")
    return world, names, diffs


def state_report(model: nn.Module) -> Optional[Tuple[bool, str]]:
    """``(equal, message)`` of :func:`check_state`, without raising or warning; None when
    there is nothing to compare. Collective: every rank must call it at the same point."""
    if not _ghm_modules(model):
        return None
    world, names, diffs = state_differences(model)
    if world == 1:
        return None
    if not diffs:
        return True, f"GHM state equal across {world} ranks ({', '.join(names)})"
    return False, f"GHM state differs across {world} ranks: " + "; ".join(diffs)


def check_state(model: nn.Module, on_mismatch: str = "error") -> Optional[str]:
    """Compare the GHM buffers of ``model`` across ranks (:func:`state_differences`).

    Returns ``"GHM state equal across N ranks (...)"``, or on a difference raises
    :class:`GHMStateMismatchError` naming each buffer and the ranks that differ
    (``on_mismatch="warn"``: a ``RuntimeWarning`` and the message is returned). None when
    there is nothing to compare (one process, or a model without GHM losses).
    Collective: every rank must call it at the same point."""
    if on_mismatch not in ("error", "warn"):
        raise ValueError(f"on_mismatch must be 'error' or 'warn', got {on_mismatch!r}")
    report = state_report(model)
    if report is None:
        return None
    equal, msg = report
    if equal:
        return msg
    if on_mismatch == "error":
        raise GHMStateMismatchError(msg)
    warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return msg
