"""mmdetection 3.x plugin: registers the focal_plugins losses into ``mmdet.registry.MODELS``.

Load it from a config the mmdet way::

    custom_imports = dict(imports=['focal_plugins.mmdet'], allow_failed_imports=False)

Registered names: ``GHMC``, ``GHMR``, ``SigmoidFocalLoss``, ``SoftmaxFocalLoss``, ``ASL1Loss``.
``GHMC`` and ``GHMR`` replace mmdet's classes of the same name; mmdet's originals stay
buildable as ``MMDetGHMC`` and ``MMDetGHMR`` (for A/B runs). It also registers the weight
initialiser ``SoftmaxPriorInit`` (see ``focal_plugins.mmdet.init``) for softmax dense heads,
and the training hook ``GHMStatsHook`` (``focal_plugins.mmdet.hooks``), which logs the GHM
losses' bins: ``custom_hooks = [dict(type='GHMStatsHook', interval=50)]``, and the train loop
``NoPauseIterBasedTrainLoop`` (``focal_plugins.mmdet.loops``: mmengine's iteration-based loop
without its 2-s pause at each epoch end when the dataloader has no workers). Importing it
allowlists for torch's ``weights_only`` loader exactly the objects mmengine's checkpoints
hold, so mmdet's stock ``tools/test.py`` and ``tools/train.py --resume`` load them
(``focal_plugins.mmdet.checkpoint``). The build log names each head loss's class and
module, and a dense head with ``SoftmaxFocalLoss`` starts at the softmax prior
(``focal_plugins.mmdet.heads``).

Import order: mmdet registers its own GHMC/GHMR when ``mmdet.models`` is first imported, and
an mmengine registry refuses a second registration of a name unless forced. ``mmdet.models``
is also imported lazily by the registry itself on the first build (its ``locations``) and by
``register_all_modules()``. So this module imports ``mmdet.models`` *first*, then registers
with ``force=True``: whatever imports ``mmdet.models`` afterwards finds it already imported
and registers nothing again, and ``type='GHMC'`` builds the plugin's class in either order.

Process-wide effects of importing this package (all of them):

* **Registration** in mmdet's and mmengine's registries: the losses of the loss spec
  (``focal_plugins.spec``; ``GHMC``/``GHMR`` with ``force=True``, replacing mmdet's, which
  stay as ``MMDetGHMC``/``MMDetGHMR``), ``SoftmaxPriorInit``, ``GHMStatsHook``,
  ``NoPauseIterBasedTrainLoop``; ``mmdet.models`` is imported first (see above).
* **Checkpoints**: torch's ``weights_only`` allowlist gains exactly the objects mmengine's
  checkpoints hold (``focal_plugins.mmdet.checkpoint``).
* **One torch module-registration hook** (``focal_plugins.mmdet.heads``): when a head gets a
  ``loss*`` submodule it logs the loss's class, records a ``SoftmaxFocalLoss``'s holder for
  its prior, checks a per-class alpha's length, and for a plugin GHM-R ``loss_bbox`` wraps
  *that head instance's* loss method so a distributed run calls it on every rank.
* **Pillow**: ``PIL.Image.LINEAR`` is restored where Pillow >= 10 removed it
  (``focal_plugins._compat``), for detectron2 0.6, which mmdet may import.
"""
from .. import _compat  # noqa: F401  (before mmdet.models, which may import detectron2)
import mmdet.models  # noqa: F401  (must precede the registration below, see above)
from mmdet.models.losses.ghm_loss import GHMC as MMDetGHMC
from mmdet.models.losses.ghm_loss import GHMR as MMDetGHMR
from mmdet.registry import MODELS

from .. import spec
from . import heads as _heads
from . import losses as _losses
from . import hooks as _hooks
from . import init as _init
from . import loops as _loops
from .checkpoint import allow_mmengine_checkpoints
from .hooks import GHMStatsHook
from .init import SoftmaxPriorInit
from .loops import NoPauseIterBasedTrainLoop
from .losses import GHMC, GHMR, ASL1Loss, SigmoidFocalLoss, SoftmaxFocalLoss

#: one registered class per loss of the spec (focal_plugins.spec), under its name
PLUGIN_LOSSES = {name: getattr(_losses, name) for name in spec.LOSS_NAMES}
MMDET_ORIGINALS = {"MMDetGHMC": MMDetGHMC, "MMDetGHMR": MMDetGHMR}


def register() -> None:
    """(Re-)register the plugin's losses and mmdet's originals; idempotent."""
    for name, cls in {**PLUGIN_LOSSES, **MMDET_ORIGINALS}.items():
        MODELS.register_module(name=name, module=cls, force=True)
    _init.register()
    _hooks.register()
    _loops.register()
    _heads.install()
    allow_mmengine_checkpoints()


register()

__all__ = ["GHMC", "GHMR", "SigmoidFocalLoss", "SoftmaxFocalLoss", "ASL1Loss",
           "MMDetGHMC", "MMDetGHMR", "SoftmaxPriorInit", "GHMStatsHook", "NoPauseIterBasedTrainLoop", "register"]
