"""Module packages (``lungai.ugsnet``, ``lungai.covid``, ...) plug into the core by name.

The core lists the module paths it knows; a module that is not installed yet is skipped, but an
import error inside an existing module is raised.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(name: str) -> ModuleType | None:
    """Import ``name``; ``None`` when that module (or its package) does not exist."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            return None
        raise


def import_available(names: list[str]) -> list[ModuleType]:
    return [module for module in (import_optional(name) for name in names) if module is not None]
