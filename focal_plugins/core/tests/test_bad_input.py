"""Every bad argument raises ValueError naming the argument and the offending value."""
import numpy as np
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


# ---- the audit's classes: every public entry goes through core/checks.py

INF, NAN = float("inf"), float("nan")
L = torch.tensor([0, 1, 3, 2])           # sigmoid labels, 3 = background (CPU fast path)


def _entries_with_avg_factor():
    """(name, call(avg_factor)) for every public entry that takes avg_factor."""
    return {
        "sigmoid labels": lambda a: sigmoid_focal_loss(X, L, avg_factor=a),
        "sigmoid float": lambda a: sigmoid_focal_loss(X, Y, avg_factor=a),
        "sigmoid reference": lambda a: sigmoid_focal_loss(X, L, avg_factor=a, impl="reference"),
        "softmax": lambda a: softmax_focal_loss(X, T, avg_factor=a),
        "asl1": lambda a: asl1_loss(X, Y, avg_factor=a),
        "ghmc": lambda a: GHMC()(X, L, avg_factor=a),
        "ghmc reference": lambda a: GHMC(impl="reference")(X, L, avg_factor=a),
        "ghmc softmax": lambda a: GHMC(use_sigmoid=False)(X, T, avg_factor=a),
        "ghmr": lambda a: GHMR()(X, Y, avg_factor=a),
        "weight_reduce_loss": lambda a: weight_reduce_loss(X, avg_factor=a),
    }


BAD_AVG = {"negative": (-5, "-5"), "nan": (NAN, "nan"), "inf": (INF, "inf"),
           "string": ("7", "'7'"), "bool": (True, "True"), "list": ([2.0], "[2.0]"),
           "(2,) tensor": (torch.tensor([2.0, 3.0]), "(2,)"),
           "negative tensor": (torch.tensor(-1.0), "-1.0"),
           "bool tensor": (torch.tensor(True), "bool")}


@pytest.mark.parametrize("entry", list(_entries_with_avg_factor()))
@pytest.mark.parametrize("bad", list(BAD_AVG))
def test_bad_avg_factor_is_a_value_error_on_every_entry(entry, bad):
    value, word = BAD_AVG[bad]
    with pytest.raises(ValueError) as info:
        _entries_with_avg_factor()[entry](value)
    assert "avg_factor" in str(info.value) and word in str(info.value), str(info.value)


@pytest.mark.parametrize("entry", list(_entries_with_avg_factor()))
def test_avg_factor_forms_accepted_as_mmdet(entry):
    # mmdet: sum / (avg_factor + eps) for a number or a tensor; 0 gives sum / eps
    call = _entries_with_avg_factor()[entry]
    want = call(4.0)
    for same in (4, np.float32(4.0), np.int64(4), torch.tensor(4.0), torch.tensor([4.0]),
                 torch.tensor(4)):
        got = call(same)
        assert got.shape == want.shape and got.dtype == want.dtype
        torch.testing.assert_close(got, want)
    eps = torch.finfo(torch.float32).eps
    torch.testing.assert_close(call(0.0), want * (4.0 + eps) / eps)


MORE_CASES = {
    # non-finite settings
    "gamma inf": (lambda: sigmoid_focal_loss(X, Y, gamma=INF), ["gamma", "inf"]),
    "gamma nan": (lambda: softmax_focal_loss(X, T, gamma=NAN), ["gamma", "nan"]),
    "mu inf ghmr": (lambda: GHMR(mu=INF), ["mu", "inf"]),
    "mu inf asl1": (lambda: asl1_loss(X, Y, mu=INF), ["mu", "inf"]),
    "loss_weight inf ghmc": (lambda: GHMC(loss_weight=INF), ["loss_weight", "inf"]),
    "loss_weight nan ghmr": (lambda: GHMR(loss_weight=NAN), ["loss_weight", "nan"]),
    "alpha nan": (lambda: sigmoid_focal_loss(X, Y, alpha=NAN), ["alpha", "nan"]),
    # mistyped flags and choices
    "use_sigmoid 'False'": (lambda: GHMC(use_sigmoid="False"), ["use_sigmoid", "'False'"]),
    "use_sigmoid 0": (lambda: GHMC(use_sigmoid=0), ["use_sigmoid", "0"]),
    "distributed 1": (lambda: GHMC(distributed=1), ["distributed", "1"]),
    "reduction tensor": (lambda: GHMC(reduction=torch.tensor(1)), ["reduction", "tensor"]),
    "bins True": (lambda: GHMC(bins=True), ["bins", "True"]),
    "bins 0-d float tensor": (lambda: GHMC(bins=torch.tensor(2.5)), ["bins", "2.5"]),
    "bins (2,) tensor": (lambda: GHMR(bins=torch.tensor([2, 3])), ["bins", "(2,)"]),
    "gamma requires grad": (lambda: sigmoid_focal_loss(
        X, Y, gamma=torch.tensor(2.0, requires_grad=True)), ["gamma", "requires grad"]),
    "gamma string": (lambda: softmax_focal_loss(X, T, gamma="2"), ["gamma", "'2'"]),
    # wrong-typed indices
    "background_index True": (lambda: softmax_focal_loss(X, T, alpha=0.25, background_index=True),
                              ["background_index", "True"]),
    "background_index str": (lambda: softmax_focal_loss(X, T, alpha=0.25, background_index="2"),
                             ["background_index", "'2'"]),
    "background_index float": (lambda: resolve_alpha(0.25, 3, kind="softmax", background_index=2.0),
                               ["background_index", "2.0"]),
    "ignore_index str": (lambda: softmax_focal_loss(X, T, ignore_index="x"), ["ignore_index", "'x'"]),
    "ignore_index float": (lambda: softmax_focal_loss(X, T, ignore_index=1.5), ["ignore_index", "1.5"]),
    "ghmc ignore_index None": (lambda: GHMC(use_sigmoid=False, ignore_index=None),
                               ["ignore_index", "None"]),
    "num_classes float": (lambda: resolve_alpha(0.5, 3.0), ["num_classes", "3.0"]),
    # class_frequency_alpha counts of the wrong type
    "counts string": (lambda: class_frequency_alpha("abc"), ["counts", "'abc'"]),
    "counts strings": (lambda: class_frequency_alpha(["a", 2]), ["counts", "'a'"]),
    "counts dict": (lambda: class_frequency_alpha({0: 3}), ["counts", "{0: 3}"]),
    "counts bool tensor": (lambda: class_frequency_alpha(torch.ones(3, dtype=torch.bool)),
                           ["counts", "bool"]),
    "counts 2-d": (lambda: class_frequency_alpha([[1, 2]]), ["counts", "(1, 2)"]),
    # weights of the wrong shape: the argument, the expected and the given shape
    "weight_reduce_loss weight": (lambda: weight_reduce_loss(X, torch.ones(4)),
                                  ["weight", "(4, 3)", "(4,)"]),
    "weight_reduce_loss weight bigger": (lambda: weight_reduce_loss(X, torch.ones(2, 4, 3)),
                                         ["weight", "(4, 3)", "(2, 4, 3)"]),
    "ghmc label_weight (4, 2)": (lambda: GHMC()(X, L, torch.ones(4, 2)),
                                 ["label_weight", "(4, 3)", "(4, 2)"]),
    "ghmc label_weight (2,)": (lambda: GHMC()(X, L, torch.ones(2)),
                               ["label_weight", "(4, 3)", "(2,)"]),
    "ghmr label_weight": (lambda: GHMR()(X, Y, torch.ones(4, 2)), ["label_weight", "(4, 2)"]),
    "asl1 weight": (lambda: asl1_loss(X, Y, torch.ones(4, 2)), ["weight", "(4, 3)", "(4, 2)"]),
    "sigmoid weight": (lambda: sigmoid_focal_loss(X, L, torch.ones(2, 3)),
                       ["weight", "(4, 3)", "(2, 3)"]),
    "softmax weight": (lambda: softmax_focal_loss(X, T, torch.ones(5)), ["weight", "(4,)", "(5,)"]),
    "weight list": (lambda: sigmoid_focal_loss(X, L, [1.0] * 4), ["weight", "list"]),
}


@pytest.mark.parametrize("name", list(MORE_CASES))
def test_audit_bad_input_raises_value_error(name):
    fn, words = MORE_CASES[name]
    with pytest.raises(ValueError) as info:
        fn()
    msg = str(info.value)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


# ---- valid values that configs compute: numpy scalars and 0-d tensors

SCALARS = {"float": lambda v: v, "np.float32": np.float32, "np.float64": np.float64,
           "0-d tensor": torch.tensor, "0-d fp64 tensor": lambda v: torch.tensor(v, dtype=torch.float64)}


@pytest.mark.parametrize("kind", list(SCALARS))
@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_numpy_and_0d_scalars_accepted_for_gamma_and_alpha(kind, impl):
    f = SCALARS[kind]
    for call in (lambda g, a: sigmoid_focal_loss(X, L, gamma=g, alpha=a, impl=impl),
                 lambda g, a: sigmoid_focal_loss(X, Y, gamma=g, alpha=a, impl=impl),
                 lambda g, a: softmax_focal_loss(X, T, gamma=g, alpha=a, background_index=2,
                                                 impl=impl)):
        torch.testing.assert_close(call(f(1.5), f(0.25)), call(1.5, 0.25))


@pytest.mark.parametrize("make", [int, np.int64, np.int32, torch.tensor])
def test_numpy_and_0d_ints_accepted_for_bins_and_indices(make):
    torch.testing.assert_close(GHMC(bins=make(7))(X, L), GHMC(bins=7)(X, L))
    torch.testing.assert_close(GHMR(bins=make(7), mu=np.float32(0.5))(X, Y), GHMR(bins=7, mu=0.5)(X, Y))
    torch.testing.assert_close(
        softmax_focal_loss(X, T, alpha=0.25, background_index=make(2), ignore_index=make(1)),
        softmax_focal_loss(X, T, alpha=0.25, background_index=2, ignore_index=1))


def test_learnable_0d_alpha_keeps_its_graph():
    a = torch.tensor(0.25, requires_grad=True)
    out = sigmoid_focal_loss(X, Y, alpha=a)
    torch.testing.assert_close(out, sigmoid_focal_loss(X, Y, alpha=0.25))
    out.backward()
    assert a.grad is not None and torch.isfinite(a.grad)
    b = torch.tensor(0.25, requires_grad=True)
    s = softmax_focal_loss(X, T, alpha=b, background_index=2)
    torch.testing.assert_close(s, softmax_focal_loss(X, T, alpha=0.25, background_index=2))


def test_numpy_bool_flag_accepted():
    assert GHMC(use_sigmoid=np.bool_(False)).use_sigmoid is False


# ---- empty class dimension: the same answer on every path, no raw torch error

@pytest.mark.parametrize("impl", ["auto", "reference"])
def test_zero_class_pred_on_every_path(impl):
    x = torch.zeros(4, 0, requires_grad=True)
    lab = torch.zeros(4, dtype=torch.long)          # 0 = background when C = 0
    for out in (sigmoid_focal_loss(x, lab, impl=impl), GHMC(impl=impl)(x, lab),
                sigmoid_focal_loss(x, lab, reduction="sum", impl=impl)):
        assert out.item() == 0.0
        out.backward()
    assert sigmoid_focal_loss(x, lab, reduction="none", impl=impl).shape == (4, 0)
