"""Let torch's ``weights_only`` loader read the checkpoints mmengine's Runner writes.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10 calls
``torch.load`` without saying otherwise, so mmdet's stock ``tools/test.py`` and
``tools/train.py --resume`` refuse a checkpoint of this package's configs: besides the
tensors it holds the run's ``message_hub`` (mmengine ``HistoryBuffer`` objects over numpy
arrays and numpy scalars). :func:`allow_mmengine_checkpoints`, called when
``focal_plugins.mmdet`` is imported (by a config's ``custom_imports``, before any checkpoint
loads), allowlists exactly what such checkpoints hold and nothing broader:

* ``mmengine.logging.history_buffer.HistoryBuffer``;
* numpy's ``ndarray``, ``dtype``, ``_reconstruct`` (how an array pickles) and ``scalar`` (how
  a numpy scalar pickles), under numpy 2's and numpy 1's module names;
* the dtype classes of the dtypes a log holds: bool, int32, int64, float32, float64;
* in place of the builtin ``getattr``: a function that only returns HistoryBuffer's own
  statistics methods (``HistoryBuffer.min``, ``max``, ``current``, ``mean``), which a
  HistoryBuffer pickles by name; any other attribute is refused.
"""
import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

__all__ = ["allow_mmengine_checkpoints", "SAFE_GLOBALS"]

_STATISTICS = ("min", "max", "current", "mean")
_DTYPES = (np.bool_, np.int32, np.int64, np.float32, np.float64)


def history_buffer_method(obj, name):
    """``getattr`` restricted to ``HistoryBuffer``'s statistics methods."""
    if obj is HistoryBuffer and name in _STATISTICS:
        return getattr(obj, name)
    raise torch.serialization.pickle.UnpicklingError(
        f"focal_plugins.mmdet: a weights_only checkpoint may only look up HistoryBuffer's "
        f"statistics methods {list(_STATISTICS)}, got getattr({obj!r}, {name!r})")


def _numpy_globals():
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    out = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        fn = getattr(multiarray, name)
        out += [(fn, f"numpy._core.multiarray.{name}"), (fn, f"numpy.core.multiarray.{name}")]
    out += [type(np.dtype(t)) for t in _DTYPES]
    return out


SAFE_GLOBALS = [HistoryBuffer, *_numpy_globals(),
                (history_buffer_method, "builtins.getattr")]


def allow_mmengine_checkpoints() -> None:
    """Add :data:`SAFE_GLOBALS` to torch's ``weights_only`` allowlist; idempotent."""
    torch.serialization.add_safe_globals(SAFE_GLOBALS)
