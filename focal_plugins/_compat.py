"""Keeps the frameworks' released versions importable beside current dependencies.

Imported by the adapters (``focal_plugins.detectron2``, ``focal_plugins.mmdet``) before
they import their framework; the core does not use it.
"""


def restore_pillow_linear() -> bool:
    """Pillow 10 removed ``PIL.Image.LINEAR``, an alias of ``BILINEAR`` that detectron2 0.6
    reads when ``detectron2.data`` is imported (so does mmdet's ``D2Wrapper`` once detectron2
    is installed). Put the alias back where it is missing; True if it was added."""
    try:
        from PIL import Image
    except ImportError:
        return False
    if hasattr(Image, "LINEAR"):
        return False
    Image.LINEAR = Image.BILINEAR
    return True


restore_pillow_linear()
