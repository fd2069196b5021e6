"""Framework-free loss math: pure PyTorch, imports neither mmdet nor detectron2."""
