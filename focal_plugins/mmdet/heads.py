"""What the plugin does for the mmdet heads that hold a loss.

* **The build log names every head loss's implementation.** When an mmengine module (every
  mmdet head) is given a ``loss_*`` submodule (``self.loss_cls = MODELS.build(...)`` in every mmdet head), the
  current mmengine logger gets ``RetinaHead.loss_cls: focal_plugins.mmdet.losses.GHMC``, so a
  training log says which ``GHMC`` ran (the plugin's or mmdet's ``MMDetGHMC``).
* **A softmax focal dense head starts at the right prior without extra config.** mmdet's dense
  heads initialise their classifier bias with ``bias_prob=0.01``, a sigmoid convention. When
  the head's ``loss_cls`` is the plugin's ``SoftmaxFocalLoss``, the loss's ``init_weights``
  (which mmengine calls right after the head's own ``init_cfg``) turns that uniform bias into
  the softmax prior of :func:`focal_plugins.core.prior.softmax_prior_bias` with
  ``prior_prob = bias_prob``: background ``1 - bias_prob``, each class ``bias_prob /
  num_classes`` (detectron2's adapter uses the same convention). A bias that is not uniform
  (``SoftmaxPriorInit`` in the config, or the user's own init) is left as it is, and so is
  a head initialised from a checkpoint (``init_cfg`` of type ``Pretrained``).

* **A per-class alpha of the wrong length fails when the head is built**, naming the head's
  loss key and the head's ``num_classes`` (``num_classes + 1 (background)`` for
  ``SoftmaxFocalLoss``), not at the first iteration.

* **A distributed GHM-R box loss is called on every rank**, also where mmdet's head skips
  the call for want of positives (``BBoxHead.loss``; ``FCOSHead.loss_by_feat``): GHM
  all-reduces its bin counts in each call, so a rank that skipped it would leave the others
  waiting. The head's method is wrapped on that instance only, and the extra call (on empty
  inputs: value 0, unused) is made only in a distributed run.

All of them work through torch's global module-registration hook (installed once, on import); it
only records which module holds a plugin loss, in a weak mapping.
"""
import types
import weakref

import torch
from torch import nn

from focal_plugins import spec
from focal_plugins.core.prior import softmax_prior_bias

__all__ = ["apply_softmax_prior", "holder", "install"]

_HOLDERS = weakref.WeakKeyDictionary()  # loss module -> weakref to the module holding it
_GHM_CALLS = weakref.WeakKeyDictionary()  # plugin GHM-R box loss -> number of calls
_handle = None


def holder(loss: nn.Module):
    """The module that ``loss`` was last assigned to as an attribute, or None."""
    ref = _HOLDERS.get(loss)
    return ref() if ref is not None else None


def _on_register(parent, name, child):
    if not name.startswith("loss"):
        return None
    from mmengine.logging import print_log
    from mmengine.model import BaseModule

    if not isinstance(parent, BaseModule):
        return None

    if getattr(child, "wants_softmax_prior", False):  # the plugin's SoftmaxFocalLoss
        _HOLDERS[child] = weakref.ref(parent)
    _check_alpha_length(parent, name, child)
    if name == "loss_bbox" and getattr(type(child), "NAME", None) == "GHMR" \
            and type(child).__module__.startswith("focal_plugins."):
        _call_on_every_rank(parent, child)
    print_log(f"{type(parent).__name__}.{name}: "
              f"{type(child).__module__}.{type(child).__qualname__}", logger="current")
    return None


def _check_alpha_length(head, name, loss) -> None:
    """A plugin focal loss with a per-class alpha, given to a head that has ``num_classes``:
    its length must fit the head's logit columns, checked now rather than at the first
    iteration (the message names the head's key and the loss's keyword)."""
    num_classes = getattr(head, "num_classes", None)
    loss_name = getattr(type(loss), "NAME", None)
    if loss_name not in spec.LOSSES or "alpha" not in spec.LOSSES[loss_name].defaults \
            or isinstance(num_classes, bool) or not isinstance(num_classes, int):
        return
    spec.check_alpha_length(spec.LOSSES[loss_name], getattr(loss, "alpha", None), num_classes,
                            lambda f: f"{type(head).__name__}.{name}.{f}")


def _count_call(module, args):
    _GHM_CALLS[module] = _GHM_CALLS.get(module, 0) + 1


def _distributed(loss) -> bool:
    """Whether ``loss`` all-reduces its bin counts in this run."""
    d = getattr(loss, "distributed", False)
    if d is False:
        return False
    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    return d is True or world > 1


def _ghm_box_call_made(head, method, args, kwargs):
    loss = head.loss_bbox
    before = _GHM_CALLS.get(loss, 0)
    out = getattr(type(head), method)(head, *args, **kwargs)
    if _GHM_CALLS.get(loss, 0) == before and _distributed(loss):
        p = next(head.parameters(), None)
        empty = torch.zeros(0, 4, device=p.device if p is not None else None)
        loss(empty, empty, empty)  # the all-reduce the other ranks make; value 0, unused
    return out


def _loss_with_ghm_call(self, *args, **kwargs):
    return _ghm_box_call_made(self, "loss", args, kwargs)


def _loss_by_feat_with_ghm_call(self, *args, **kwargs):
    return _ghm_box_call_made(self, "loss_by_feat", args, kwargs)


def _call_on_every_rank(head, loss) -> None:
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
    from mmdet.models.roi_heads.bbox_heads import BBoxHead

    if not loss._forward_pre_hooks or _count_call not in loss._forward_pre_hooks.values():
        loss.register_forward_pre_hook(_count_call)
    if isinstance(head, BBoxHead):
        head.loss = types.MethodType(_loss_with_ghm_call, head)
    elif isinstance(head, BaseDenseHead):
        head.loss_by_feat = types.MethodType(_loss_by_feat_with_ghm_call, head)


def install() -> None:
    """Install the registration hook (once per process)."""
    global _handle
    if _handle is None:
        _handle = nn.modules.module.register_module_module_registration_hook(_on_register)


def _classifier(head, k):
    """The head's classifier conv: its one Conv2d child named ``*cls*`` whose output
    channels are a multiple of ``k = num_classes + 1``."""
    found = [(n, m) for n, m in head.named_children()
             if "cls" in n and isinstance(m, nn.Conv2d) and m.out_channels % k == 0]
    if len(found) != 1:
        c = k - 1
        raise ValueError(
            f"SoftmaxFocalLoss in {type(head).__name__}: cannot tell which conv is the "
            f"classifier (candidates: {[n for n, _ in found]}), so it cannot set the softmax "
            f"prior; give the classifier one in the head's init_cfg: override=dict("
            f"type='SoftmaxPriorInit', name='<classifier conv>', num_classes={c}, "
            f"background_prob=0.99)")
    return found[0]


def apply_softmax_prior(loss: nn.Module) -> bool:
    """Give the classifier of the dense head holding ``loss`` the softmax prior (see the
    module doc); True if it did."""
    head = holder(loss)
    from mmdet.models.dense_heads.base_dense_head import BaseDenseHead

    if not isinstance(head, BaseDenseHead) or getattr(head, "loss_cls", None) is not loss:
        return False
    k = head.num_classes + 1
    name, conv = _classifier(head, k)
    if conv.bias is None:
        return False
    with torch.no_grad():
        b = conv.bias.view(-1, k)
        if not bool((b == b[:, :1]).all()):
            return False  # a prior was set on purpose
        prior = float(torch.sigmoid(b[0, 0]))
        cls_bias, bg_bias = softmax_prior_bias(prior, head.num_classes)
        b[:, :-1] = cls_bias
        b[:, -1] = bg_bias
    if hasattr(conv, "_params_init_info"):
        from mmengine.model.weight_init import update_init_info

        update_init_info(conv, init_info=f"softmax prior of {type(loss).__name__}: "
                         f"background {1 - prior:g}, each class {prior:g}/{head.num_classes}")
    return True
