"""Train one UGS-Net comparison model on the patient folds of a multi-reader file with lungai's trainer.

Paper settings (seed 001 Sec. IV-A): SGDR, lr 1e-5, momentum 0.9, weight decay 1e-4, batch 32, 200 epochs,
restart every 50 (``PAPER_TRAIN``). At a CPU budget of a few minutes per model that lr learns nothing,
so the demo/benchmark budget (``BUDGET_TRAIN``) is Adam, lr 1e-3, cosine decay, batch 16, a few epochs,
the same for all four models, and UGS-Net's self-attention with 8x pooled keys/values
(:data:`lungai.ugsnet.task.BUDGET_ATTENTION_POOL`; the paper's full attention is ``attention_pool=1``).

The bundled model's recipe (issue 13, ``bench/ugsnet/recipe_runs.sh``, about 24 min on one CPU thread): that budget
for 30 epochs at widths 16-32-64-128-256, the per-annotation loss BCE + soft Dice (``fusion="dicebce"``), the final
output trained on Label1 (``final_target="label1"``: the crop's own reader, the target of the baselines and of the
evaluation; the paper's Eq. 3 fuses every annotation into it), random flips and 90-degree turns; the MONAI U-Net
baseline (``monai_unet``) trains with exactly the same options. Measured in ``bench/ugsnet/recipe_results.md``.
Held-out data is always other patients: :func:`nested_patient_folds`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from lungai.augmentation import AugmentedDataset, AugmentSettings
from lungai.errors import InputError
from lungai.progress import CancelToken, ProgressCallback
from lungai.training import TrainConfig, TrainResult, train
from lungai.ugsnet.data import CropDataset, CropSet, patient_folds
from lungai.ugsnet.task import BUDGET_ATTENTION_POOL, MODELS, build_model, make_task, model_config

PAPER_TRAIN = TrainConfig(
    epochs=200,
    batch_size=32,
    optimizer="sgd",
    lr=1e-5,
    momentum=0.9,
    weight_decay=1e-4,
    scheduler="sgdr",
    sgdr_t0=50,
    monitor="dice",
)
# Applied after the crop's own random flip and 90-degree turn (CropDataset): small rotations and scalings (nodules
# have no preferred orientation or exact size), the image's own contrast and intensity jitter in CT units
# (lungai.augmentation), every reader mask and the MCM targets moved with the image.
AUGMENTATION = AugmentSettings(flip_prob=0.0, rotate_degrees=15.0, scale=0.1)
MASK_KEYS = ("masks", "label1", "union", "intersection")
AUGMENTATIONS = ("dihedral", "monai")

BUDGET_TRAIN = TrainConfig(epochs=10, batch_size=16, optimizer="adam", lr=1e-3, scheduler="cosine", monitor="dice")


def nested_patient_folds(patient_id: np.ndarray, n_readers: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold per crop, by patient. Patients with at least one crop of >= 2 readers keep the fold that
    :func:`lungai.ugsnet.data.patient_folds` gives them among those patients alone (the paper's data,
    ``--min-readers 2``); patients with only single-reader crops are dealt over the folds among themselves. So fold K
    of the crops with >= 1 reader is fold K of the crops with >= 2 readers plus other patients, never a patient of
    another fold, whatever ``min_readers`` a run uses."""
    patient_id = np.asarray(patient_id).astype(str)
    multi = np.isin(patient_id, np.unique(patient_id[np.asarray(n_readers) >= 2]))
    folds = np.empty(len(patient_id), dtype=int)
    for group in (multi, ~multi):
        if group.any():
            folds[group] = patient_folds(patient_id[group], n_folds, seed)
    return folds


def split_by_patient(crops: CropSet, test_fold: int | None, n_folds: int = 5, seed: int = 0):
    """(train rows, test rows) for ``test_fold`` (folds of :func:`nested_patient_folds`); ``None`` trains on
    everything (no test rows)."""
    folds = nested_patient_folds(crops.patient_id, crops.n_readers, n_folds, seed)
    if test_fold is None:
        return np.arange(len(crops)), np.array([], dtype=int)
    if not 0 <= test_fold < n_folds:
        raise InputError(f"--fold must be one of the {n_folds} patient folds, 0 to {n_folds - 1}; got {test_fold}.")
    return np.nonzero(folds != test_fold)[0], np.nonzero(folds == test_fold)[0]


def train_model(
    kind: str,
    crops: CropSet,
    train_rows: np.ndarray,
    *,
    features: Sequence[int],
    config: TrainConfig = BUDGET_TRAIN,
    fusion: str = "bce",
    attention_pool: int = BUDGET_ATTENTION_POOL,
    training_data: str = "",
    val_rows: np.ndarray | None = None,
    augmentation: str = "dihedral",
    final_target: str = "annotations",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> tuple[torch.nn.Module, TrainResult]:
    """Train model ``kind`` (see :data:`lungai.ugsnet.task.MODELS`) on ``crops[train_rows]``; ``attention_pool``
    as in :func:`lungai.ugsnet.task.model_config`. ``augmentation``: ``"dihedral"`` random flips and 90-degree
    turns of each crop (:class:`lungai.ugsnet.data.CropDataset`); ``"monai"`` those then :data:`AUGMENTATION`."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation must be one of {AUGMENTATIONS}, got {augmentation!r}")
    torch.manual_seed(config.seed)
    model = build_model(kind, features, attention_pool)
    train_set = CropDataset(crops.subset(train_rows), augment=True, seed=config.seed)
    if augmentation == "monai":
        train_set = AugmentedDataset(train_set, mask_keys=MASK_KEYS, settings=AUGMENTATION, seed=config.seed)
    val_set = CropDataset(crops.subset(val_rows)) if val_rows is not None and len(val_rows) else None
    result = train(
        model,
        make_task(kind, fusion, final_target=final_target),
        train_set,
        val_set,
        config,
        model_name=MODELS[kind],
        model_config=model_config(kind, features, attention_pool),
        training_data=training_data,
        progress=progress,
        cancel=cancel,
    )
    return model, result


def with_overrides(config: TrainConfig, **overrides) -> TrainConfig:
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
