"""Model cost as benchmarks and registry entries report it: parameters, forward-pass time, pipeline stages."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

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


STAGE_LISTENERS: list[Callable[[str, float, float, float], None]] = []


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Mark a pipeline stage (read, preprocess, network, postprocess, write) for profilers.

    Costs four clock reads when nobody listens; each listener in :data:`STAGE_LISTENERS` receives
    ``(name, start, end, cpu_seconds)``: ``time.perf_counter`` stamps and the process CPU time spent in between
    (bench/e2e builds its per-stage split from them; on a shared machine CPU time is the steadier figure).
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        ended, cpu = time.perf_counter(), time.process_time() - cpu_started
        for listener in STAGE_LISTENERS:
            listener(name, started, ended, cpu)
