"""Name -> network factory, so a checkpoint header can rebuild its own architecture."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lungai import modules
from lungai.errors import CheckpointError

ArchitectureFactory = Callable[..., nn.Module]

_FACTORIES: dict[str, ArchitectureFactory] = {}
_LEGACY_CONFIGS: dict[str, dict] = {}


def register_architecture(
    name: str, legacy_config: dict | None = None
) -> Callable[[ArchitectureFactory], ArchitectureFactory]:
    """Decorator: make ``factory(**config) -> nn.Module`` buildable under ``name``.

    ``legacy_config``: values of options added after checkpoints were written whose defaults differ from what
    those checkpoints were trained with; :func:`stored_config` supplies them where a checkpoint header lacks them.
    """

    def decorate(factory: ArchitectureFactory) -> ArchitectureFactory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"architecture '{name}' is registered twice")
        _FACTORIES[name] = factory
        _LEGACY_CONFIGS[name] = dict(legacy_config or {})
        return factory

    return decorate


def _import_known_modules() -> None:
    modules.available("networks")


def available_architectures() -> list[str]:
    _import_known_modules()
    return sorted(_FACTORIES)


def stored_config(name: str, config: dict) -> dict:
    """The config a checkpoint of ``name`` was trained with: its header ``config`` plus the legacy values of
    options its header predates."""
    if name not in _FACTORIES:
        _import_known_modules()
    return {**_LEGACY_CONFIGS.get(name, {}), **config}


def build_architecture(name: str, config: dict) -> nn.Module:
    """Build the registered network ``name`` with keyword arguments ``config``."""
    if name not in _FACTORIES:
        _import_known_modules()
    if name not in _FACTORIES:
        known = ", ".join(sorted(_FACTORIES)) or "none"
        raise CheckpointError(f"Unknown architecture '{name}' (known: {known}); the checkpoint needs a newer lungai.")
    try:
        return _FACTORIES[name](**config)
    except TypeError as error:
        raise CheckpointError(f"The configuration stored for architecture '{name}' does not fit it: {error}") from error
