"""Every tool the configs, docstrings and the README tell a user to run is a module of the
package, run as ``python -m focal_plugins.tools.NAME`` (so a pip install has it), and nothing
still sends users to the checkout's old ``tools/NAME.py``."""
import os
import re
import subprocess
import sys

import pytest

import focal_plugins
from focal_plugins.tools import TOOLS

PKG = os.path.dirname(os.path.abspath(focal_plugins.__file__))
REPO = os.path.dirname(PKG)


@pytest.mark.parametrize("name", TOOLS)
def test_runs_as_a_module_from_anywhere(name, tmp_path):
    """From a folder that is not the checkout, as a pip user runs it."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(PKG), MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, "-m", f"focal_plugins.tools.{name}", "--help"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("usage:") and f"focal_plugins.tools.{name}" in out.stdout


def test_each_tool_module_exists_and_no_other():
    found = sorted(f[:-3] for f in os.listdir(os.path.join(PKG, "tools"))
                   if f.endswith(".py") and not f.startswith("_") and f != "data_root.py")
    assert found == sorted(TOOLS)


def _texts():
    """The files that tell users what to run: configs, package docstrings, README, docs."""
    roots = [os.path.join(REPO, "configs"), PKG, os.path.join(REPO, "docs"),
             os.path.join(REPO, "tools")]
    files = [os.path.join(REPO, "README.md"), os.path.join(REPO, "Makefile")]
    for root in roots:
        for d, dirs, names in os.walk(root):
            dirs[:] = [x for x in dirs if x != "__pycache__"]
            files += [os.path.join(d, n) for n in names if n.endswith((".py", ".yaml", ".md", ".sh"))]
    return [f for f in files if os.path.isfile(f)]


def test_no_reference_to_the_old_script_paths():
    if not os.path.isfile(os.path.join(REPO, "README.md")):
        pytest.skip("not a checkout")
    old = re.compile(r"tools/(%s)\.py" % "|".join(TOOLS))
    hits = []
    for f in _texts():
        with open(f, encoding="utf-8") as fh:
            for i, line in enumerate(fh, 1):
                if old.search(line):
                    hits.append(f"{os.path.relpath(f, REPO)}:{i}: {line.strip()}")
    assert not hits, "\n".join(hits)
    for name in TOOLS:
        assert not os.path.exists(os.path.join(REPO, "tools", f"{name}.py")), name


def test_importing_the_tools_pulls_in_no_framework():
    code = ("import sys\n"
            + "".join(f"import focal_plugins.tools.{n}\n" for n in TOOLS)
            + "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('mmdet', 'mmcv', 'mmengine', 'detectron2', 'matplotlib')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONPATH=os.path.dirname(PKG)))
    assert out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]
