"""The bundled CHS-Net and how a checkpoint becomes a :class:`Cascade`.

A CHS-Net checkpoint (architecture ``chsnet``) holds both stages; its header's ``extra`` records
``input_size``, the square grid of the infection stage, and ``lung_input_size``, the grid of the
lung stage (the same as ``input_size`` when absent), plus what the training held out.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from lungai.checkpoint import load_model, save_checkpoint
from lungai.covid.cascade import Cascade
from lungai.covid.raiunet import CHSNet
from lungai.device import resolve_device
from lungai.errors import CheckpointError
from lungai.registry import load_registered_model

MODEL_ID = "chsnet-covid"


def load_cascade(weights: str | Path | None = None, device: str = "auto", tta: bool = False) -> tuple[Cascade, dict]:
    """The cascade of ``weights`` (a ``chsnet`` checkpoint) or of the bundled model, and its header.

    ``tta`` averages the infection probability over left-right flips (:class:`Cascade`)."""
    torch_device = resolve_device(device)
    if weights is None:
        model, header = load_registered_model(MODEL_ID, str(torch_device))
    else:
        model, header = load_model(weights, str(torch_device), expected_model="chsnet")
    size = header.get("extra", {}).get("input_size")
    if not isinstance(size, int):
        raise CheckpointError(f"The CHS-Net checkpoint {weights or MODEL_ID} does not record its input_size.")
    lung_size = header.get("extra", {}).get("lung_input_size", size)
    cascade = Cascade.from_chsnet(model, size, torch_device, lung_size=int(lung_size))
    cascade.tta = tta
    return cascade, header


def assemble_chsnet(
    lung: nn.Module, lung_config: dict, infection: nn.Module, infection_config: dict, lung_input: str
) -> tuple[CHSNet, dict]:
    """A :class:`CHSNet` holding two trained stages, and its architecture config."""
    config = {
        "lung": {k: v for k, v in lung_config.items() if k != "in_channels"},
        "infection": {k: v for k, v in infection_config.items() if k != "in_channels"},
        "lung_input": lung_input,
    }
    model = CHSNet(**config)
    model.lung.load_state_dict(lung.state_dict())
    model.infection.load_state_dict(infection.state_dict())
    return model.eval(), config


def save_chsnet(
    path: str | Path,
    model: CHSNet,
    config: dict,
    *,
    input_size: int,
    training_data: str,
    lung_input_size: int | None = None,
    metrics: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a ``chsnet`` checkpoint; ``extra`` adds header fields (recipe, held-out slice names)."""
    return save_checkpoint(
        path,
        model,
        model_name="chsnet",
        config=config,
        training_data=training_data,
        metrics=metrics,
        extra={
            **(extra or {}),
            "input_size": int(input_size),
            "lung_input_size": int(lung_input_size or input_size),
        },
    )
