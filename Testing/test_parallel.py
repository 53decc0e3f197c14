"""Batches side by side on the CPU (lungai.parallel) and the CHS-Net cascade that runs on it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from lungai.covid.cascade import Cascade
from lungai.covid.raiunet import CHSNet, RAIUNet
from lungai.ensemble import ProbabilityMean
from lungai.parallel import map_in_threads
from lungai.progress import Cancelled, CancelToken

TINY = (4, 8, 8, 8, 8)


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_results_come_in_order_from_several_threads_with_one_torch_thread_each(two_threads):
    seen: list[tuple[str, int]] = []
    barrier = threading.Barrier(2, timeout=10)  # passes only if two items run at the same time

    def work(item: int) -> int:
        if item < 2:
            barrier.wait()
        seen.append((threading.current_thread().name, torch.get_num_threads()))
        return item * item

    assert list(map_in_threads(work, list(range(7)), workers=2)) == [i * i for i in range(7)]
    assert len({name for name, _ in seen}) == 2 and all(threads == 1 for _, threads in seen)
    assert torch.get_num_threads() == 2  # given back


def test_cancel_stops_before_the_next_item_and_gives_the_threads_back(two_threads):
    token, started = CancelToken(), []

    def work(item: int) -> int:
        started.append(item)
        return item

    with pytest.raises(Cancelled):
        for _ in map_in_threads(work, list(range(20)), workers=2, cancel=token):
            token.cancel()
    assert len(started) <= 3  # the two in flight and at most one submitted before the flag was seen
    assert torch.get_num_threads() == 2


def test_cascade_gives_the_same_probabilities_with_two_workers_as_with_one():
    torch.manual_seed(0)
    model = CHSNet(lung=dict(widths=TINY), infection=dict(widths=TINY, in_channels=2), lung_input="channel").eval()
    model.infection = ProbabilityMean([model.infection, RAIUNet(widths=TINY, in_channels=2).eval()])
    with torch.no_grad():
        model.lung.head.bias.fill_(3.0)  # lungs everywhere, so stage 2 runs on every slice
    images = [np.random.default_rng(i).random((40, 48), dtype=np.float32) for i in range(9)]
    runs = {}
    for workers in (1, 2):
        cascade = Cascade.from_chsnet(model, size=32)
        cascade.workers, cascade.batch_size, cascade.tta = workers, 2, True
        runs[workers] = cascade.segment(images)
    for one, two in zip(runs[1], runs[2]):
        assert one.infection.shape == (40, 48) and one.infection.any()
        np.testing.assert_array_equal(one.infection, two.infection)
        np.testing.assert_array_equal(one.lung, two.lung)
