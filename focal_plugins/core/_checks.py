"""Input checks shared by the losses.

Shape, dtype and argument checks are plain Python and cost nothing. Checks on tensor
*values* run eagerly on the CPU (raising ValueError with the offending value) and as an
asynchronous device-side assert elsewhere, so they never add a host synchronisation.
"""
from typing import Callable

import torch
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")

DEVICE_ASSERTS_ON_CPU = False   # tests: check CPU values as on a GPU, to trace for syncs


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def check_number(name: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False) -> float:
    """Check a Python number against [lo, hi] (ends open where asked); return it as float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    v = float(value)
    bad = v != v  # NaN
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        rng = f"{lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{rb}"
        raise ValueError(f"{name} must lie in {rng}, got {value!r}")
    return v


def check_floating(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")


def compute_dtype(t: Tensor) -> torch.dtype:
    """fp16/bf16 are computed in fp32; fp32 and fp64 as they are."""
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def check_values(ok: Tensor, name: str, message: Callable[[], str]) -> None:
    """Require ``ok`` (bool tensor) to be all True; ``name`` is the argument checked.

    CPU: ValueError(message()) right away. Other devices (and under torch.compile): an
    asynchronous device assert, which fails later with the message but without a sync.
    """
    if ok.numel() == 0 or ok.device.type == "meta":
        return
    if (ok.device.type == "cpu" and not DEVICE_ASSERTS_ON_CPU
            and not torch.compiler.is_compiling()):
        if not bool(ok.all()):
            raise ValueError(message())
    else:
        torch._assert_async(ok.all(), f"focal_plugins: invalid values in {name}")


def first_bad(values: Tensor, ok: Tensor):
    """The first offending value (as a Python number) for an error message; CPU only."""
    return values[~ok].flatten()[0].item()
