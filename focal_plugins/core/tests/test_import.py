import subprocess
import sys

import focal_plugins


def test_public_api():
    for name in ("sigmoid_focal_loss", "softmax_focal_loss", "asl1_loss", "GHMC", "GHMR",
                 "resolve_alpha", "class_frequency_alpha", "weight_reduce_loss", "__version__"):
        assert hasattr(focal_plugins, name), name


def test_import_pulls_in_no_framework():
    code = ("import sys, focal_plugins; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'mmdet', 'mmcv', 'mmengine', 'detectron2', 'fvcore', 'torchvision'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

