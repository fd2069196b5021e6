"""Build hook: ships the repository's configs/ inside the package, as
``focal_plugins/.mim/configs`` (the folder OpenMMLab packages such as mmdet use), so a pip
install has them; ``focal_plugins.configs`` finds them there. Everything else is in
pyproject.toml."""
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildPyWithConfigs(build_py):
    def run(self):
        super().run()
        if self.editable_mode:
            return  # an editable install reads configs/ from the checkout itself
        dst = os.path.join(self.build_lib, "focal_plugins", ".mim", "configs")
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(os.path.join(HERE, "configs"), dst,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithConfigs})
