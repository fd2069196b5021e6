"""tools/install_detectron2.sh applies detectron2 main's Pillow >= 10 fix (Image.LINEAR ->
Image.BILINEAR in detectron2/data/transforms/transform.py) to the sources it lays out:
checked, idempotent, and after it detectron2 imports with a Pillow that has no LINEAR without
any help from the plugin. Runs the script on a new venv (no pip) whose sources are already
laid out, so nothing is downloaded."""
import os
import shutil
import subprocess
import sys

import pytest

from focal_plugins.tests.test_compat import PILLOW_10

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, "tools", "install_detectron2.sh")
UNPATCHED_LINE = ("    def __init__(self, src_rect, output_size, interp=Image.LINEAR, fill=0):\n")


def _installed_detectron2_tree():
    """The folder holding the installed detectron2 package (the laid-out 0.6 sources)."""
    d2 = pytest.importorskip("detectron2")
    return os.path.dirname(os.path.dirname(os.path.abspath(d2.__file__)))


@pytest.fixture
def venv(tmp_path):
    """A venv whose <prefix>/src/pb1-detectron2-0.6 holds a copy of detectron2 0.6's sources
    as the script lays them out, transform.py in its released (unpatched) form."""
    src = _installed_detectron2_tree()
    env = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True,
                   timeout=120)
    d2 = env / "src" / "pb1-detectron2-0.6"
    shutil.copytree(os.path.join(src, "detectron2"), d2 / "detectron2",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    t = d2 / "detectron2" / "data" / "transforms" / "transform.py"
    text = t.read_text()
    if "Image.LINEAR" not in text:  # the installed copy is patched already: undo it here
        fixed = UNPATCHED_LINE.replace("Image.LINEAR", "Image.BILINEAR")
        assert text.count(fixed) == 1, "not detectron2 0.6's transform.py"
        t.write_text(text.replace(fixed, UNPATCHED_LINE))
    assert t.read_text().count("Image.LINEAR") == 1
    return env, d2, t


def _run(env):
    return subprocess.run(["bash", SCRIPT], env=dict(os.environ, PYTHON=str(env / "bin" / "python")),
                          capture_output=True, text=True, timeout=300)


def _purelib(env):
    out = subprocess.run([str(env / "bin" / "python"), "-c",
                          "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.slow
def test_patches_once_then_finds_it_applied_and_detectron2_imports_without_linear(venv):
    env, d2, t = venv
    out = _run(env)
    assert out.returncode == 0, out.stderr
    assert "Image.LINEAR -> Image.BILINEAR" in out.stdout
    text = t.read_text()
    assert "Image.LINEAR" not in text
    assert UNPATCHED_LINE.replace("LINEAR", "BILINEAR") in text
    with open(os.path.join(REPO, "tools", "detectron2_C_standin.py"), "rb") as f:
        assert (d2 / "detectron2" / "_C.py").read_bytes() == f.read()
    with open(os.path.join(_purelib(env), "detectron2-src.pth")) as f:
        assert f.read().strip() == str(d2)

    again = _run(env)  # idempotent: the same bytes, and it says so
    assert again.returncode == 0, again.stderr
    assert "fix is applied" in again.stdout and t.read_text() == text

    # The root fix: the laid-out detectron2 imports with a Pillow that has no LINEAR, and
    # nothing (no focal_plugins) puts the alias back.
    code = (PILLOW_10 + "import detectron2.data.transforms as T\n"
            "assert not hasattr(Image, 'LINEAR')\n"
            "assert T.ExtentTransform((0, 0, 1, 1), (1, 1)).interp == Image.BILINEAR\n"
            "import sys; assert not any(m.startswith('focal_plugins') for m in sys.modules)\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ, PYTHONPATH=str(d2)))
    assert res.stdout.strip() == "ok", res.stderr[-3000:]


@pytest.mark.slow
def test_refuses_a_transform_py_it_does_not_know(venv):
    env, _, t = venv
    t.write_text(t.read_text() + "\nX = Image.LINEAR\n")  # a second use: not 0.6's file
    before = t.read_text()
    out = _run(env)
    assert out.returncode != 0
    assert "transform.py: not the detectron2 0.6 source" in out.stderr
    assert "2 uses of Image.LINEAR" in out.stderr
    assert t.read_text() == before
