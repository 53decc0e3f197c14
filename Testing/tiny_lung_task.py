"""A tiny lung-segmentation task on the bundled chest CT, for testing the generic trainer.

Run as a script (also under ``torchrun``) it trains and writes checkpoints to ``--out``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from lungai.architectures import register_architecture
from lungai.intensity import window_to_unit
from lungai.resampling import resize_slices
from lungai.sample_data import chest_ct, chest_lungs
from lungai.training import TrainConfig, seed_everything, train

ARCHITECTURE = "test_tiny_lungnet"


class TinyLungNet(nn.Module):
    """Two 3x3 convolutions: (B, 1, H, W) -> (B, 1, H, W) lung logits."""

    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@register_architecture(ARCHITECTURE)
def build(width: int = 4) -> TinyLungNet:
    return TinyLungNet(width)


class ChestSlices(Dataset):
    """Axial slices of the bundled chest CT (lung window, 32 x 32) with their lung masks."""

    def __init__(self, slices: range) -> None:
        ct, lungs = chest_ct(), chest_lungs()[0]
        self.images = resize_slices(window_to_unit(ct.array[list(slices)]), (32, 32), order=1).astype(np.float32)
        self.masks = resize_slices((lungs.array[list(slices)] > 0).astype(np.float32), (32, 32), order=0)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": torch.from_numpy(self.images[index][None]), "mask": torch.from_numpy(self.masks[index][None])}


class LungTask:
    def training_step(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model(batch["image"]), batch["mask"])

    def validation_step(self, model: nn.Module, batch: dict) -> dict[str, float]:
        prediction = model(batch["image"]) > 0
        reference = batch["mask"] > 0.5
        overlap = 2 * (prediction & reference).sum() / (prediction.sum() + reference.sum()).clamp(min=1)
        return {"dice": float(overlap), "loss": float(self.training_step(model, batch))}


def train_tiny(out: str, epochs: int = 2, resume: str | None = None, seed: int = 0, **overrides):
    """Train a fresh seeded network on CTChest4 slices 6-25 (validation 26-29); ``overrides`` go to TrainConfig.
    Returns the trained network and the trainer's result."""
    config = TrainConfig(
        epochs=epochs, batch_size=4, lr=1e-2, device="cpu", out_dir=out, resume=resume, seed=seed, **overrides
    )
    seed_everything(seed)
    model = build()
    result = train(
        model,
        LungTask(),
        ChestSlices(range(6, 26)),
        ChestSlices(range(26, 30)),
        config,
        model_name=ARCHITECTURE,
        model_config={"width": 4},
        training_data="CTChest4 slices 6-25",
    )
    return model, result


def run(out: str, epochs: int = 2, resume: str | None = None, seed: int = 0, ema_decay: float | None = None):
    """The trainer's result of :func:`train_tiny`."""
    return train_tiny(out, epochs, resume, seed, ema_decay=ema_decay)[1]


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--ema", type=float, default=None)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    run(arguments.out, arguments.epochs, ema_decay=arguments.ema)
