"""Framework-free loss math: pure PyTorch, imports neither mmdet nor detectron2."""
from .alpha import class_frequency_alpha, resolve_alpha
from .focal import sigmoid_focal_loss, softmax_focal_loss
from .ghm import GHMC, GHMR, asl1_loss
from .reduce import weight_reduce_loss

__all__ = [
    "sigmoid_focal_loss", "softmax_focal_loss", "asl1_loss", "GHMC", "GHMR",
    "resolve_alpha", "class_frequency_alpha", "weight_reduce_loss",
]
