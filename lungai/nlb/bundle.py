"""Copy a trained NeoplasmNLB checkpoint into ``Resources/Models`` and register it (the one way to do so)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from lungai.checkpoint import load_model
from lungai.nlb.framing import INPUT_SIZE
from lungai.registry import ModelEntry, register_model, resources_dir
from lungai.timing import forward_times_ms

LICENCE = "Apache-2.0; trained on IQ-OTH/NCCD (CC BY 4.0) and LIDC-IDRI (CC BY 3.0)"


def cpu_latency_ms(model: torch.nn.Module, size: int = INPUT_SIZE, repeats: int = 20) -> float:
    """Median time of one forward pass of a size x size slice on one CPU thread."""
    model = model.cpu().eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        times = forward_times_ms(model, torch.rand(1, 1, size, size), repeats, warmup=1)
    finally:
        torch.set_num_threads(threads)
    return round(sorted(times)[repeats // 2], 1)


def held_out_sentence(record: dict[str, Any]) -> str:
    """What "held out" means for the metrics of a split record (:func:`lungai.nlb.training.make_split`)."""
    if record.get("held_out_fold") is None:
        return "nothing held out: metrics are not on unseen data"
    return (
        f"other slices of the same collection: {record['test_snapshots']} IQ-OTH/NCCD snapshots of fold "
        f"{record['held_out_fold']} of {record['n_folds']} (stratified by category, seed {record['seed']}; the data "
        "set has no patient ids, so a patient's other slices may be in training); segmentation on "
        f"{record['test_nodules']} LIDC-IDRI nodules of {record['test_nodule_patients']} patients never used in "
        "training, inserted into the held-out normal snapshots (simulated)"
    )


def register_checkpoint(
    checkpoint: str | Path,
    model_id: str,
    *,
    command: str,
    metrics: dict[str, Any],
    description: str = "",
    timings: dict[str, Any] | None = None,
    held_out: dict[str, Any] | None = None,
) -> ModelEntry:
    """Copy ``checkpoint`` to ``Resources/Models/<model_id>.pt`` and add or replace its registry entry.

    ``held_out``: the split record of :func:`lungai.nlb.training.make_split`; it becomes the entry's
    ``metrics["held_out"]`` sentence saying what the held-out metrics were measured on.
    """
    model, header = load_model(checkpoint, expected_model="nlb_unet")
    target = resources_dir() / "Models" / f"{model_id}.pt"
    shutil.copyfile(checkpoint, target)
    variant = header["config"].get("block_type")
    return register_model(
        {
            "id": model_id,
            "version": "1",
            "module": "NeoplasmNLB",
            "architecture": "nlb_unet",
            "file": target.name,
            "sha256": "",
            "licence": LICENCE,
            "training_data": header.get("training_data", ""),
            "description": description
            or f"U-Net with {variant} non-local blocks (seed 002): neoplasm probability per "
            "CT slice and its segmentation",
            "command": command,
            "metrics": {**metrics, **({"held_out": held_out_sentence(held_out)} if held_out else {})},
            "timings": {"cpu_ms_per_slice_1_thread": cpu_latency_ms(model), **(timings or {})},
        }
    )
