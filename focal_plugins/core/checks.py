"""Input checks shared by the losses: the one validation layer of every public entry
(functions, modules, the mmdet and detectron2 adapters).

Shape, dtype and argument checks are plain Python and cost nothing. Checks on tensor
*values* run eagerly on the CPU (raising ValueError with the offending value) and as an
asynchronous device-side assert elsewhere, so they never add a host synchronisation.

Settings (gamma, alpha, mu, bins, loss_weight, ...) accept Python numbers, numpy scalars
and 0-d tensors (configs compute them); a 0-d tensor is read with ``.item()``, a host sync
for a device tensor, so pass numbers in a training loop. Bools are refused where a number
is expected, and anything but a bool where a flag is expected (``use_sigmoid='False'``).
Numbers must be finite unless a check says otherwise.
"""
import numbers
from typing import Callable

import torch
from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")

DEVICE_ASSERTS_ON_CPU = False   # tests: check CPU values as on a GPU, to trace for syncs


def check_choice(name: str, value, choices) -> None:
    """``value`` must equal one of ``choices`` and have its type (so 1 is not True and a
    tensor is not compared elementwise)."""
    for c in choices:
        if type(value) is type(c) and value == c:
            return
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _np_bool(value) -> bool:
    return type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool")


def _scalar(name: str, value, integer: bool):
    """A Python int/float from a number, numpy scalar or 0-d tensor; ValueError otherwise."""
    if isinstance(value, Tensor):
        if value.dim() != 0 or value.dtype == torch.bool or value.is_complex():
            raise ValueError(f"{name} must be a number or a 0-d tensor, got a tensor of shape "
                             f"{tuple(value.shape)} dtype {value.dtype}")
        if value.requires_grad:
            raise ValueError(f"{name} is a setting, not differentiable: got a tensor that "
                             f"requires grad ({value!r})")
        if integer and value.is_floating_point():
            raise ValueError(f"{name} must be an int, got {value!r}")
        return value.item()
    if isinstance(value, bool) or _np_bool(value):
        raise ValueError(f"{name} must be {'an int' if integer else 'a number'}, "
                         f"not a bool, got {value!r}")
    if integer:
        if not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be an int, got {value!r}")
        return int(value)
    if not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    return float(value)


def is_scalar(value) -> bool:
    """A number-like setting: Python/numpy real (not bool) or a 0-d non-bool tensor."""
    if isinstance(value, Tensor):
        return value.dim() == 0 and value.dtype != torch.bool
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and not _np_bool(value)


def check_number(name: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False,
                 finite: bool = True) -> float:
    """Check a number (Python, numpy or 0-d tensor) against [lo, hi] (ends open where asked)
    and, with ``finite``, refuse inf; NaN is always refused. Returns it as a float."""
    v = float(_scalar(name, value, integer=False))
    bad = v != v or (finite and v in (float("inf"), float("-inf")))
    if lo is not None:
        bad |= v <= lo if lo_open else v < lo
    if hi is not None:
        bad |= v >= hi if hi_open else v > hi
    if bad:
        lb = "(" if lo_open else "["
        rb = ")" if hi_open else "]"
        rng = f"{lb}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{rb}"
        what = ("a finite number" + ("" if lo is None and hi is None else f" in {rng}")
                if finite else f"in {rng}")
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return v


def check_int(name: str, value, *, lo=None, allow_none: bool = False):
    """An int (Python, numpy or 0-d integer tensor; not a bool, not a float), >= lo."""
    if value is None and allow_none:
        return None
    v = _scalar(name, value, integer=True)
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
    return v


def check_bool(name: str, value) -> bool:
    """A flag: True or False (numpy bools too); strings such as 'False' are refused."""
    if isinstance(value, bool) or _np_bool(value):
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")


def check_avg_factor(avg_factor):
    """None, a number >= 0, or a one-element tensor holding one (returned as a 0-d tensor;
    its value is checked without a host sync on devices). 0 is allowed, as in mmdet: the
    mean is then sum / eps (eps = fp32 machine epsilon), which is 0 for an all-zero loss."""
    if avg_factor is None:
        return None
    if isinstance(avg_factor, Tensor):
        if avg_factor.numel() != 1 or avg_factor.dtype == torch.bool or avg_factor.is_complex():
            raise ValueError(f"avg_factor must be a number or a one-element tensor, got a "
                             f"tensor of shape {tuple(avg_factor.shape)} dtype {avg_factor.dtype}")
        a = avg_factor.reshape(())
        ok = (a >= 0) & torch.isfinite(a)
        check_values(ok, "avg_factor", lambda: f"avg_factor must be a finite number >= 0, "
                                               f"got {a.item()!r}")
        return a
    return check_number("avg_factor", avg_factor, lo=0.0)


def check_floating(name: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")


def check_weight(name: str, w, shape=None) -> None:
    """A weight is a real tensor (floating, integer or bool as 0/1); with ``shape``, it must
    broadcast to exactly that shape (ValueError naming the argument and both shapes)."""
    if not isinstance(w, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if w.is_complex():
        raise ValueError(f"{name} must be a real-valued tensor, got dtype {w.dtype}")
    if shape is None:
        return
    try:
        ok = torch.broadcast_shapes(w.shape, shape) == torch.Size(shape)
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must broadcast to the loss shape {tuple(shape)}, got shape "
                         f"{tuple(w.shape)}")


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


def check_range(values: Tensor, lo, hi, name: str, message: Callable[[], str]) -> None:
    """Require lo <= values <= hi (NaN fails). CPU: ValueError(message()) from the two
    extremes (3 ops, no mask); elsewhere as ``check_values``."""
    if values.numel() == 0 or values.device.type == "meta":
        return
    lo_v, hi_v = torch.aminmax(values)
    if (values.device.type == "cpu" and not DEVICE_ASSERTS_ON_CPU
            and not torch.compiler.is_compiling()):
        a, b = lo_v.item(), hi_v.item()
        if not (a >= lo and b <= hi):
            raise ValueError(message())
    else:
        torch._assert_async((lo_v >= lo) & (hi_v <= hi), f"focal_plugins: invalid values in {name}")


def first_bad(values: Tensor, ok: Tensor):
    """The first offending value (as a Python number) for an error message; CPU only."""
    return values[~ok].flatten()[0].item()
