"""The wrappers against mmdet's own losses on mmdet-shaped inputs, their hooks and their
argument checks."""
import pytest
import torch

pytest.importorskip("mmdet")

from mmdet.models.losses import CrossEntropyLoss, FocalLoss, accuracy  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402

import focal_plugins.mmdet as plugin  # noqa: E402
from focal_plugins.mmdet import (ASL1Loss, GHMC, GHMR, MMDetGHMC, MMDetGHMR,  # noqa: E402
                                 SigmoidFocalLoss, SoftmaxFocalLoss)

N, C = 64, 5


def _batch(seed=0, softmax=False):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(N, C + (1 if softmax else 0), generator=g) * 2
    labels = torch.randint(0, C + 1, (N,), generator=g)  # C = background
    label_weights = (torch.rand(N, generator=g) > 0.2).float()
    return pred, labels, label_weights


def test_sigmoid_focal_equals_mmdet_focal_loss_anchor_head_convention():
    pred, labels, lw = _batch()
    mine = SigmoidFocalLoss(gamma=2.0, alpha=0.25, loss_weight=2.0)
    ref = FocalLoss(use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=2.0)
    for kw in (dict(avg_factor=7.0), dict(), dict(reduction_override="sum"),
               dict(reduction_override="none")):
        torch.testing.assert_close(mine(pred, labels, lw, **kw), ref(pred, labels, lw, **kw))
    # FCOS convention: no weight
    torch.testing.assert_close(mine(pred, labels, avg_factor=3.0),
                               ref(pred, labels, avg_factor=3.0))


def test_softmax_focal_gamma0_equals_mmdet_cross_entropy_roi_convention():
    pred, labels, lw = _batch(softmax=True)
    mine = SoftmaxFocalLoss(gamma=0.0, alpha=None, loss_weight=1.5)
    ref = CrossEntropyLoss(use_sigmoid=False, loss_weight=1.5)
    torch.testing.assert_close(mine(pred, labels, lw, avg_factor=11.0, reduction_override=None),
                               ref(pred, labels, lw, avg_factor=11.0, reduction_override=None))
    torch.testing.assert_close(mine(pred, labels, lw), ref(pred, labels, lw))


def test_softmax_focal_alpha_paper_puts_alpha_on_foreground_and_background_is_last():
    pred, labels, _ = _batch(softmax=True)
    plain = SoftmaxFocalLoss(gamma=2.0, alpha=None, reduction="none")(pred, labels)
    alpha = SoftmaxFocalLoss(gamma=2.0, alpha=0.25, reduction="none")(pred, labels)
    fg = labels < C
    torch.testing.assert_close(alpha[fg], 0.25 * plain[fg])
    torch.testing.assert_close(alpha[~fg], 0.75 * plain[~fg])


@pytest.mark.parametrize("loss", [SoftmaxFocalLoss(), GHMC(use_sigmoid=False)],
                         ids=["softmax_focal", "ghmc_softmax"])
def test_softmax_hooks_as_the_roi_head_asks(loss):
    pred, labels, _ = _batch(softmax=True)
    assert loss.custom_cls_channels is False  # heads keep their num_classes + 1 channels
    assert loss.custom_activation and loss.custom_accuracy
    assert loss.get_cls_channels(C) == C + 1
    torch.testing.assert_close(loss.get_activation(pred), pred.softmax(-1))
    acc = loss.get_accuracy(pred, labels)
    assert set(acc) == {"acc"}
    torch.testing.assert_close(acc["acc"], accuracy(pred, labels))


def test_sigmoid_losses_do_not_claim_custom_hooks():
    for loss in (SigmoidFocalLoss(), GHMC()):
        assert not getattr(loss, "custom_activation", False)
        assert not getattr(loss, "custom_accuracy", False)
        assert not getattr(loss, "custom_cls_channels", False)


def test_ghmc_equals_mmdet_over_calls_with_momentum():
    mine, ref = GHMC(bins=30, momentum=0.75), MMDetGHMC(bins=30, momentum=0.75)
    for seed in range(3):
        pred, labels, lw = _batch(seed)
        # mmdet ignores avg_factor; so does the wrapper by default
        torch.testing.assert_close(mine(pred, labels, lw, avg_factor=5.0),
                                   ref(pred, labels, lw, avg_factor=5.0))
    torch.testing.assert_close(mine.acc_sum, ref.acc_sum, check_dtype=False)


def test_ghmc_without_label_weight_and_use_avg_factor():
    pred, labels, _ = _batch()
    ones = torch.ones(N)
    torch.testing.assert_close(GHMC()(pred, labels), MMDetGHMC()(pred, labels, ones))
    a = GHMC(use_avg_factor=True)(pred, labels, avg_factor=4.0)
    b = GHMC()(pred, labels, reduction_override="sum") / 4.0
    torch.testing.assert_close(a, b)


def test_ghmr_equals_mmdet_on_box_deltas_over_calls():
    mine = GHMR(mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)
    ref = MMDetGHMR(mu=0.02, bins=10, momentum=0.7, loss_weight=10.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        pred, target = torch.randn(N, 4, generator=g) * 0.1, torch.randn(N, 4, generator=g) * 0.1
        w = (torch.rand(N, 1, generator=g) > 0.6).float().expand(N, 4)  # positives only
        torch.testing.assert_close(mine(pred, target, w, avg_factor=9.0),
                                   ref(pred, target, w, avg_factor=9.0))
    torch.testing.assert_close(mine.acc_sum, ref.acc_sum, check_dtype=False)


def test_asl1_weight_and_avg_factor_pass_through():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(N, 4, generator=g), torch.randn(N, 4, generator=g)
    w = torch.rand(N, 4, generator=g)
    d = pred - target
    elem = torch.sqrt(d * d + 0.02 ** 2) - 0.02
    loss = ASL1Loss(mu=0.02, loss_weight=3.0)
    torch.testing.assert_close(loss(pred, target, w, avg_factor=7.0), 3.0 * (w * elem).sum() / 7.0)
    torch.testing.assert_close(loss(pred, target), 3.0 * elem.mean())
    torch.testing.assert_close(loss(pred, target, reduction_override="none"), 3.0 * elem)


def test_registered_names_build_plugin_classes():
    for name, cls in plugin.PLUGIN_LOSSES.items():
        assert type(MODELS.build(dict(type=name))) is cls


@pytest.mark.parametrize("cls, kwargs, arg", [
    (SigmoidFocalLoss, dict(use_sigmoid=False), "use_sigmoid"),
    (SigmoidFocalLoss, dict(activated=True), "activated"),
    (SigmoidFocalLoss, dict(reduction="avg"), "reduction"),
    (SigmoidFocalLoss, dict(loss_weight="1"), "loss_weight"),
    (SigmoidFocalLoss, dict(gamma=-1.0), "gamma"),
    (SigmoidFocalLoss, dict(alpha_mode="both"), "alpha_mode"),
    (SoftmaxFocalLoss, dict(use_sigmoid=True), "use_sigmoid"),
    (SoftmaxFocalLoss, dict(activated=True), "activated"),
    (SoftmaxFocalLoss, dict(background_index=1.5), "background_index"),
    (GHMC, dict(use_sigmoid="yes"), "use_sigmoid"),
    (GHMC, dict(bins=0), "bins"),
    (GHMC, dict(momentum=1.0), "momentum"),
    (GHMC, dict(use_avg_factor=1), "use_avg_factor"),
    (GHMR, dict(mu=0.0), "mu"),
    (GHMR, dict(reduction="max"), "reduction"),
    (ASL1Loss, dict(mu=-1.0), "mu"),
])
def test_bad_config_values_raise_value_error_naming_them(cls, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        cls(**kwargs)


def test_bad_reduction_override_raises():
    pred, labels, lw = _batch()
    for loss in (SigmoidFocalLoss(), GHMC(), ASL1Loss()):
        with pytest.raises(ValueError, match="reduction_override"):
            if isinstance(loss, ASL1Loss):
                loss(pred, pred, reduction_override="avg")
            else:
                loss(pred, labels, lw, reduction_override="avg")


@pytest.mark.parametrize("cls, kwargs, message", [
    (GHMC, dict(bins=0), "GHMC: bins must be an int >= 1, got 0"),
    (GHMC, dict(use_sigmoid="False"), "GHMC: use_sigmoid must be True or False, got 'False'"),
    (GHMR, dict(mu=float("inf")), "GHMR: mu must be"),
    (GHMR, dict(loss_weight=float("inf")), "GHMR: loss_weight must be a finite number, got inf"),
    (SigmoidFocalLoss, dict(gamma=float("inf")), "SigmoidFocalLoss: gamma must be"),
    (SigmoidFocalLoss, dict(alpha=[0.1, 1.5]), "SigmoidFocalLoss: alpha must lie in [0, 1]"),
    (SigmoidFocalLoss, dict(impl="cuda"), "SigmoidFocalLoss: impl must be one of"),
    (SoftmaxFocalLoss, dict(background_index=True), "SoftmaxFocalLoss: background_index must be an int"),
    (SoftmaxFocalLoss, dict(ignore_index="x"), "SoftmaxFocalLoss: ignore_index must be an int"),
    (ASL1Loss, dict(mu=0.0), "ASL1Loss: mu must be"),
])
def test_errors_name_the_loss(cls, kwargs, message):
    with pytest.raises(ValueError) as info:
        cls(**kwargs)
    assert str(info.value).startswith(message), str(info.value)


def test_call_errors_name_the_loss():
    pred, labels, lw = _batch()
    for loss in (SigmoidFocalLoss(), GHMC(use_avg_factor=True)):
        with pytest.raises(ValueError, match=rf"^{type(loss).__name__}: avg_factor .*-1"):
            loss(pred, labels, lw, avg_factor=-1, reduction_override="mean")
    with pytest.raises(ValueError, match=r"^ASL1Loss: weight must broadcast"):
        ASL1Loss()(pred, pred, torch.ones(3))


def test_sigmoid_focal_per_class_alpha_list_builds_and_matches_core():
    # the README's class_frequency_alpha recipe in an mmdet sigmoid head
    from focal_plugins import class_frequency_alpha, sigmoid_focal_loss
    alpha = class_frequency_alpha([100, 10, 5, 50, 1]).tolist()
    pred, labels, lw = _batch()
    loss = MODELS.build(dict(type="SigmoidFocalLoss", use_sigmoid=True, alpha=alpha,
                             alpha_mode="uniform"))
    torch.testing.assert_close(loss(pred, labels, lw, avg_factor=5.0),
                               sigmoid_focal_loss(pred, labels, lw, alpha=alpha,
                                                  alpha_mode="uniform", avg_factor=5.0))
    assert SigmoidFocalLoss(alpha=[0.1, 0.2, 0.3, 0.4, 0.5])(pred, labels).item() > 0
    with pytest.raises(ValueError, match="SigmoidFocalLoss: alpha must have one entry per class"):
        SigmoidFocalLoss(alpha=[0.1, 0.2])(pred, labels)


def test_softmax_focal_float_alpha_with_explicit_background_index_builds():
    pred, labels, _ = _batch(softmax=True)
    loss = SoftmaxFocalLoss(alpha=0.25, background_index=C)
    torch.testing.assert_close(loss(pred, labels), SoftmaxFocalLoss(alpha=0.25)(pred, labels))


def test_numpy_settings_accepted():
    import numpy as np
    pred, labels, lw = _batch()
    torch.testing.assert_close(
        SigmoidFocalLoss(gamma=np.float32(2.0), alpha=np.float64(0.25))(pred, labels, lw),
        SigmoidFocalLoss()(pred, labels, lw))
    torch.testing.assert_close(GHMC(bins=np.int64(10))(pred, labels, lw), GHMC()(pred, labels, lw))
