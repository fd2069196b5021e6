"""type='GHMC' etc. build the plugin's classes whichever was imported first, the plugin or
mmdet's own modules; mmdet's originals stay reachable as MMDetGHMC / MMDetGHMR. Each order
runs in a fresh interpreter."""
import json
import subprocess
import sys

import pytest

pytest.importorskip("mmdet")

from focal_plugins.mmdet.tests._helpers import REPO, plugin_configs  # noqa: E402

CHECK = r"""
import json
from mmdet.registry import MODELS
out = {}
for name in ('GHMC', 'GHMR', 'SigmoidFocalLoss', 'SoftmaxFocalLoss', 'ASL1Loss',
             'MMDetGHMC', 'MMDetGHMR', 'FocalLoss'):
    cls = type(MODELS.build(dict(type=name)))
    out[name] = cls.__module__ + '.' + cls.__name__
print('RESULT' + json.dumps(out))
"""

ORDERS = {
    "plugin_first": "import focal_plugins.mmdet\nimport mmdet.models\n"
                    "from mmdet.utils import register_all_modules\nregister_all_modules()\n",
    "mmdet_first": "import mmdet.models\nfrom mmdet.utils import register_all_modules\n"
                   "register_all_modules()\nimport focal_plugins.mmdet\n",
    # nothing imported but the plugin: the registry's own lazy import of mmdet.models
    # (its `locations`) runs at the first build, after the plugin registered
    "plugin_only": "import focal_plugins.mmdet\n",
    # the mmdet way: the config's custom_imports loads the plugin
    "config_custom_imports": "from mmengine.config import Config\n"
                             f"Config.fromfile({plugin_configs()[0]!r})\n"
                             "from mmdet.utils import register_all_modules\n"
                             "register_all_modules()\n",
    # the plugin imported twice over (reload): still no duplicate-name crash
    "reload": "import importlib, focal_plugins.mmdet as p\nimport mmdet.models\n"
              "importlib.reload(p)\n",
}


def _run(prelude):
    proc = subprocess.run([sys.executable, "-c", prelude + CHECK], capture_output=True,
                          text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


@pytest.mark.slow
@pytest.mark.parametrize("order", sorted(ORDERS))
def test_import_order(order):
    got = _run(ORDERS[order])
    for name in ("GHMC", "GHMR", "SigmoidFocalLoss", "SoftmaxFocalLoss", "ASL1Loss"):
        assert got[name] == f"focal_plugins.mmdet.losses.{name}", (order, got)
    assert got["MMDetGHMC"] == "mmdet.models.losses.ghm_loss.GHMC"
    assert got["MMDetGHMR"] == "mmdet.models.losses.ghm_loss.GHMR"
    assert got["FocalLoss"].startswith("mmdet.")  # mmdet's other losses untouched


def test_mmdet_registering_ghmc_again_without_force_is_what_we_avoid():
    # the registry refuses a duplicate name unless forced: that is why the plugin imports
    # mmdet.models before registering with force=True (see focal_plugins/mmdet/__init__.py)
    from mmdet.registry import MODELS
    import focal_plugins.mmdet as plugin
    with pytest.raises(KeyError):
        MODELS.register_module(name="GHMC", module=plugin.MMDetGHMC)
    assert MODELS.get("GHMC") is plugin.GHMC
