"""The one checkpoint format: network weights plus a JSON header.

A checkpoint is a ``torch.save`` of ``{"format": "lungai-checkpoint", "format_version": 1,
"header": <JSON text>, "state_dict": {...}}`` and optionally ``"training_state"`` (optimiser,
scheduler, epoch; with weight averaging also the trained weights, whose average is ``state_dict``)
for resuming. The header names the registered architecture and its config, so
:func:`load_model` rebuilds the network before loading weights. Files are always read with
``weights_only=True``: a file that needs arbitrary code to unpickle is refused.
"""

from __future__ import annotations

import datetime
import json
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import lungai
from lungai.architectures import build_architecture, stored_config
from lungai.errors import CheckpointError

FORMAT = "lungai-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    header: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    training_state: dict[str, Any] | None = None


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DistributedDataParallel (or DataParallel) wrapper."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    model_name: str,
    config: dict[str, Any],
    version: str = "1",
    training_data: str = "",
    metrics: dict[str, float] | None = None,
    extra: dict[str, Any] | None = None,
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model``'s weights with a header; written to a temporary file, then renamed."""
    header = {
        "model_name": model_name,
        "config": config,
        "version": str(version),
        "training_data": training_data,
        "metrics": metrics or {},
        "extra": extra or {},
        "lungai_version": lungai.__version__,
        "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "header": json.dumps(header, sort_keys=True),
        "state_dict": {key: value.detach().cpu() for key, value in unwrap(model).state_dict().items()},
    }
    if training_state is not None:
        payload["training_state"] = training_state
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    torch.save(payload, temporary)
    os.replace(temporary, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and check a checkpoint without building a network."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder; give a checkpoint file (.pt) written by a lungai train command.")
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist; check the path or the model registry.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} holds objects other than weights and is refused (lungai loads weights only); give a "
            "checkpoint written by a lungai train command."
        ) from error
    except Exception as error:  # torch raises many types for foreign files; their advice does not apply here
        raise CheckpointError(
            f"{path} is not a lungai checkpoint (corrupt, truncated or another kind of file); give a .pt file "
            "written by a lungai train command, or a registered model with --model."
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a lungai checkpoint (no '{FORMAT}' marker).")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {payload.get('format_version')}; "
            f"this lungai reads version {FORMAT_VERSION}."
        )
    try:
        header = json.loads(payload["header"])
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path} has a damaged header: {error}") from error
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f"{path} has no valid weights.")
    return Checkpoint(header, state_dict, payload.get("training_state"))


def model_from_checkpoint(
    checkpoint: Checkpoint, source: str = "checkpoint", expected_model: str | None = None
) -> nn.Module:
    """Build the header's architecture and load the weights strictly."""
    name = checkpoint.header.get("model_name", "")
    if expected_model is not None and name != expected_model:
        raise CheckpointError(f"{source} holds a '{name}' model, but a '{expected_model}' model is needed here.")
    model = build_architecture(name, stored_config(name, checkpoint.header.get("config", {})))
    try:
        model.load_state_dict(checkpoint.state_dict, strict=True)
    except RuntimeError as error:
        detail = str(error).strip().splitlines()[0]
        raise CheckpointError(f"{source}: the weights do not match architecture '{name}': {detail}") from error
    return model


def load_model(
    path: str | Path, device: str | torch.device = "cpu", expected_model: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored in ``path`` on ``device`` in eval mode; returns (model, header)."""
    checkpoint = load_checkpoint(path)
    model = model_from_checkpoint(checkpoint, str(path), expected_model)
    return model.to(device).eval(), checkpoint.header


def write_weights_only(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write ``checkpoint`` without its training state (what a registry keeps)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "header": json.dumps(checkpoint.header, sort_keys=True),
        "state_dict": checkpoint.state_dict,
    }
    torch.save(payload, path)
    return Path(path)
