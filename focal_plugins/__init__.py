"""Imbalance-aware detection losses for mmdetection 3.x and detectron2.

The top level is the framework-free core (torch only). The framework glue lives in
``focal_plugins.mmdet`` and ``focal_plugins.detectron2`` and is imported only on request.
"""
__version__ = "0.1.0"
