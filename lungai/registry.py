"""Model registries: the bundled one (read-only) and the user's, listed together.

Each entry records what a weights file is, how it was trained and how well it did, so that
``lungai info`` and the Slicer modules can show it and check the file's sha256 before loading.

- bundled: ``Resources/Models/models.json`` beside the weights shipped with the extension; never
  written by a running program (an update replaces it);
- user: ``models.json`` in the user's data folder (``LUNGAI_USER_MODELS`` overrides; see
  :func:`user_models_dir`), where :func:`publish` puts retrained and newly trained models. To add a
  bundled model, a developer publishes with ``LUNGAI_USER_MODELS=Resources/Models``.

Entries name their weights by file name only (relative to their registry) and carry no local paths.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lungai.contract import LoadedModel
from lungai.errors import CheckpointError, LungAIError

if TYPE_CHECKING:
    from torch import nn

REGISTRY_FILE = "models.json"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# an absolute path on this machine: POSIX after a separator, or a Windows drive
_START, _REST = r"(?:^|[\s=:'\"(,])", r"[^\s'\",)]*"
_ROOTS = "home|Users|root|mnt|media|private|var|work|opt|srv|tmp"
_LOCAL_PATH = re.compile(rf"{_START}(/(?:{_ROOTS})/{_REST}|[A-Za-z]:\\{_REST})")
_HOME_PATH = re.compile(rf"{_START}(/(?:home|Users|root)/{_REST}|[A-Za-z]:\\Users\\{_REST}|~/{_REST})")


def resources_dir() -> Path:
    """The extension's ``Resources`` folder (``LUNGAI_RESOURCES`` overrides).

    In the source tree and in a Slicer install, ``Resources`` sits beside the ``lungai`` package; a
    ``pip install`` ships a copy inside the package as ``lungai/_resources``.
    """
    override = os.environ.get("LUNGAI_RESOURCES")
    if override:
        return Path(override)
    package = Path(__file__).resolve().parent
    installed = package / "_resources"
    return installed if installed.is_dir() else package.parent / "Resources"


def bundled_models_dir() -> Path:
    return resources_dir() / "Models"


def registry_path() -> Path:
    """The bundled registry file."""
    return bundled_models_dir() / REGISTRY_FILE


def user_models_dir() -> Path:
    """The user's model folder: ``LUNGAI_USER_MODELS``, else the platform's per-user data folder + lungai/models."""
    override = os.environ.get("LUNGAI_USER_MODELS")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("APPDATA", Path.home() / "AppData" / "Roaming"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "lungai" / "models"


def user_registry_path() -> Path:
    return user_models_dir() / REGISTRY_FILE


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
    folder: Path = field(default_factory=bundled_models_dir, repr=False, compare=False)

    @property
    def path(self) -> Path:
        return self.folder / self.file

    @property
    def bundled(self) -> bool:
        return self.folder.resolve() == bundled_models_dir().resolve()

    @property
    def available(self) -> bool:
        return self.path.is_file() and sha256_of(self.path) == self.sha256

    def record(self) -> dict[str, Any]:
        """The JSON form (without the folder, which is where the registry file lies)."""
        data = asdict(self)
        data.pop("folder")
        return data


def _read(folder: Path) -> list[ModelEntry]:
    path = folder / REGISTRY_FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        return [ModelEntry(**entry, folder=folder) for entry in data.get("models", [])]
    except (json.JSONDecodeError, TypeError, AttributeError) as error:
        raise LungAIError(f"The model registry {path} is damaged ({error}); restore or delete it.") from error


def registry_folders() -> list[Path]:
    """Bundled first, then the user's (once, when both are the same folder)."""
    bundled, user = bundled_models_dir(), user_models_dir()
    return [bundled] if user.resolve() == bundled.resolve() else [bundled, user]


def load_registry() -> list[ModelEntry]:
    """Every registered model, bundled ones first."""
    return [entry for folder in registry_folders() for entry in _read(folder)]


def get_model_entry(model_id: str) -> ModelEntry:
    entries = {entry.id: entry for entry in reversed(load_registry())}  # a bundled id wins
    if model_id not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise LungAIError(f"No model '{model_id}' is registered (registered: {known}); see 'lungai info'.")
    return entries[model_id]


def load_registered_model(model_id: str, device: Any = "cpu") -> tuple[nn.Module, dict[str, Any]]:
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
    from lungai.checkpoint import load_model  # torch only when weights are read: Slicer lists models without it

    return load_model(entry.path, device, expected_model=entry.architecture)


def _refuse_local_paths(texts: dict[str, Any]) -> None:
    for name, value in texts.items():
        text = json.dumps(value) if not isinstance(value, str) else value
        pattern = _HOME_PATH if name == "command" else _LOCAL_PATH
        found = pattern.search(text)
        if found:
            raise LungAIError(
                f"The {name} of the model names a path on this machine ({found.group(1)}); describe files by "
                "their data set or file name so the entry means the same elsewhere, then publish again."
            )


def publish(
    weights: str | Path,
    model_id: str,
    *,
    module: str,
    description: str = "",
    licence: str = "",
    command: str = "",
    metrics: dict[str, Any] | None = None,
    timings: dict[str, Any] | None = None,
    training_data: str | None = None,
    version: str | None = None,
) -> ModelEntry:
    """The one way to register a model: copy ``weights`` into the user registry as ``<model_id>.pt`` and add
    (or replace) its entry, with the sha256 computed from the copy.

    ``module`` is the Slicer module name (a :class:`lungai.contract.ModuleDescriptor`'s ``slicer_module``).
    The architecture, version and training data come from the checkpoint header unless given. Refused: an
    id that is not a plain name, an id of a bundled model (when publishing elsewhere), local paths in the
    entry or the header; a checkpoint's optimiser state is dropped (weights and header only).
    """
    if not _ID.match(model_id):
        raise LungAIError(f"'{model_id}' is not a usable model id: use letters, digits, '.', '_' and '-'.")
    folder = user_models_dir()
    bundled = folder.resolve() == bundled_models_dir().resolve()
    if not bundled and any(e.id == model_id for e in _read(bundled_models_dir())):
        raise LungAIError(f"'{model_id}' is a bundled model; publish under another id.")
    from lungai.checkpoint import load_checkpoint, load_model, write_weights_only

    checkpoint = load_checkpoint(weights)
    load_model(weights)  # the weights must rebuild their architecture
    header = checkpoint.header
    entry = ModelEntry(
        id=model_id,
        version=str(version or header.get("version", "1")),
        module=module,
        architecture=str(header.get("model_name", "")),
        file=f"{model_id}.pt",
        sha256="",
        licence=licence,
        training_data=training_data if training_data is not None else str(header.get("training_data", "")),
        description=description,
        command=command,
        metrics=metrics or {},
        timings=timings or {},
        folder=folder,
    )
    _refuse_local_paths(
        {
            "training data": entry.training_data,
            "description": entry.description,
            "command": entry.command,
            "metrics": entry.metrics,
            "checkpoint header": {k: header.get(k) for k in ("training_data", "extra", "metrics")},
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / entry.file
    if Path(weights).resolve() != target.resolve():
        staged = target.with_name(f".{target.name}.partial")
        if checkpoint.training_state is None:
            shutil.copyfile(weights, staged)
        else:
            write_weights_only(checkpoint, staged)
        os.replace(staged, target)
    entry.sha256 = sha256_of(target)
    records = [e.record() for e in _read(folder) if e.id != model_id] + [entry.record()]
    handle, name = tempfile.mkstemp(prefix=".models.", suffix=".json", dir=folder)
    with os.fdopen(handle, "w") as stream:
        stream.write(json.dumps({"models": sorted(records, key=lambda m: m["id"])}, indent=2) + "\n")
    os.replace(name, folder / REGISTRY_FILE)
    return entry


def next_version_id(base_id: str) -> tuple[str, int]:
    """``<base_id>-v<N>`` with the next free N after the base's version (for retrained models)."""
    try:
        version = int(str(get_model_entry(base_id).version).split(".")[0])
    except (LungAIError, ValueError):
        version = 1
    taken = {e.id for e in load_registry()}
    version += 1
    while f"{base_id}-v{version}" in taken:
        version += 1
    return f"{base_id}-v{version}", version


def load_for_module(descriptor, weights: str | Path | None = None, model_id: str | None = None, device: Any = "auto"):
    """The contract's ``load`` for any module: a weights file, a registered id, or the module's default model.

    The device is resolved here, once (``"auto"``: CUDA, then MPS, then CPU), and returned with the model.
    A file or entry holding another module's architecture is refused.
    """
    if weights and model_id:
        raise LungAIError("Give either weights (--weights FILE) or a registered model (--model ID), not both.")
    from lungai.checkpoint import load_model
    from lungai.device import resolve_device

    torch_device = resolve_device(device) if not hasattr(device, "type") else device
    if weights:
        model, header = load_model(weights, torch_device)
        source = str(weights)
    else:
        source = model_id or descriptor.default_model_id
        model, header = load_registered_model(source, torch_device)
    if header.get("model_name") not in descriptor.architectures:
        raise CheckpointError(
            f"{source} holds a '{header.get('model_name')}' model, but {descriptor.title.split(':')[0]} needs one of: "
            f"{', '.join(descriptor.architectures)}."
        )
    return LoadedModel(model, header, torch_device, source)
