"""Imbalance-aware detection losses for mmdetection 3.x and detectron2.

The top level is the framework-free core (torch only). The framework glue lives in
``focal_plugins.mmdet`` and ``focal_plugins.detectron2`` and is imported only on request.
"""
__version__ = "0.1.0"

from .core import (GHMC, GHMR, asl1_loss, class_frequency_alpha, resolve_alpha,
                   sigmoid_focal_loss, softmax_focal_loss, weight_reduce_loss)

__all__ = [
    "sigmoid_focal_loss", "softmax_focal_loss", "asl1_loss", "GHMC", "GHMR",
    "resolve_alpha", "class_frequency_alpha", "weight_reduce_loss", "__version__",
]
