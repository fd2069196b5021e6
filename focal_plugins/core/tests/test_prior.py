"""softmax_prior_bias: the softmax of the biases is background 1 - p, each class p / C."""
import math

import pytest
import torch

from focal_plugins.core.prior import softmax_prior_bias


@pytest.mark.parametrize("p,c", [(0.01, 80), (0.01, 8), (0.5, 1), (0.2, 3)])
def test_softmax_of_the_biases_is_the_prior(p, c):
    cls_bias, bg_bias = softmax_prior_bias(p, c)
    probs = torch.tensor([cls_bias] * c + [bg_bias], dtype=torch.float64).softmax(0)
    torch.testing.assert_close(probs[-1].item(), 1 - p)
    torch.testing.assert_close(probs[:-1], torch.full((c,), p / c, dtype=torch.float64))
    assert math.isclose(bg_bias - cls_bias, math.log((1 - p) * c / p))


@pytest.mark.parametrize("p,c,name", [(0.0, 80, "prior_prob"), (1.0, 80, "prior_prob"),
                                      (float("nan"), 80, "prior_prob"), ("0.01", 80, "prior_prob"),
                                      (0.01, 0, "num_classes"), (0.01, 2.0, "num_classes"),
                                      (0.01, True, "num_classes")])
def test_bad_arguments_name_the_argument(p, c, name):
    with pytest.raises(ValueError, match=name):
        softmax_prior_bias(p, c)
