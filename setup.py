"""Ship the extension's Resources (bundled models and sample data) inside the package as ``lungai/_resources``,
so a non-editable ``pip install .`` finds them (``lungai.registry.resources_dir``). Everything else is in
pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("Models", "SampleData")


class BuildWithResources(build_py):
    def run(self) -> None:
        super().run()
        source = Path(__file__).resolve().parent / "Resources"
        target = Path(self.build_lib) / "lungai" / "_resources"
        for folder in SHIPPED:
            shutil.copytree(source / folder, target / folder, dirs_exist_ok=True)


setup(cmdclass={"build_py": BuildWithResources})
