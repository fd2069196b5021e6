"""Every bad argument raises ValueError naming the argument and the offending value."""
import pytest
import torch

from focal_plugins import (GHMC, GHMR, asl1_loss, class_frequency_alpha, resolve_alpha,
                           sigmoid_focal_loss, softmax_focal_loss, weight_reduce_loss)

X = torch.randn(4, 3)
Y = torch.zeros(4, 3)
T = torch.tensor([0, 1, 2, 0])

CASES = {
    "gamma<0 sigmoid": (lambda: sigmoid_focal_loss(X, Y, gamma=-0.5), ["gamma", "-0.5"]),
    "gamma<0 softmax": (lambda: softmax_focal_loss(X, T, gamma=-1.0), ["gamma", "-1.0"]),
    "alpha>1": (lambda: sigmoid_focal_loss(X, Y, alpha=1.5), ["alpha", "1.5"]),
    "alpha<0": (lambda: softmax_focal_loss(X, T, alpha=-0.1, alpha_mode="uniform"), ["alpha", "-0.1"]),
    "alpha vector outside [0,1] paper": (lambda: sigmoid_focal_loss(X, Y, alpha=[0.2, 1.3, 0.1]), ["alpha", "1.3"]),
    "alpha vector negative": (lambda: softmax_focal_loss(X, T, alpha=[1.0, -2.0, 1.0]), ["alpha", "-2.0"]),
    "alpha length": (lambda: sigmoid_focal_loss(X, Y, alpha=[0.2, 0.3]), ["alpha", "(2,)", "3"]),
    "alpha length softmax": (lambda: softmax_focal_loss(X, T, alpha=[1.0] * 4), ["alpha", "(4,)"]),
    "alpha paper needs background": (lambda: softmax_focal_loss(X, T, alpha=0.25), ["background_index", "0.25"]),
    "background_index range": (lambda: softmax_focal_loss(X, T, alpha=0.25, background_index=3), ["background_index", "3"]),
    "binary needs 2 classes": (lambda: softmax_focal_loss(X, T, alpha=0.25, alpha_mode="binary"), ["binary", "3"]),
    "alpha_mode": (lambda: sigmoid_focal_loss(X, Y, alpha_mode="paperr"), ["alpha_mode", "paperr"]),
    "reduction": (lambda: sigmoid_focal_loss(X, Y, reduction="avg"), ["reduction", "avg"]),
    "impl": (lambda: softmax_focal_loss(X, T, impl="cuda"), ["impl", "cuda"]),
    "sigmoid label > C": (lambda: sigmoid_focal_loss(X, torch.tensor([0, 4, 1, 3])), ["target", "4"]),
    "sigmoid label < 0": (lambda: sigmoid_focal_loss(X, torch.tensor([0, -1, 1, 3])), ["target", "-1"]),
    "sigmoid soft target > 1": (lambda: sigmoid_focal_loss(X, torch.full((4, 3), 1.5)), ["target", "1.5"]),
    "softmax label == C": (lambda: softmax_focal_loss(X, torch.tensor([0, 3, 1, 2])), ["target", "3"]),
    "softmax label negative": (lambda: softmax_focal_loss(X, torch.tensor([0, -1, 1, 2])), ["target", "-1"]),
    "sigmoid shape": (lambda: sigmoid_focal_loss(X, torch.zeros(4, 2)), ["target", "(4, 2)"]),
    "sigmoid weight shape": (lambda: sigmoid_focal_loss(X, Y, torch.ones(5)), ["weight", "(5,)"]),
    "softmax shape": (lambda: softmax_focal_loss(X, torch.zeros(5, dtype=torch.long)), ["target", "(5,)"]),
    "softmax float target": (lambda: softmax_focal_loss(X, Y), ["target", "float32"]),
    "softmax weight shape": (lambda: softmax_focal_loss(X, T, torch.ones(4, 1)), ["weight", "(4, 1)"]),
    "integer pred": (lambda: sigmoid_focal_loss(T.view(2, 2), Y), ["pred", "int64"]),
    "avg_factor with sum": (lambda: weight_reduce_loss(X, reduction="sum", avg_factor=2.0), ["avg_factor", "2.0"]),
    "mu<=0 asl1": (lambda: asl1_loss(X, Y, mu=0.0), ["mu", "0.0"]),
    "asl1 shape": (lambda: asl1_loss(X, torch.zeros(3, 4)), ["target", "(3, 4)"]),
    "bins<1": (lambda: GHMC(bins=0), ["bins", "0"]),
    "bins float": (lambda: GHMR(bins=2.5), ["bins", "2.5"]),
    "momentum=1": (lambda: GHMC(momentum=1.0), ["momentum", "1.0"]),
    "momentum<0": (lambda: GHMR(momentum=-0.1), ["momentum", "-0.1"]),
    "mu<=0 ghmr": (lambda: GHMR(mu=-0.02), ["mu", "-0.02"]),
    "ghm reduction": (lambda: GHMC(reduction="mena"), ["reduction", "mena"]),
    "ghm ema": (lambda: GHMC(ema="always"), ["ema", "always"]),
    "ghm distributed": (lambda: GHMC(distributed="yes"), ["distributed", "yes"]),
    "ghm reduction_override": (lambda: GHMC()(X, Y, reduction_override="mena"), ["reduction_override", "mena"]),
    "ghmc label > C": (lambda: GHMC()(X, torch.tensor([0, 5, 1, 3])), ["target", "5"]),
    "ghmc softmax label": (lambda: GHMC(use_sigmoid=False)(X, torch.tensor([0, 3, 1, 2])), ["target", "3"]),
    "ghmc label_weight shape": (lambda: GHMC()(X, T, torch.ones(5)), ["label_weight", "(5,)"]),
    "ghmr shape": (lambda: GHMR()(X, torch.zeros(4, 4)), ["target", "(4, 4)"]),
    "counts zero": (lambda: class_frequency_alpha([3, 0, 2]), ["counts", "0.0"]),
    "beta=1": (lambda: class_frequency_alpha([3, 2], method="effective", beta=1.0), ["beta", "1.0"]),
    "method": (lambda: class_frequency_alpha([3, 2], method="log"), ["method", "log"]),
    "num_classes": (lambda: resolve_alpha(0.5, -2), ["num_classes", "-2"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_raises_value_error(name):
    fn, words = CASES[name]
    with pytest.raises(ValueError) as info:
        fn()
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


def test_fused_without_kernel_is_a_clear_error():
    # softmax focal has no CPU fast path (sigmoid focal has one for every target form)
    with pytest.raises(RuntimeError, match="fused"):
        softmax_focal_loss(X, T, impl="fused")
