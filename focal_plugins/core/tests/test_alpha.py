import pytest
import torch
import torch.nn.functional as F
import torchvision.ops

from focal_plugins import class_frequency_alpha, resolve_alpha, sigmoid_focal_loss, softmax_focal_loss


def test_resolve_sigmoid_variants():
    ones = torch.ones(3)
    p, n = resolve_alpha(None, 3)
    assert torch.equal(p, ones) and torch.equal(n, ones)
    p, n = resolve_alpha(0.25, 3)
    assert torch.equal(p, ones * 0.25) and torch.equal(n, ones * 0.75)
    p, n = resolve_alpha(0.25, 3, alpha_mode="uniform")
    assert torch.equal(p, ones * 0.25) and torch.equal(n, ones * 0.25)
    p, n = resolve_alpha([0.1, 0.5, 1.0], 3)
    assert torch.allclose(p, torch.tensor([0.1, 0.5, 1.0])) and torch.allclose(n, torch.tensor([0.9, 0.5, 0.0]))
    p, n = resolve_alpha(torch.tensor([2.0, 0.5, 1.0]), 3, alpha_mode="uniform")
    assert torch.equal(p, torch.tensor([2.0, 0.5, 1.0])) and torch.equal(p, n)


def test_resolve_softmax_variants():
    assert torch.equal(resolve_alpha(None, 3, kind="softmax"), torch.ones(3))
    assert torch.equal(resolve_alpha(0.25, 4, kind="softmax", background_index=3),
                       torch.tensor([0.25, 0.25, 0.25, 0.75]))
    assert torch.equal(resolve_alpha(0.25, 3, kind="softmax", alpha_mode="uniform"), torch.full((3,), 0.25))
    assert torch.equal(resolve_alpha(0.25, 2, kind="softmax", alpha_mode="binary"), torch.tensor([0.25, 0.75]))
    assert torch.equal(resolve_alpha([3.0, 1.0], 2, kind="softmax"), torch.tensor([3.0, 1.0]))
    assert resolve_alpha(None, 3, kind="softmax", dtype=torch.float64).dtype == torch.float64


def test_uniform_alpha_is_every_term_times_alpha():
    x = torch.randn(20, 4) * 2
    y = (torch.rand_like(x) < 0.3).float()
    ref = 0.25 * torchvision.ops.sigmoid_focal_loss(x, y, alpha=-1, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(x, y, alpha=0.25, alpha_mode="uniform", reduction="none"), ref)


def test_per_class_alpha_sigmoid():
    x = torch.randn(20, 3) * 2
    y = (torch.rand_like(x) < 0.3).float()
    a = [0.1, 0.25, 0.8]
    ours = sigmoid_focal_loss(x, y, alpha=a, reduction="none")
    for c in range(3):  # column c is torchvision with alpha a[c]
        ref = torchvision.ops.sigmoid_focal_loss(x[:, c], y[:, c], alpha=a[c], reduction="none")
        torch.testing.assert_close(ours[:, c], ref)
    w = class_frequency_alpha([10, 100, 1000])
    ours = sigmoid_focal_loss(x, y, alpha=w, alpha_mode="uniform", reduction="none")
    torch.testing.assert_close(ours, w * torchvision.ops.sigmoid_focal_loss(x, y, alpha=-1, reduction="none"))


def test_binary_alpha_softmax():
    x = torch.randn(30, 2)
    t = torch.randint(0, 2, (30,))
    ce = F.cross_entropy(x, t, weight=torch.tensor([0.3, 0.7]), reduction="none")
    torch.testing.assert_close(softmax_focal_loss(x, t, alpha=0.3, alpha_mode="binary", gamma=0.0,
                                                  reduction="none"), ce)


def test_class_frequency_inverse():
    torch.testing.assert_close(class_frequency_alpha([1, 3]), torch.tensor([1.5, 0.5]))
    torch.testing.assert_close(class_frequency_alpha(torch.tensor([5.0, 5.0, 5.0])), torch.ones(3))


def test_class_frequency_effective_number():
    # Cui et al.: E_n = (1 - beta^n) / (1 - beta). beta = 0.5, n = (1, 2): E = (1, 1.5)
    w = class_frequency_alpha([1, 2], method="effective", beta=0.5)
    torch.testing.assert_close(w, torch.tensor([1 / 1, 1 / 1.5]) * 2 / (1 + 1 / 1.5))
    assert w.mean().item() == pytest.approx(1.0)
    # beta -> 1 approaches inverse frequency; beta = 0 gives uniform weights
    torch.testing.assert_close(class_frequency_alpha([10, 1000], method="effective", beta=1 - 1e-9),
                               class_frequency_alpha([10, 1000]), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(class_frequency_alpha([10, 1000], method="effective", beta=0.0), torch.ones(2))
