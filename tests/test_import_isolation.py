import subprocess
import sys

FRAMEWORKS = ("mmdet", "mmcv", "mmengine", "detectron2")


def test_core_import_pulls_in_no_framework():
    code = (
        "import sys, focal_plugins, focal_plugins.core\n"
        f"hit = sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})\n"
        "print(','.join(hit))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the core imported {out.stdout.strip()}"


def test_frameworks_are_importable_here():
    # The check above means something only where the frameworks could have been imported.
    code = "import mmdet, mmcv, mmengine, detectron2; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
