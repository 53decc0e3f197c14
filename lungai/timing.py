"""Model cost as benchmarks and registry entries report it: parameters and forward-pass time."""

from __future__ import annotations

import time

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def forward_times_ms(model: nn.Module, x: torch.Tensor, repeats: int, warmup: int = 2) -> list[float]:
    """Wall time in ms of each of ``repeats`` forward passes of ``x`` after ``warmup`` untimed ones."""
    times = []
    with torch.no_grad():
        for index in range(warmup + repeats):
            started = time.perf_counter()
            model(x)
            if index >= warmup:
                times.append(1000 * (time.perf_counter() - started))
    return times
