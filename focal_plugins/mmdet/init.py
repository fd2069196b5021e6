"""A weight initialiser for softmax classifiers in mmdet's dense heads.

mmdet's dense heads initialise the classifier bias with ``bias_prob=0.01``, a sigmoid
convention (each class starts at probability 0.01). With a softmax over ``num_classes + 1``
columns the same bias in every column makes all columns equally likely (1 / (C + 1)), so the
background, by far the most frequent target, starts at a loss of about log(C + 1) per anchor
and the first loss is in the hundreds. ``SoftmaxPriorInit`` gives the background column the
probability ``background_prob`` and splits the rest evenly over the classes: the convention
of ``focal_plugins.core.prior.softmax_prior_bias`` with ``prior_prob = 1 - background_prob``.

A dense head whose ``loss_cls`` is ``SoftmaxFocalLoss`` gets this prior without it, from the
head's own ``num_classes`` and ``bias_prob`` (background ``1 - bias_prob``; see
``focal_plugins.mmdet.heads``), which is why the shipped softmax-focal configs name no class
count and inherit to any dataset. Use ``SoftmaxPriorInit`` to choose another
``background_prob``, or for other softmax classifiers; its ``num_classes`` must then be the
head's (a bias that is not a multiple of ``num_classes + 1`` is an error naming both).

Use it as the classifier's override in the head's ``init_cfg``, e.g. for RetinaNet on a
dataset of C classes::

    init_cfg=dict(type='Normal', layer='Conv2d', std=0.01,
                  override=dict(type='SoftmaxPriorInit', name='retina_cls', std=0.01,
                                num_classes=C, background_prob=0.999))
"""
import torch
from mmengine.model.weight_init import BaseInit, update_init_info
from mmengine.registry import WEIGHT_INITIALIZERS
from torch import nn

from focal_plugins.core.prior import softmax_prior_bias


class SoftmaxPriorInit(BaseInit):
    """Normal(mean, std) weights; biases, read as groups of ``num_classes + 1`` columns with
    the background last (mmdet's layout, one group per anchor), set so that the softmax of
    each group is ``background_prob`` on the background and ``(1 - background_prob) /
    num_classes`` on every class."""

    def __init__(self, num_classes, background_prob=0.99, mean=0.0, std=0.01, **kwargs):
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
        if isinstance(background_prob, bool) or not isinstance(background_prob, (int, float)) \
                or not 0.0 < background_prob < 1.0:
            raise ValueError(f"background_prob must lie in (0, 1), got {background_prob!r}")
        self.num_classes = num_classes
        self.background_prob = float(background_prob)
        self.mean = mean
        self.std = std

    def background_bias(self) -> float:
        """log(p_bg / p_class), with the class columns' bias 0."""
        cls_bias, bg_bias = softmax_prior_bias(1.0 - self.background_prob, self.num_classes)
        return bg_bias - cls_bias

    def _init(self, m: nn.Module) -> None:
        if getattr(m, "weight", None) is not None:
            nn.init.normal_(m.weight, self.mean, self.std)
        bias = getattr(m, "bias", None)
        if bias is None:
            return
        k = self.num_classes + 1
        if bias.numel() % k:
            raise ValueError(f"SoftmaxPriorInit: bias of {bias.numel()} values is not a "
                             f"multiple of num_classes + 1 = {k} (num_classes={self.num_classes})")
        with torch.no_grad():
            b = bias.view(-1, k)
            b.zero_()
            b[:, -1] = self.background_bias()

    def __call__(self, module: nn.Module) -> None:
        if self.wholemodule:
            self._init(module)
        else:
            def visit(m):
                names = {c.__name__ for c in type(m).__mro__}
                if names & set(self.layer):
                    self._init(m)
            module.apply(visit)
        if hasattr(module, "_params_init_info"):
            update_init_info(module, init_info=self._get_init_info())

    def _get_init_info(self):
        return (f"{self.__class__.__name__}: mean={self.mean}, std={self.std}, "
                f"num_classes={self.num_classes}, background_prob={self.background_prob}")


def register() -> None:
    # into mmengine's root registry, so that it is found with or without mmdet's default scope
    existing = WEIGHT_INITIALIZERS.module_dict.get("SoftmaxPriorInit")
    if existing is None or existing.__module__ == __name__:
        WEIGHT_INITIALIZERS.register_module(name="SoftmaxPriorInit", module=SoftmaxPriorInit,
                                            force=True)
    else:
        raise RuntimeError("another 'SoftmaxPriorInit' is registered in mmengine's "
                           f"WEIGHT_INITIALIZERS ({existing.__module__})")
