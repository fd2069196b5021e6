"""What a pip user gets: the sdist and the wheel built from it (the way pip builds from an
sdist), their contents and metadata, and the shipped configs found in the installed layout.

Built with setuptools' PEP 517 hooks from this environment, without build isolation, so the
test needs no network (tools/check_install.sh does the full, isolated build into a new venv).
"""
import email
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# not part of a checkout's sources: left out of the copy that is built
SKIP_ANYWHERE = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "build", "dist"}
SKIP_TOP = {"work_dirs", "output", "data", ".whl", ".device"}


def _sources(folder):
    return sorted(os.path.relpath(os.path.join(d, f), REPO).replace(os.sep, "/")
                  for d, dirs, files in os.walk(os.path.join(REPO, folder))
                  if "tests" not in os.path.relpath(d, REPO).split(os.sep)
                  and "__pycache__" not in d for f in files)


def _build(hook, src, out):
    code = (f"from setuptools import build_meta as b\n"
            f"print(b.{hook}({out!r}))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=src, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return os.path.join(out, res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build")

    def ignore(folder, names):
        top = os.path.samefile(folder, REPO)
        return [n for n in names if n in SKIP_ANYWHERE or n.endswith(".egg-info")
                or (top and n in SKIP_TOP)]

    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=ignore)
    sdist = _build("build_sdist", str(src), str(tmp / "dist"))
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "unpacked", filter="data")
        top = os.path.commonpath(tar.getnames())
    wheel = _build("build_wheel", str(tmp / "unpacked" / top), str(tmp / "dist"))
    return sdist, wheel, top


def test_sdist_holds_what_a_build_needs_and_no_tests(built):
    sdist, _, top = built
    with tarfile.open(sdist) as tar:
        names = {n[len(top) + 1:] for n in tar.getnames() if tar.getmember(n).isfile()}
    need = {"LICENSE", "pyproject.toml", "setup.py", "docs/pypi.md", "focal_plugins/py.typed"}
    need |= set(_sources("configs")) | {n for n in _sources("focal_plugins") if n.endswith(".py")}
    assert need <= names, sorted(need - names)
    assert not [n for n in names if "tests" in n.split("/") or n.startswith("tests")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_contents(built):
    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    configs = {"focal_plugins/.mim/" + n for n in _sources("configs")}
    assert configs and configs <= names, sorted(configs - names)
    modules = {n for n in _sources("focal_plugins") if n.endswith(".py")}
    assert modules <= names, sorted(modules - names)
    assert "focal_plugins/py.typed" in names
    # the tools the configs and the README tell users to run (python -m focal_plugins.tools.X)
    from focal_plugins.tools import TOOLS

    tools = {f"focal_plugins/tools/{t}.py" for t in TOOLS}
    assert len(tools) == 4 and tools <= names, sorted(tools - names)
    assert "focal_plugins-0.1.0.dist-info/licenses/LICENSE" in names
    assert not [n for n in names if "tests" in n.split("/")]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_metadata(built):
    _, wheel, _ = built
    with zipfile.ZipFile(wheel) as zf:
        meta = email.message_from_string(
            zf.read("focal_plugins-0.1.0.dist-info/METADATA").decode("utf-8"))
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["License"] is None  # the deprecated free-text field
    assert meta["Description-Content-Type"] == "text/markdown"
    with open(os.path.join(REPO, "docs", "pypi.md"), encoding="utf-8") as f:
        assert meta.get_payload().strip() == f.read().strip()
    requires = meta.get_all("Requires-Dist")
    d2 = {r.split(";")[0].strip() for r in requires if 'extra == "detectron2"' in r}
    assert {"tensorboard", "future", "pydot", "black==21.4b2", "fvcore<0.1.6,>=0.1.5"} <= d2
    assert "torch>=2.1" in requires


def test_pypi_description_is_for_a_pip_user():
    with open(os.path.join(REPO, "docs", "pypi.md"), encoding="utf-8") as f:
        text = f.read()
    assert "make " not in text and ".venv" not in text  # checkout-only commands
    assert "pip install" in text and "focal_plugins.configs" in text


def test_installed_layout_finds_its_configs(built, tmp_path):
    """The wheel unpacked as pip installs it: config_dir() is the package's .mim/configs."""
    _, wheel, _ = built
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    code = ("import focal_plugins.configs as c\n"
            "print(c.config_dir())\n"
            "print(len(c.list_configs()))\n"
            "print(c.get_config_file('mmdet/retinanet_r50_fpn_ghm_1x_coco.py'))\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    folder, count, path = res.stdout.split()
    assert folder == str(site / "focal_plugins" / ".mim" / "configs")
    assert int(count) == len([n for n in _sources("configs") if n.endswith((".py", ".yaml"))])
    assert path == os.path.join(folder, "mmdet", "retinanet_r50_fpn_ghm_1x_coco.py")
