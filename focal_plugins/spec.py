"""The one loss spec: each loss's name, kind, hyperparameters, defaults and validation.

Both adapters and the tools read it:

* ``focal_plugins.mmdet`` registers one class per :data:`LOSSES` name; its wrappers take
  their hyperparameters' defaults from here and validate them with :meth:`LossSpec.validate`
  (errors name the keyword, the mmdet config key);
* ``focal_plugins.detectron2`` builds its YACS loss node (one upper-case key per entry of
  :data:`HYPERPARAMETERS`), its ``build_loss`` (YACS node or LazyConfig keywords) and the
  names each slot accepts from here;
* ``tools/train.py`` lists the loss names the mmdet plugin registers from :data:`LOSSES`
  without importing the plugin (this module imports neither mmdet nor detectron2);
* :func:`render_loss_table` renders the README's loss table.

Validation takes a ``name_of(field)`` hook: it maps a hyperparameter (``"bins"``) to the
caller's spelling of it (``bins`` for a keyword, ``MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS.BINS``
for a YACS key), so every message names what the user wrote.

Adding a loss: its core module, one :class:`LossSpec` in :data:`LOSSES` (and a new
:data:`HYPERPARAMETERS` entry if it takes a new setting), its kernel if any, and configs.
"""
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from focal_plugins.core import resolve_alpha
from focal_plugins.core.checks import check_choice, check_int, check_number, is_scalar

__all__ = [
    "CLASSIFICATION", "BOX", "Hyperparameter", "HYPERPARAMETERS", "LossSpec", "LOSSES",
    "LOSS_NAMES", "names", "get", "shared_defaults", "check_alpha_length", "render_loss_table",
]

CLASSIFICATION = "classification"
BOX = "box"

NameOf = Callable[[str], str]


def _same(field: str) -> str:
    return field


# ---------------------------------------------------------------- hyperparameters

def _alpha(label, value):
    """None, a number in [0, 1], or a non-empty sequence of numbers >= 0 (finer rules, which
    depend on the loss and alpha_mode, are :meth:`LossSpec.validate`'s)."""
    if value is None:
        return None
    if is_scalar(value):
        check_number(label, value, lo=0.0, hi=1.0)
        return value
    if hasattr(value, "dim"):  # a tensor: the core checks its values where it is used
        return value
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value):
        for v in value:
            check_number(label, v, lo=0.0)
        return value
    raise ValueError(f"{label} must be None, a number in [0, 1] or a non-empty list of "
                     f"numbers (one per class), got {value!r}")


@dataclass(frozen=True)
class Hyperparameter:
    """A loss setting: its keyword name, what it means and its check
    (``check(label, value)`` returns the value, raises ValueError naming ``label``)."""

    name: str
    doc: str
    check: Callable[[str, Any], Any]


#: every hyperparameter some loss takes, in the order of the detectron2 YACS node
HYPERPARAMETERS: Dict[str, Hyperparameter] = {h.name: h for h in (
    Hyperparameter("alpha", "class weighting: None, a float in [0, 1] or one weight per class",
                   _alpha),
    Hyperparameter("alpha_mode", "how a float alpha is applied ('paper', 'uniform', 'binary')",
                   lambda label, v: v),  # the loss's own choices: LossSpec.validate
    Hyperparameter("gamma", "focusing parameter, >= 0",
                   lambda label, v: check_number(label, v, lo=0.0)),
    Hyperparameter("bins", "number of gradient-norm bins of GHM, an int >= 1",
                   lambda label, v: check_int(label, v, lo=1)),
    Hyperparameter("momentum", "EMA momentum of GHM's bin counts, in [0, 1) (0: none)",
                   lambda label, v: check_number(label, v, lo=0.0, hi=1.0, hi_open=True)),
    Hyperparameter("mu", "Authentic Smooth L1's mu, > 0",
                   lambda label, v: check_number(label, v, lo=0.0, lo_open=True)),
    Hyperparameter("loss_weight", "factor on the loss, a finite number",
                   lambda label, v: check_number(label, v)),
)}


# ---------------------------------------------------------------- losses

@dataclass(frozen=True)
class LossSpec:
    """One loss: ``name`` (the mmdet registry name and the detectron2 ``NAME``), ``kind``
    (:data:`CLASSIFICATION` or :data:`BOX`), ``defaults`` (its hyperparameters and their
    defaults, keys of :data:`HYPERPARAMETERS`), the core function or module computing it,
    a one-line description, and for classification losses whether it is a softmax over
    ``num_classes + 1`` columns (background a column) and which ``alpha_mode`` values the
    core accepts for it."""

    name: str
    kind: str
    defaults: Mapping[str, Any]
    core: str
    doc: str
    softmax: bool = False
    alpha_modes: Tuple[str, ...] = ()

    @property
    def params(self) -> Tuple[str, ...]:
        return tuple(self.defaults)

    def validate(self, values: Mapping[str, Any], name_of: NameOf = _same, *,
                 num_classes: Optional[int] = None) -> Dict[str, Any]:
        """Every hyperparameter of this loss, from ``values`` (missing ones take the
        default; keys this loss does not take are refused), checked; returns them.

        ``name_of(field)`` spells a field as the caller wrote it. With ``num_classes`` (the
        head's number of foreground classes, where the caller knows it) a per-class alpha's
        length and ``alpha_mode='binary'``'s two classes are checked too."""
        unknown = [k for k in values if k not in self.defaults]
        if unknown:
            raise ValueError(f"{self.name} takes no {', '.join(name_of(k) for k in unknown)}; "
                             f"its settings are {[name_of(k) for k in self.defaults]}")
        out = {k: HYPERPARAMETERS[k].check(name_of(k), values.get(k, d))
               for k, d in self.defaults.items()}
        if "alpha_mode" in out:
            self._check_alpha(out["alpha"], out["alpha_mode"], name_of, num_classes)
        return out

    def _check_alpha(self, alpha, mode, name_of, num_classes):
        try:
            check_choice(name_of("alpha_mode"), mode, self.alpha_modes)
        except ValueError as e:
            if mode == "binary":
                raise ValueError(f"{e}: 'binary' is for a softmax over two columns "
                                 f"(SoftmaxFocalLoss with one class)") from None
            raise
        if mode == "binary" and not is_scalar(alpha):
            raise ValueError(f"{name_of('alpha_mode')} = 'binary' takes a float "
                             f"{name_of('alpha')} (alpha on column 0, 1 - alpha on column 1), "
                             f"got {name_of('alpha')} = {alpha!r}")
        if mode == "binary" and num_classes is not None and num_classes != 1:
            raise ValueError(f"{name_of('alpha_mode')} = 'binary' needs two columns (one class "
                             f"and background, num_classes = 1), got num_classes = "
                             f"{num_classes}")
        if alpha is None:
            return
        if num_classes is not None:
            check_alpha_length(self, alpha, num_classes, name_of)
        # the core's own rules for this convention (per-class bounds, ...)
        if is_scalar(alpha):
            n = 2 if mode == "binary" else (num_classes or 1) + (1 if self.softmax else 0)
        else:
            n = len(alpha)
        try:
            resolve_alpha(alpha, n, kind="softmax" if self.softmax else "sigmoid",
                          alpha_mode=mode, background_index=n - 1 if self.softmax else None)
        except ValueError as e:
            label = name_of("alpha")
            raise ValueError(str(e) if label == "alpha" else f"{label}: {e}") from None


def check_alpha_length(spec: "LossSpec", alpha, num_classes: int, name_of: NameOf = _same):
    """A per-class alpha must have one entry per logit column: ``num_classes`` for a
    sigmoid loss, ``num_classes + 1 (background)`` for a softmax one; ``alpha_mode='binary'``
    needs two columns (num_classes = 1)."""
    if alpha is None or is_scalar(alpha):
        return
    n = len(alpha)
    want = num_classes + 1 if spec.softmax else num_classes
    if n != want:
        cols = (f"num_classes + 1 (background) = {want}" if spec.softmax
                else f"num_classes = {want}")
        raise ValueError(f"{name_of('alpha')} has {n} entries; {spec.name} needs one per logit "
                         f"column: {cols}")


_FOCAL = dict(alpha=0.25, alpha_mode="paper", gamma=2.0, loss_weight=1.0)

#: the losses, by name
LOSSES: Dict[str, LossSpec] = {s.name: s for s in (
    LossSpec("SigmoidFocalLoss", CLASSIFICATION, _FOCAL, "sigmoid_focal_loss",
             "focal loss on per-class sigmoids (RetinaNet), any α convention",
             alpha_modes=("paper", "uniform")),
    LossSpec("SoftmaxFocalLoss", CLASSIFICATION, dict(_FOCAL, alpha=None), "softmax_focal_loss",
             "multi-class focal loss on a softmax with a background column", softmax=True,
             alpha_modes=("paper", "uniform", "binary")),
    LossSpec("GHMC", CLASSIFICATION, dict(bins=10, momentum=0.0, loss_weight=1.0), "GHMC",
             "GHM-C: loss weighted by the inverse density of the gradient norm g; sigmoid "
             "(g = \\|p - y\\|) or softmax (g = 1 - p_t)"),
    LossSpec("GHMR", BOX, dict(mu=0.02, bins=10, momentum=0.0, loss_weight=1.0), "GHMR",
             "GHM-R: Authentic Smooth L1 weighted by the density of g = \\|d\\| / sqrt(d² + μ²)"),
    LossSpec("ASL1Loss", BOX, dict(mu=0.02, loss_weight=1.0), "asl1_loss",
             "Authentic Smooth L1, sqrt(d² + μ²) - μ"),
)}
LOSS_NAMES = tuple(LOSSES)


def names(kind: Optional[str] = None, *, softmax: Optional[bool] = None) -> Tuple[str, ...]:
    """Loss names, of one ``kind`` and/or (``softmax=False``) without the softmax losses."""
    return tuple(n for n, s in LOSSES.items() if (kind is None or s.kind == kind)
                 and (softmax is None or s.softmax == softmax))


def get(name: str, label: str = "name") -> LossSpec:
    """The spec of ``name``; ValueError naming ``label`` for an unknown one."""
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"{label} = {name!r} is not a known loss; choose one of "
                         f"{list(LOSSES)}")
    return LOSSES[name]


def shared_defaults() -> Dict[str, Any]:
    """Per hyperparameter, the default every loss taking it agrees on, or None where they
    differ (``alpha``: 0.25 for sigmoid focal, None for softmax focal): the defaults of a
    config node holding the settings of any loss, None meaning "the loss's own"."""
    out = {}
    for h in HYPERPARAMETERS:
        ds = {repr(s.defaults[h]): s.defaults[h] for s in LOSSES.values() if h in s.defaults}
        out[h] = next(iter(ds.values())) if len(ds) == 1 else None
    return out


def takers(field: str) -> Tuple[str, ...]:
    """The losses that take the hyperparameter ``field``."""
    return tuple(n for n, s in LOSSES.items() if field in s.defaults)


_TABLE_COLUMNS = ("name (mmdet registry and detectron2 `NAME`)", "core function / module",
                  "what it is")


def render_loss_table(hyperparameters: bool = False) -> str:
    """The README's loss table (markdown); with ``hyperparameters`` a fourth column lists
    each loss's settings and defaults."""
    cols = _TABLE_COLUMNS + (("settings (defaults)",) if hyperparameters else ())
    head = "| " + " | ".join(cols) + " |\n|" + " --- |" * len(cols)
    rows = []
    for s in LOSSES.values():
        row = f"| `{s.name}` | `{s.core}` | {s.doc} |"
        if hyperparameters:
            row += " " + ", ".join(f"`{k}={v!r}`" for k, v in s.defaults.items()) + " |"
        rows.append(row)
    return "\n".join([head, *rows])
