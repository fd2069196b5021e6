"""The classifier bias prior of a softmax detection head (num_classes + 1 columns)."""
import math

from .checks import check_number

__all__ = ["softmax_prior_bias"]


def softmax_prior_bias(prior_prob: float, num_classes: int):
    """``(class_bias, background_bias)``: the log-probabilities whose softmax gives the
    background ``1 - prior_prob`` and each of the ``num_classes`` classes
    ``prior_prob / num_classes``.

    This is the softmax reading of RetinaNet's prior: an anchor is foreground with
    probability ``prior_prob`` (0.01). A sigmoid head gives each class ``prior_prob``
    instead; with a softmax that would leave the background ``1 - num_classes *
    prior_prob`` (0.2 for COCO's 80 classes), and every background anchor would start with a
    large loss. Both adapters (mmdet's dense heads, detectron2's RetinaNet/FCOS) use this.
    """
    p = check_number("prior_prob", prior_prob, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    return math.log(p / num_classes), math.log1p(-p)
