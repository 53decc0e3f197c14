"""A CHS-Net checkpoint from two trained stages.

A CHS-Net checkpoint (architecture ``chsnet``) holds both stages; its header's ``extra`` records
``input_size``, the square grid of the infection stage, ``lung_input_size``, the grid of the lung
stage (the same as ``input_size`` when absent), and what the training held out (loaded by
:func:`lungai.covid.pipeline.load`).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from lungai.checkpoint import save_checkpoint
from lungai.covid.raiunet import CHSNet
from lungai.ensemble import ProbabilityMean


def assemble_chsnet(
    lung: nn.Module, lung_config: dict, infection: nn.Module, infection_config: dict, lung_input: str
) -> tuple[CHSNet, dict]:
    """A :class:`CHSNet` holding two trained stages, and its architecture config.

    ``infection`` is one RAIU-Net of ``infection_config`` or a :class:`ProbabilityMean` of several.
    """
    config = {
        "lung": {k: v for k, v in lung_config.items() if k != "in_channels"},
        "infection": {k: v for k, v in infection_config.items() if k != "in_channels"},
        "lung_input": lung_input,
    }
    if isinstance(infection, ProbabilityMean):
        config["infection_members"] = len(infection.members)
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
