"""Versioned registry of bundled models: ``Resources/Models/models.json``.

Each entry records what a weights file is, how it was trained and how well it did, so that
``lungai info`` and the Slicer modules can show it and check the file's sha256 before loading.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from lungai.checkpoint import load_model
from lungai.errors import CheckpointError, LungAIError


def resources_dir() -> Path:
    """The extension's ``Resources`` folder (``LUNGAI_RESOURCES`` overrides).

    In the source tree and in a Slicer install, ``Resources`` sits beside the ``lungai`` package.
    """
    override = os.environ.get("LUNGAI_RESOURCES")
    return Path(override) if override else Path(__file__).resolve().parent.parent / "Resources"


def registry_path() -> Path:
    return resources_dir() / "Models" / "models.json"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelEntry:
    id: str
    version: str
    module: str
    architecture: str
    file: str
    sha256: str
    licence: str
    training_data: str
    description: str = ""
    command: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return registry_path().parent / self.file

    @property
    def available(self) -> bool:
        return self.path.is_file() and sha256_of(self.path) == self.sha256


def load_registry() -> list[ModelEntry]:
    path = registry_path()
    if not path.is_file():
        return []
    with open(path) as handle:
        data = json.load(handle)
    return [ModelEntry(**entry) for entry in data.get("models", [])]


def get_model_entry(model_id: str) -> ModelEntry:
    entries = {entry.id: entry for entry in load_registry()}
    if model_id not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise LungAIError(f"No model '{model_id}' in the registry {registry_path()} (registered: {known}).")
    return entries[model_id]


def load_registered_model(model_id: str, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Load a registered model after checking its file exists and its sha256 matches."""
    entry = get_model_entry(model_id)
    if not entry.path.is_file():
        raise CheckpointError(
            f"The weights of '{model_id}' ({entry.path}) are missing; reinstall the extension or retrain: "
            f"{entry.command}"
        )
    if sha256_of(entry.path) != entry.sha256:
        raise CheckpointError(
            f"The weights of '{model_id}' ({entry.path}) do not match the registry's sha256: the file was changed "
            "or damaged."
        )
    return load_model(entry.path, device, expected_model=entry.architecture)


def register_model(entry: dict[str, Any]) -> ModelEntry:
    """Add or replace a registry entry; the sha256 is computed from the weights file."""
    path = registry_path()
    data = json.loads(path.read_text()) if path.is_file() else {"models": []}
    weights = path.parent / entry["file"]
    if not weights.is_file():
        raise LungAIError(f"Cannot register '{entry['id']}': {weights} does not exist.")
    record = ModelEntry(**{**entry, "sha256": sha256_of(weights)})
    models = [m for m in data["models"] if m["id"] != record.id] + [asdict(record)]
    data["models"] = sorted(models, key=lambda m: m["id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return record
