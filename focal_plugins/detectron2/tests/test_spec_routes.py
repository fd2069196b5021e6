"""The detectron2 adapter reads the loss spec: its YACS node, build_loss's defaults and
checks, the slot names and the classes' signatures; alpha_mode='binary' and ASL1's mu."""
import inspect

import pytest
import torch

pytest.importorskip("detectron2")

from detectron2.config import get_cfg as d2_get_cfg  # noqa: E402

import focal_plugins.detectron2 as fpd2  # noqa: E402
from focal_plugins import spec  # noqa: E402
from focal_plugins.core import softmax_focal_loss  # noqa: E402
from focal_plugins.detectron2 import add_focal_plugins_config, build_loss  # noqa: E402
from focal_plugins.detectron2 import losses as d2_losses  # noqa: E402


def test_yacs_node_and_slots_come_from_the_spec():
    node = add_focal_plugins_config(d2_get_cfg()).MODEL.FOCAL_PLUGINS.RETINANET.CLS_LOSS
    assert dict(node) == {"NAME": "", **{k.upper(): v for k, v in spec.shared_defaults().items()}}
    assert fpd2.SLOT_NAMES["RETINANET.CLS_LOSS"] == spec.names(spec.CLASSIFICATION)
    assert fpd2.SLOT_NAMES["RPN.CLS_LOSS"] == ("SigmoidFocalLoss", "GHMC")
    assert fpd2.SLOT_NAMES["ROI_BOX_HEAD.BOX_LOSS"] == spec.names(spec.BOX)


@pytest.mark.parametrize("name", spec.LOSS_NAMES)
def test_class_signatures_and_build_defaults_are_the_spec(name):
    cls = getattr(d2_losses, name)
    params = inspect.signature(cls).parameters
    assert {k: p.default for k, p in params.items()} == dict(spec.LOSSES[name].defaults)
    built = build_loss(name=name)
    assert built._hparams == dict(spec.LOSSES[name].defaults)


def test_alpha_mode_binary_is_accepted_as_the_core_does():
    key = "MODEL.FOCAL_PLUGINS.ROI_BOX_HEAD.CLS_LOSS"
    loss = build_loss(name="SoftmaxFocalLoss", alpha=0.3, alpha_mode="binary", num_classes=1)
    logits = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 1, 0, 1, 1])
    torch.testing.assert_close(loss(logits, labels, 1, 3.0),
                               softmax_focal_loss(logits, labels, alpha=0.3, alpha_mode="binary",
                                                  reduction="sum") / 3.0)
    with pytest.raises(ValueError, match=rf"^{key}\.ALPHA_MODE = 'binary' needs two columns"):
        build_loss(name="SoftmaxFocalLoss", alpha=0.3, alpha_mode="binary", key=key,
                   num_classes=80)
    with pytest.raises(ValueError, match=r"ALPHA_MODE must be one of \('paper', 'uniform'\)"):
        build_loss(name="SigmoidFocalLoss", alpha_mode="binary", key=key)


def test_asl1_refuses_mu_zero_as_the_core_does():
    with pytest.raises(ValueError, match=r"^mu must be a finite number in \(0\.0, inf\], got 0"):
        d2_losses.ASL1Loss(mu=0)
    with pytest.raises(ValueError, match=r"^MODEL\.X\.MU must be .* got 0\.0"):
        build_loss(name="ASL1Loss", mu=0.0, key="MODEL.X")
