"""Training on partially annotated volumes with the weighted soft Dice loss (Eq. 2), on the generic trainer."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lungai.al.data import AnnotatedSliceDataset, PoolCase
from lungai.al.losses import partial_annotation_loss
from lungai.checkpoint import load_checkpoint
from lungai.progress import CancelToken, ProgressCallback
from lungai.training import TrainConfig, TrainResult, train

ARCHITECTURE = "al_unet"


class PartialAnnotationTask:
    """TrainTask: weighted soft Dice (optionally + weighted BCE, see :func:`partial_annotation_loss`) on sigmoid
    outputs; validation Dice and Jaccard (pooled over the batch)."""

    def __init__(self, loss: str = "dice"):
        self.loss = loss

    def training_step(self, model: nn.Module, batch: dict) -> torch.Tensor:
        return partial_annotation_loss(model(batch["image"]), batch["label"], batch["weight"], self.loss)

    def validation_step(self, model: nn.Module, batch: dict) -> dict[str, float]:
        pred = model(batch["image"]) > 0
        ref = batch["label"] > 0.5
        inter, p, r = float((pred & ref).sum()), float(pred.sum()), float(ref.sum())
        union = p + r - inter
        return {"dice": 1.0 if p + r == 0 else 2 * inter / (p + r), "jaccard": 1.0 if union == 0 else inter / union}


@dataclass(frozen=True)
class FitSettings:
    """Optimisation budget. ``steps`` is the number of optimiser steps whatever the training-set size, so every
    strategy gets the same compute (the paper trained up to 30 epochs instead; see the simulation's notes)."""

    steps: int = 300
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    validations: int = 6
    loss: str = "dice"  # "dice" (Eq. 2, the paper) or "dice+bce"
    ema_decay: float | None = None  # exponential moving average of the weights (lungai.training); None = off


def fit(
    model: nn.Module,
    cases: list[PoolCase],
    val_cases: list[PoolCase] | None = None,
    settings: FitSettings = FitSettings(),
    *,
    device: str = "auto",
    out_dir: str | Path | None = None,
    training_data: str = "",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> TrainResult:
    """Train ``model`` in place on the annotated slices of ``cases``; with validation cases, load the best weights
    (Jaccard, as the paper) back into it. Callers that must keep their model on cancel train a copy."""
    dataset = AnnotatedSliceDataset(cases, model.input_size)
    val = None
    if val_cases:
        val = AnnotatedSliceDataset(
            [replace(c, annotated=np.ones(len(c.image), bool)) for c in val_cases], model.input_size
        )
    steps_per_epoch = math.ceil(len(dataset) / settings.batch_size)
    epochs = max(1, math.ceil(settings.steps / steps_per_epoch))
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            epochs=epochs,
            batch_size=settings.batch_size,
            lr=settings.lr,
            seed=settings.seed,
            device=device,
            monitor="jaccard",
            val_every=max(1, epochs // settings.validations),
            ema_decay=settings.ema_decay,
            out_dir=str(out_dir or tmp),
        )
        result = train(
            model,
            PartialAnnotationTask(settings.loss),
            dataset,
            val,
            config,
            model_name=ARCHITECTURE,
            model_config=model.config,
            training_data=training_data,
            progress=progress,
            cancel=cancel,
        )
        if val is not None and result.best_checkpoint is not None:
            model.load_state_dict(load_checkpoint(result.best_checkpoint).state_dict)
        model.eval()
        return result
