"""Keeps the frameworks' released versions importable beside current dependencies.

Imported by the adapters (``focal_plugins.detectron2``, ``focal_plugins.mmdet``) before
they import their framework; the core does not use it.

detectron2 0.6's ``detectron2/data/transforms/transform.py`` reads ``PIL.Image.LINEAR``,
which Pillow 10 removed. The fix is in detectron2's sources, where detectron2's main branch
has it (``Image.BILINEAR``): ``tools/install_detectron2.sh`` applies it to the sources it
lays out, so detectron2, detectron2's own tools and mmdet (whose ``D2Wrapper`` imports
detectron2) import in any order without this module. The alias below remains only for a
detectron2 0.6 installed some other way, and only helps where the plugin is imported first.
"""


def restore_pillow_linear() -> bool:
    """Put Pillow's removed ``PIL.Image.LINEAR`` alias of ``BILINEAR`` back where it is
    missing (see the module doc); True if it was added."""
    try:
        from PIL import Image
    except ImportError:
        return False
    if hasattr(Image, "LINEAR"):
        return False
    Image.LINEAR = Image.BILINEAR
    return True


restore_pillow_linear()
