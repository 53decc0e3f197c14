"""Training the two CHS-Net stages with the generic trainer (:func:`lungai.training.train`).

Protocol (seed 003 Sec. 4.2, scaled to a CPU budget): loss 0.5 BCE + 0.5 Dice, Adam (the paper
names SGD "with Adam as learning-rate optimiser"; we use Adam), fixed epochs, no early stopping
(our folds are too small to spare a validation split), augmentation by random rotation
(+-15 deg), scaling (0.85-1.15), shift (+-6 %), gamma (0.7-1.4) and contrast (+-15 %).

- Stage 1 (lungs) trains on the chest CT's training slices with their real labels plus MedSeg
  slices with derived (image-only) lung labels (:mod:`lungai.covid.data`).
- Stage 2 (infection) trains on MedSeg slices. Hierarchical: the input is the box around the
  lungs that the *trained* stage 1 predicts, with its lung map (exactly what it sees at
  inference). Direct: the whole slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from lungai.covid.cascade import Cascade
from lungai.covid.data import LabelledSlice
from lungai.covid.grid import GridBox
from lungai.covid.losses import bce_dice_loss
from lungai.covid.raiunet import RAIUNet, stage2_input
from lungai.errors import LungAIError
from lungai.metrics import validation_dice
from lungai.progress import CancelToken, ProgressCallback
from lungai.training import TrainConfig, train

VARIANTS: dict[str, dict[str, bool]] = {
    "BU": dict(rib=False, hybrid_pool=False, ssd=False),
    "BU+RIB": dict(rib=True, hybrid_pool=False, ssd=False),
    "BU+RIB+HP": dict(rib=True, hybrid_pool=True, ssd=False),
    "RAIU-Net": dict(rib=True, hybrid_pool=True, ssd=True),
}


class AugmentedSlices(Dataset):
    """Grid-sized slices as dict samples: ``image`` ``(1, S, S)`` plus one ``(1, S, S)`` map per key.

    ``maps`` holds binary targets and inputs (``lung``, ``infection``, ``lung_map``); they move with
    the image under the same random affine transform (nearest for maps, bilinear for the image).
    """

    def __init__(self, images: np.ndarray, maps: dict[str, np.ndarray], augment: bool = True, seed: int = 0) -> None:
        self.images = torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]
        self.maps = {k: torch.from_numpy(np.asarray(v, dtype=np.float32))[:, None] for k, v in maps.items()}
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.images)

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(1, generator=self.generator))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.images[index]
        maps = {k: v[index] for k, v in self.maps.items()}
        if not self.augment:
            return {"image": image, **maps}
        angle, scale = math.radians(self._uniform(-15, 15)), self._uniform(0.85, 1.15)
        shift = (self._uniform(-0.06, 0.06), self._uniform(-0.06, 0.06))
        theta = torch.tensor(
            [
                [math.cos(angle) / scale, -math.sin(angle) / scale, shift[0]],
                [math.sin(angle) / scale, math.cos(angle) / scale, shift[1]],
            ],
            dtype=torch.float32,
        )[None]
        grid = F.affine_grid(theta, (1, 1, *image.shape[-2:]), align_corners=False)
        image = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
        image = image.clamp(0, 1).pow(self._uniform(0.7, 1.4))
        image = ((image - 0.5) * self._uniform(0.85, 1.15) + 0.5 + self._uniform(-0.05, 0.05)).clamp(0, 1)
        maps = {
            k: F.grid_sample(v[None], grid, mode="nearest", padding_mode="zeros", align_corners=False)[0]
            for k, v in maps.items()
        }
        return {"image": image, **maps}


@dataclass
class SegmentationTask:
    """Trainer task for one stage: ``target`` map; stage 2 builds its input from ``lung_map``."""

    target: str
    lung_input: str | None = None

    def inputs(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.lung_input is None:
            return batch["image"]
        return stage2_input(batch["image"], batch["lung_map"], self.lung_input)

    def training_step(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return bce_dice_loss(model(self.inputs(batch)), batch[self.target])

    def validation_step(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        logits, target = model(self.inputs(batch)), batch[self.target]
        return {"dice": validation_dice(logits, target), "loss": float(bce_dice_loss(logits, target))}


@dataclass
class StageSettings:
    """Network width and training budget of one stage."""

    size: int = 128
    widths: tuple[int, ...] = (8, 16, 32, 64, 128)
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    device: str = "cpu"


def lung_training_set(slices: list[LabelledSlice], size: int, seed: int = 0) -> AugmentedSlices:
    """Whole slices on the grid with their ``lung`` labels (real or derived)."""
    boxes = [GridBox.whole(s.image.shape) for s in slices]
    images = np.stack([b.extract(s.image, size) for b, s in zip(boxes, slices)])
    lungs = np.stack([b.extract(s.lung.astype(np.float32), size, order=0) for b, s in zip(boxes, slices)]) > 0.5
    return AugmentedSlices(images, {"lung": lungs}, seed=seed)


def infection_training_set(slices: list[LabelledSlice], cascade: Cascade, seed: int = 0) -> AugmentedSlices:
    """MedSeg slices as stage 2 will see them through ``cascade`` (its lung stage must be trained).

    Hierarchical: slices where stage 1 finds no lung are skipped (stage 2 never runs on them).
    """
    masks = (
        [p > 0.5 for p in cascade.lung_probabilities([s.image for s in slices])]
        if cascade.hierarchical
        else [None] * len(slices)
    )
    images, lung_maps, targets = [], [], []
    for s, mask in zip(slices, masks):
        prepared = cascade.stage2_grid(s.image, mask)
        if prepared is None:
            continue
        box, _ = prepared
        images.append(box.extract(s.image, cascade.size))
        lung_maps.append(
            box.extract(mask.astype(np.float32), cascade.size, order=0) > 0.5
            if mask is not None
            else np.ones((cascade.size, cascade.size), bool)
        )
        targets.append(box.extract(s.infection.astype(np.float32), cascade.size, order=0) > 0.5)
    if not images:
        raise LungAIError("The lung stage finds no lungs in any training slice; train it longer or check the data.")
    return AugmentedSlices(
        np.stack(images), {"infection": np.stack(targets), "lung_map": np.stack(lung_maps)}, seed=seed
    )


def raiunet_config(variant: str, settings: StageSettings, in_channels: int = 1) -> dict:
    return dict(in_channels=in_channels, widths=list(settings.widths), **VARIANTS[variant])


def train_stage(
    dataset: AugmentedSlices,
    task: SegmentationTask,
    config: dict,
    settings: StageSettings,
    out_dir: Path,
    training_data: str,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> RAIUNet:
    """Train one RAIU-Net with the generic trainer; returns it in eval mode (``out_dir/last.pt`` written)."""
    model = RAIUNet(**config)
    train_config = TrainConfig(
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=settings.seed,
        device=settings.device,
        out_dir=str(out_dir),
        monitor="dice",
    )
    train(
        model,
        task,
        dataset,
        None,
        train_config,
        model_name="raiunet",
        model_config=config,
        training_data=training_data,
        progress=progress,
        cancel=cancel,
    )
    return model.eval()
