"""Framework-free loss math: pure PyTorch, imports neither mmdet nor detectron2.

One module per loss, each opening with its math: ``sigmoid_focal``, ``softmax_focal``,
``ghmc``, ``ghmr`` (GHM-R and Authentic Smooth L1); GHM's binning rule, counts, EMA and
all-reduce in ``density``; input normalisation in ``inputs``, checks in ``checks``,
the final reduction in ``reduce``, alphas in ``alpha``; fast paths in
``focal_plugins.kernels``.
"""
from .alpha import class_frequency_alpha, resolve_alpha
from .ghmc import GHMC
from .ghmr import GHMR, asl1_loss
from .reduce import weight_reduce_loss
from .sigmoid_focal import sigmoid_focal_loss
from .softmax_focal import softmax_focal_loss

__all__ = [
    "sigmoid_focal_loss", "softmax_focal_loss", "asl1_loss", "GHMC", "GHMR",
    "resolve_alpha", "class_frequency_alpha", "weight_reduce_loss",
]
