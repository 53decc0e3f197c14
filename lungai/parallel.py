"""Inference over independent batches on every CPU core: one batch per Python thread, each op on one thread.

PyTorch's intra-op threads barely speed up the small 2-D convolutions of our networks: a CHS-Net infection network
on 4 slices of 128 x 128 takes 80 ms a slice on one thread and 74 ms on two (the e2e benchmark's 2-core machine).
Eager ops release the GIL while they compute, so running independent batches in as many Python threads as torch
was given intra-op threads, with each op on one thread meanwhile, uses the cores instead: 1.85x on 2 cores for that
network. Each batch is computed exactly as one thread computes it, so the results do not depend on the workers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

from lungai.progress import CancelToken, check_cancel

Item = TypeVar("Item")
Result = TypeVar("Result")


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Torch's intra-op thread count set to ``count`` inside the block and given back after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cpu_workers(device: torch.device) -> int:
    """Batches to run at once: torch's intra-op thread count on the CPU (the user's thread budget), else 1."""
    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


def map_in_threads(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int,
    cancel: CancelToken | None = None,
) -> Iterator[Result]:
    """``function(item)`` for each item, yielded in order, up to ``workers`` computing at once.

    With more than one worker, torch runs each op on one thread until the iterator is exhausted or closed, then gets
    its thread count back. ``cancel`` is checked before each item starts; items already started finish first.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            check_cancel(cancel)
            yield function(item)
        return
    with torch_threads(1), ThreadPoolExecutor(workers, thread_name_prefix="lungai-batch") as pool:
        pending: deque[Future] = deque()
        for item in items:
            check_cancel(cancel)
            pending.append(pool.submit(function, item))
            if len(pending) == workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
