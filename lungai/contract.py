"""The contract every module package ``lungai/<module>/`` fulfils, and the small types it speaks in.

Each package exports a :class:`ModuleDescriptor` as ``DESCRIPTOR`` in its ``__init__`` and a
``pipeline`` module with the same six functions (checked by ``Testing/test_core_contract.py``)::

    load(weights=None, model_id=None, device="auto") -> LoadedModel
    run(volume, model, *, progress=None, cancel=None, ...) -> <module result>
    write(result, out_dir, overwrite=False) -> list[Path]
    read(out_dir) -> SavedResult
    train(config, *, progress=None, cancel=None) -> TrainOutcome

``weights`` is a checkpoint file, ``model_id`` a registry id; with neither, the module's default
model is loaded. The device is resolved once, in :func:`load`, and travels with the model. The
command line (``cli.py``) only parses arguments into these calls; the Slicer Libs call them too.

This file imports no torch: Slicer reads descriptors at module load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONTRACT_FUNCTIONS = ("load", "run", "write", "read", "train")


@dataclass(frozen=True)
class ModuleDescriptor:
    """What a module is: its names, its default model, the architectures it builds and the files it writes."""

    name: str  # package name under lungai/, also the CLI subcommand
    title: str  # one line for people
    slicer_module: str  # the Slicer module folder (also the registry entries' "module")
    default_model_id: str  # registry id loaded when neither weights nor model id is given
    architectures: tuple[str, ...]  # registered architecture names this module builds
    run_command: str  # the CLI subcommand that runs the pipeline on a volume ("segment", "classify", "score")
    outputs: tuple[str, ...]  # files that ``write`` puts into the output folder (patterns with {name})
    paper: str = ""  # the seed paper it implements


@dataclass
class LoadedModel:
    """A network ready for :func:`run`: the object ``run`` needs, its checkpoint header, device and origin."""

    network: Any  # nn.Module (a Cascade for covid)
    header: dict[str, Any]
    device: Any  # torch.device, resolved once by load()
    source: str  # the registry id or the weights file it came from

    @property
    def architecture(self) -> str:
        return str(self.header.get("model_name", ""))


@dataclass
class SavedResult:
    """What :func:`write` put into a folder, read back: segment masks, tables and extra volumes by name."""

    folder: Path
    masks: dict[str, Any] = field(default_factory=dict)  # segment name -> (z, y, x) bool array
    specs: list[Any] = field(default_factory=list)  # SegmentSpec of each segment, in file order
    tables: dict[str, list[dict]] = field(default_factory=dict)  # file name -> rows (strings)
    volumes: dict[str, Any] = field(default_factory=dict)  # name -> Volume (e.g. entropy maps)
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainOutcome:
    """What :func:`train` produced: the checkpoint, held-out metrics and the registry entry when published."""

    checkpoint: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    registered: Any = None  # lungai.registry.ModelEntry when --register was given


@dataclass
class TrainOptions:
    """Options every module's training shares; each module's train config extends it."""

    out: str = ""  # output folder (or checkpoint file for al train)
    register: str | None = None  # publish the result under this registry id
    command: str = ""  # the command line that trained it, recorded in the registry entry
    device: str = "auto"
    seed: int = 0
    ema: float | None = None  # decay of the exponential moving average of the weights (lungai.training); None = off
