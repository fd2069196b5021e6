"""focal_plugins._compat: detectron2 0.6 imports with a Pillow that lacks Image.LINEAR."""
import subprocess
import sys

import pytest
from PIL import Image

from focal_plugins import _compat

# Pillow >= 10, here whatever Pillow is installed: no Image.LINEAR (9.x serves it, deprecated,
# from the module's __getattr__).
PILLOW_10 = """
from PIL import Image
vars(Image).pop("LINEAR", None)
_served = getattr(Image, "__getattr__", None)
def _getattr(name):
    if name == "LINEAR" or _served is None:
        raise AttributeError(name)
    return _served(name)
Image.__getattr__ = _getattr
"""


def test_alias_added_only_where_missing():
    linear = getattr(Image, "LINEAR", None)
    served = vars(Image).get("__getattr__")
    try:
        exec(PILLOW_10, {})
        assert not hasattr(Image, "LINEAR")
        assert _compat.restore_pillow_linear()
        assert Image.LINEAR == Image.BILINEAR
        assert not _compat.restore_pillow_linear()  # present now: nothing changes
    finally:
        vars(Image).pop("LINEAR", None)
        if served is not None:
            Image.__getattr__ = served
        if linear is not None and not hasattr(Image, "LINEAR"):
            Image.LINEAR = linear


@pytest.mark.parametrize("adapter", ["detectron2", "mmdet"])
def test_adapters_import_without_pillow_linear(adapter):
    """As with Pillow >= 10: LINEAR removed before anything imports detectron2; importing
    the adapter must work (mmdet's D2Wrapper imports detectron2 where it is installed)."""
    pytest.importorskip(adapter)
    pytest.importorskip("detectron2")
    code = (PILLOW_10 + "assert not hasattr(Image, 'LINEAR')\n"
            f"import focal_plugins.{adapter}\n"
            "import detectron2.data.transforms\n"
            "assert Image.LINEAR == Image.BILINEAR\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.stdout.strip() == "ok", out.stderr[-3000:]


def _installed_transform_py():
    import importlib.util
    import os

    spec = importlib.util.find_spec("detectron2")
    path = os.path.join(os.path.dirname(spec.origin), "data", "transforms", "transform.py")
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_without_the_shim_detectron2_fails_there_unless_its_sources_are_fixed():
    """Unfixed detectron2 0.6 sources: the failure the shim prevents, so the test above means
    something. Sources laid out by tools/install_detectron2.sh carry detectron2 main's fix
    (Image.BILINEAR) and import without the shim (tests/test_install_detectron2.py)."""
    pytest.importorskip("detectron2")
    code = PILLOW_10 + "import detectron2.data.transforms\nprint('ok')\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    if "Image.LINEAR" in _installed_transform_py():
        assert out.returncode != 0 and "LINEAR" in out.stderr
    else:
        assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
