"""NeoplasmNLB's registry facts: its licence and one-thread CPU latency (publishing: lungai.registry.publish)."""

from __future__ import annotations

from typing import Any

import torch

from lungai.nlb.framing import INPUT_SIZE
from lungai.parallel import torch_threads
from lungai.timing import forward_times_ms

LICENCE = "Apache-2.0; trained on IQ-OTH/NCCD (CC BY 4.0) and LIDC-IDRI (CC BY 3.0)"


def cpu_latency_ms(model: torch.nn.Module, size: int = INPUT_SIZE, repeats: int = 20) -> float:
    """Median time of one forward pass of a size x size slice on one CPU thread."""
    model = model.cpu().eval()
    with torch_threads(1):
        times = forward_times_ms(model, torch.rand(1, 1, size, size), repeats, warmup=1)
    return round(sorted(times)[repeats // 2], 1)


def held_out_sentence(record: dict[str, Any]) -> str:
    """What "held out" means for the metrics of a split record (:func:`lungai.nlb.training.make_split`)."""
    if record.get("held_out_fold") is None:
        return "nothing held out: metrics are not on unseen data"
    return (
        f"other slices of the same collection: {record['test_snapshots']} IQ-OTH/NCCD snapshots of fold "
        f"{record['held_out_fold']} of {record['n_folds']} (stratified by category, seed {record['seed']}; the data "
        "set has no patient ids, so a patient's other slices may be in training); segmentation on "
        f"the nodules of {record['test_nodule_patients']} LIDC-IDRI patients never used in training "
        f"({record['test_nodules']} nodules, of which those the snapshot window shows, as in training: "
        "lungai.nlb.insertion.shows_in_window), inserted into the held-out normal snapshots (simulated)"
    )
