"""Build hook: ship the top-level `sweeps/` and `search_spaces/` folders inside the package.

They stay at the repository's top level (where users read and edit them); a wheel or a
non-editable install carries a copy under `v1sweep/_bundled/`, where `v1sweep.config.bundled` looks
first. An editable install (`pip install -e .`) needs no copy: the package runs from the checkout
and finds the folders next to it. All other metadata lives in pyproject.toml.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

BUNDLED = ("sweeps", "search_spaces")
HERE = Path(__file__).resolve().parent


class BuildPyWithBundled(build_py):
    """`build_py` that also copies the bundled YAML folders into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "v1sweep" / "_bundled"
        for name in BUNDLED:
            src = HERE / name
            if not src.is_dir():  # building from an sdist without them is a packaging bug
                raise FileNotFoundError(f"{src} is missing: the package would ship without its {name}/")
            shutil.copytree(src, target / name, dirs_exist_ok=True,
                            ignore=lambda _d, files: [f for f in files if f.startswith(".")])


setup(cmdclass={"build_py": BuildPyWithBundled})
