"""Route, for one call of detectron2's own ``losses()``, the loss functions it looks up in its
module (``sigmoid_focal_loss_jit``, ``_dense_box_regression_loss``, ``cross_entropy``,
``smooth_l1_loss``, ``F.binary_cross_entropy_with_logits``) to the plugin's losses.

The adapters call ``super().losses(...)`` inside :func:`routed`, so detectron2's bodies
(matching masks, normalisers, their EMA constants, logged scalars, loss weights) run as they
are and only the loss calls change. While at least one routed call is running, the module
attribute is a dispatcher (or, for a module alias such as ``F``, a proxy of it) that sends
calls made *by this thread inside the block* to the route and every other call to the
original; when the last block ends the original object is put back.
"""
import threading
from contextlib import contextmanager
from typing import Callable, Dict

__all__ = ["routed"]

_local = threading.local()
_lock = threading.Lock()
_installed: Dict[tuple, list] = {}  # (module name, attribute) -> [original, users]


def _route(key):
    routes = getattr(_local, "routes", None)
    return routes.get(key) if routes else None


def _dispatcher(modname: str, attr: str, original):
    def dispatch(*args, **kwargs):
        fn = _route((modname, attr))
        return (fn or original)(*args, **kwargs)

    dispatch.__wrapped__ = original
    return dispatch


class _Proxy:
    """A module alias (``F``) whose routed attributes go to the route in this thread."""

    def __init__(self, modname: str, attr: str, original):
        self._key, self._original = (modname, attr), original

    def __getattr__(self, name):
        fn = _route((self._key[0], f"{self._key[1]}.{name}"))
        return fn if fn is not None else getattr(self._original, name)


@contextmanager
def routed(module, routes: Dict[str, Callable]):
    """Within the block, calls made by this thread to ``module.<name>`` (or, for a dotted
    name ``"F.fn"``, to ``module.F.fn``) go to ``routes[name]``."""
    modname = module.__name__
    attrs = sorted({name.split(".")[0] for name in routes})
    with _lock:
        for attr in attrs:
            entry = _installed.get((modname, attr))
            if entry is None:
                orig = getattr(module, attr)
                dotted = any(n.startswith(attr + ".") for n in routes)
                setattr(module, attr, _Proxy(modname, attr, orig) if dotted
                        else _dispatcher(modname, attr, orig))
                entry = _installed[(modname, attr)] = [orig, 0]
            entry[1] += 1
    mine = _local.__dict__.setdefault("routes", {})
    saved = {(modname, n): mine.get((modname, n)) for n in routes}
    mine.update({(modname, n): fn for n, fn in routes.items()})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                mine.pop(k, None)
            else:
                mine[k] = v
        with _lock:
            for attr in attrs:
                entry = _installed[(modname, attr)]
                entry[1] -= 1
                if entry[1] == 0:
                    setattr(module, attr, entry[0])
                    del _installed[(modname, attr)]
