"""The one list of module packages. Everything that iterates over modules derives from :data:`MODULES`.

Adding a fifth module: add its package name here and give ``lungai/<name>/__init__.py`` a
``DESCRIPTOR`` (see :mod:`lungai.contract` and ARCHITECTURE.md). The command line, the demo, the
architecture registry and the contract tests find it from this list.
"""

from __future__ import annotations

import importlib

from lungai.contract import ModuleDescriptor
from lungai.plugins import import_available

MODULES = ("ugsnet", "covid", "nlb", "al")


def submodules(part: str) -> list[str]:
    """``lungai.<module>.<part>`` for every module, in :data:`MODULES` order."""
    return [f"lungai.{name}.{part}" for name in MODULES]


def available(part: str) -> list:
    """The imported ``lungai.<module>.<part>`` of every module that has one."""
    return import_available(submodules(part))


def descriptor(name: str) -> ModuleDescriptor:
    """The descriptor of module ``name`` (light: importing a module package loads no torch)."""
    if name not in MODULES:
        raise KeyError(f"unknown module {name!r}; modules: {', '.join(MODULES)}")
    return importlib.import_module(f"lungai.{name}").DESCRIPTOR


def descriptors() -> list[ModuleDescriptor]:
    return [descriptor(name) for name in MODULES]


def pipeline(name: str):
    """The contract module ``lungai.<name>.pipeline`` (imports torch)."""
    return importlib.import_module(f"lungai.{name}.pipeline")


def module_for_architecture(architecture: str) -> ModuleDescriptor | None:
    """The descriptor whose module builds ``architecture`` (None when no module does)."""
    return next((d for d in descriptors() if architecture in d.architectures), None)
