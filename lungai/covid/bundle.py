"""The bundled CHS-Net: train with :mod:`lungai.covid.training`, measure on held-out doctor labels, save, register.

Held-out means: MedSeg slices (doctor labels) that no training step saw. The 50 slices of
``covid_infection_medseg`` are split once, :func:`split_text`: a seeded 2-fold split
(:func:`lungai.splits.item_folds`, seed 0); the bundled model trains on fold 0 and holds out fold 1
(``--held-out-fold 0`` swaps them, for cross-validating a recipe). MedSeg does not
distribute patient identities, so slices of one patient may fall on both sides: the figure is
"other slices of the same collection", not "other patients". The pseudo-labelled slices are from
other patients (none of the MedSeg ones) and are never used as a measure. The checkpoint header
lists the held-out slice names, so ``lungai covid evaluate --held-out`` measures exactly them.
"""

from __future__ import annotations

import time
from pathlib import Path

from lungai.covid.data import LabelledSlice, chest_ct_lung_slices
from lungai.covid.evaluation import infection_metrics, lung_metrics
from lungai.covid.model import assemble_chsnet, save_chsnet
from lungai.covid.training import TrainedCHSNet, recipe_record
from lungai.errors import InputError
from lungai.splits import fold_indices, item_folds

SPLIT_SEED, HELD_OUT_FOLD = 0, 1


def split_text(held_out_fold: int = HELD_OUT_FOLD) -> str:
    """What the split is, as checkpoint headers and registry keys say it."""
    return (
        "seeded 2-fold split of the doctor-labelled slices (lungai.splits.item_folds, seed 0): "
        f"fold {1 - held_out_fold} trains, fold {held_out_fold} held out"
    )


def doctor_split(
    slices: list[LabelledSlice], held_out_fold: int = HELD_OUT_FOLD
) -> tuple[list[LabelledSlice], list[LabelledSlice]]:
    """(training, held-out) doctor-labelled slices of :func:`split_text`."""
    if len(slices) < 2:
        raise InputError(f"Need at least 2 doctor-labelled slices to hold some out, got {len(slices)}.")
    if held_out_fold not in (0, 1):
        raise InputError(f"The held-out fold is 0 or 1 (a 2-fold split), got {held_out_fold}.")
    train_idx, test_idx = fold_indices(item_folds(len(slices), 2, SPLIT_SEED), held_out_fold)
    return [slices[i] for i in train_idx], [slices[i] for i in test_idx]


def held_out_names(header: dict) -> list[str]:
    """Names of the doctor-labelled slices a checkpoint held out (empty if it records none)."""
    return list(header.get("extra", {}).get("held_out", {}).get("slices", []))


def measure(trained: TrainedCHSNet, held_out: list[LabelledSlice]) -> dict[str, dict[str, float]]:
    """Held-out infection metrics (doctor labels) and, with a lung stage, held-out CTChest4 lung metrics."""
    cascade = trained.cascade()
    started = time.perf_counter()
    infection, _ = infection_metrics(cascade, held_out)
    seconds = time.perf_counter() - started
    result = {"infection": {k: round(v, 4) for k, v in infection.items()}}
    result["infection"]["seconds_per_slice"] = round(seconds / max(1, len(held_out)), 3)
    if trained.lung is not None:
        lungs, _ = lung_metrics(cascade, chest_ct_lung_slices("test"))
        result["lung"] = {k: round(v, 4) for k, v in lungs.items()}
    return result


def save_trained(
    path: Path,
    trained: TrainedCHSNet,
    held_out: list[LabelledSlice],
    doctor_source: str,
    metrics: dict,
    held_out_fold: int = HELD_OUT_FOLD,
) -> Path:
    """Write the hierarchical model as one ``chsnet`` checkpoint (no local paths in the header)."""
    recipe = trained.recipe
    model, config = assemble_chsnet(
        trained.lung, trained.lung_config, trained.infection, trained.infection_config, recipe.mode
    )
    training_data = "; ".join(f"{stage}: {text}" for stage, text in trained.training_data.items())
    flat = {f"held_out_{stage}_{k}": v for stage, values in metrics.items() for k, v in values.items()}
    return save_chsnet(
        path,
        model,
        config,
        input_size=recipe.size,
        lung_input_size=recipe.lung_size,
        training_data=training_data,
        metrics=flat,
        extra={
            "recipe": recipe_record(recipe),
            "held_out": {
                "data": doctor_source,
                "split": split_text(held_out_fold),
                "slices": [s.name for s in held_out],
            },
            "train_seconds": {k: round(v, 1) for k, v in trained.seconds.items()},
        },
    )


def registry_metrics(
    metrics: dict[str, dict[str, float]], held_out: int, doctor_source: str, held_out_fold: int = HELD_OUT_FOLD
) -> dict:
    """Registry metrics whose keys say what "held-out" means for each figure and that they score the networks'
    output, before the anatomical limits of the shared lung field that ``segment`` applies."""
    before = "before the anatomical limits that segment applies"
    named = {
        f"infection, held-out doctor-labelled slices ({held_out} {doctor_source} slices no training step saw; "
        f"{split_text(held_out_fold)}; other slices of the same collection, patients not identified; "
        f"the networks' output, {before})": (metrics["infection"])
    }
    if "lung" in metrics:
        named[
            "lungs, held-out CTChest4 slices 22-33 (real labels; other slices of the training scan; the lung network "
            f"alone, {before}; bench/covid/ct_check.py measures the module's lungs)"
        ] = metrics["lung"]
    return named
