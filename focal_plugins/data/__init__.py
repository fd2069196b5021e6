"""Embedded datasets (framework-free: numpy, Pillow, json).

``focal_plugins.data.synthetic`` writes the demo's COCO-format dataset; run it as
``python -m focal_plugins.data.synthetic --out DIR --seed 0``.
"""
