"""NeoplasmNLB's module contract (:mod:`lungai.contract`): load, run on a CT, write, read, train, evaluate.

Score every axial slice of a CT (or one 2-D image) and segment the neoplasm on slices judged positive.

Each slice is a snapshot: it is turned to the radiological view (anterior at the top, the patient's right on
the left, as the IQ-OTH/NCCD snapshots are shown, using the volume's direction like
:func:`lungai.plotting.radiological_view`), mapped to [0, 1] and 128 x 128 by :mod:`lungai.nlb.intensity`,
and passed through the network. The segmentation probabilities are resized back to the slice's pixel grid,
turned back to the volume's own orientation and thresholded; slices whose neoplasm probability is below the
decision threshold get no segmentation.

A volume of one slice is a single snapshot (one row, one point in the plot). Non-axial volumes are refused:
resample them to axial slices first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lungai.checkpoint import load_model
from lungai.contract import LoadedModel, SavedResult, TrainOptions, TrainOutcome
from lungai.device import resolve_device
from lungai.errors import InputError
from lungai.io import read_segmentation, read_table_csv, read_volume, write_segmentation, write_table_csv
from lungai.nlb import DESCRIPTOR
from lungai.nlb.blocks import BLOCK_TYPES
from lungai.nlb.bundle import LICENCE, cpu_latency_ms
from lungai.nlb.data import IMAGE_SUFFIXES, read_snapshot
from lungai.nlb.evaluation import (
    classification_report,
    evaluate_snapshot_folder,
    predict,
    seg_threshold_of,
    segmentation_report,
)
from lungai.nlb.intensity import HU_WINDOW, INPUT_SIZE, prepare_slices, to_grey
from lungai.nlb.networks import build_nlb_unet
from lungai.nlb.training import load_data, make_folds, train_nlb, training_dataset
from lungai.outputs import staged_folder
from lungai.plotting import radiological_view, save_line_chart, save_overlay_png
from lungai.progress import CancelToken, ProgressCallback, report, subrange
from lungai.registry import load_for_module, publish
from lungai.segments import TERMINOLOGY_NEOPLASM, SegmentSpec
from lungai.training import TrainConfig
from lungai.ugsnet.data import load_npz
from lungai.volume import Volume

NEOPLASM_SEGMENT = SegmentSpec("Neoplasm", 1, (0.89, 0.35, 0.21), TERMINOLOGY_NEOPLASM)
DEFAULT_MODEL_ID = DESCRIPTOR.default_model_id
SLICES_CSV, SEGMENTATION, PLOT_PNG, OVERLAY_PNG, SUMMARY_JSON = DESCRIPTOR.outputs


@dataclass
class SliceScores:
    """Per-slice results in the input array's own (z, y, x) order."""

    probabilities: np.ndarray  # (Z,) neoplasm probability per slice
    threshold: float  # decision threshold on the probability
    labelmap: np.ndarray  # (Z, H, W) uint8: 1 = neoplasm region (only on positive slices)
    intensity: str  # "HU" or "8-bit": how the input was mapped to [0, 1]

    @property
    def decisions(self) -> np.ndarray:
        return self.probabilities >= self.threshold

    @property
    def most_likely_slice(self) -> int:
        return int(np.argmax(self.probabilities))

    def rows(self) -> list[dict]:
        """One row per slice: index, probability, decision (1 = neoplasm present)."""
        return [
            {"slice": k, "probability": round(float(p), 6), "decision": int(d)}
            for k, (p, d) in enumerate(zip(self.probabilities, self.decisions))
        ]

    def summary(self) -> dict:
        return {
            "slices": int(len(self.probabilities)),
            "positive_slices": int(self.decisions.sum()),
            "threshold": self.threshold,
            "most_likely_slice": self.most_likely_slice,
            "max_probability": float(self.probabilities.max()),
            "intensity": self.intensity,
            "segmented_voxels": int(self.labelmap.sum()),
        }


def _radiological_flips(direction: np.ndarray) -> tuple[bool, bool]:
    """(flip rows, flip columns) that bring an axial slice to the radiological view."""
    return bool(direction[1, 1] < 0), bool(direction[0, 0] < 0)


def _flip(array: np.ndarray, flip_rows: bool, flip_columns: bool) -> np.ndarray:
    if flip_rows:
        array = array[..., ::-1, :]
    if flip_columns:
        array = array[..., ::-1]
    return np.ascontiguousarray(array)


def score_slices(
    model: nn.Module,
    array: np.ndarray,
    direction: np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    seg_threshold: float = 0.5,
    size: int = INPUT_SIZE,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> SliceScores:
    """Classify and segment every slice of ``array`` ((Z, H, W) volume, (H, W) image or (H, W, 3|4) colour).

    ``seg_threshold``: on the segmentation probability; use the model's calibrated value
    (:func:`lungai.nlb.evaluation.seg_threshold_of` of its checkpoint header).
    """
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"the decision threshold must lie in [0, 1], got {threshold}")
    flips = _radiological_flips(direction) if direction is not None else (False, False)
    images, resize, kind = prepare_slices(np.asarray(array), size)
    images = torch.flip(images, [d for d, f in zip((-2, -1), flips) if f]) if any(flips) else images
    probabilities, maps = predict(model, images, batch_size=batch_size, device=device, progress=progress, cancel=cancel)
    positive = probabilities >= threshold
    labelmap = np.zeros((len(probabilities), resize.height, resize.width), dtype=np.uint8)
    if positive.any():
        restored = resize.restore(torch.from_numpy(maps[positive])[:, None]).numpy()
        labelmap[positive] = _flip(restored >= seg_threshold, *flips)
    return SliceScores(probabilities, threshold, labelmap, kind)


def score_volume(model: nn.Module, volume: Volume, **kwargs) -> SliceScores:
    """:func:`score_slices` on the axial slices of ``volume`` (see the module docstring).

    A colour volume (Z, H, W, 3|4), as Slicer loads an RGB picture, is converted to grey first.
    """
    if volume.array.ndim == 4 and volume.array.shape[-1] in (3, 4):
        volume = Volume(to_grey(volume.array), volume.spacing, volume.origin, volume.direction)
    if volume.array.ndim != 3:
        raise InputError(f"expected a volume of shape (slices, rows, columns), got {volume.array.shape}")
    if not volume.is_axial():
        raise InputError(
            "the volume's slices are not axial; resample it to axial slices (for example with "
            "Slicer's Resample Scalar/Vector/DWI Volume) before scoring slices"
        )
    return score_slices(model, volume.array, volume.direction, **kwargs)


def read_input(path: str | Path) -> Volume:
    """A CT volume (any format :func:`lungai.io.read_volume` reads) or a 2-D picture as a one-slice Volume."""
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return Volume(read_snapshot(path)[None])
    return read_volume(path)


# --- the contract ------------------------------------------------------------------------------------------


@dataclass
class NLBResult:
    """What :func:`run` found: the input, its per-slice scores, and facts for the summary (input, model)."""

    volume: Volume
    scores: SliceScores
    about: dict[str, Any] = field(default_factory=dict)


def load(weights: str | Path | None = None, model_id: str | None = None, device="auto") -> LoadedModel:
    """An ``nlb_unet`` from a file, a registry id, or the bundled default model."""
    return load_for_module(DESCRIPTOR, weights, model_id, device)


def run(
    volume: Volume,
    model: LoadedModel,
    *,
    threshold: float = 0.5,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> NLBResult:
    """Neoplasm probability of every slice; segmentation (at the model's calibrated threshold) on positive ones."""
    scores = score_volume(
        model.network,
        volume,
        threshold=threshold,
        seg_threshold=seg_threshold_of(model.header),
        device=model.device,
        progress=progress,
        cancel=cancel,
    )
    about = {"model": model.source, "block_type": model.header.get("config", {}).get("block_type")}
    return NLBResult(volume, scores, about)


def write(result: NLBResult, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """The per-slice table, the probability plot, the segmentation, the most likely slice and a summary."""
    out_dir = Path(out_dir)
    volume, scores = result.volume, result.scores
    with staged_folder(out_dir, overwrite, expected=DESCRIPTOR.outputs) as work:
        write_table_csv(work / SLICES_CSV, scores.rows())
        write_segmentation(work / SEGMENTATION, volume.like(scores.labelmap), [NEOPLASM_SEGMENT])
        save_line_chart(
            work / PLOT_PNG,
            {"neoplasm probability": (np.arange(len(scores.probabilities)), scores.probabilities)},
            xlabel="slice index",
            ylabel="probability",
            y_range=(-0.02, 1.02),
            lines={f"threshold {scores.threshold:g}": scores.threshold},
        )
        k = scores.most_likely_slice
        view = lambda a: radiological_view(a, volume.direction, "axial", k)  # noqa: E731
        save_overlay_png(
            work / OVERLAY_PNG,
            view(volume.array),
            [(view(scores.labelmap) > 0, NEOPLASM_SEGMENT.color)],
            window=HU_WINDOW if scores.intensity == "HU" else (0.0, 255.0),
            title=f"slice {k}: neoplasm probability {scores.probabilities[k]:.2f}",
        )
        (work / SUMMARY_JSON).write_text(json.dumps({**scores.summary(), **result.about}, indent=2) + "\n")
    return [out_dir / name for name in DESCRIPTOR.outputs]


def read(out_dir: str | Path) -> SavedResult:
    """The per-slice table, the segmentation and the summary :func:`write` put into ``out_dir``."""
    out_dir = Path(out_dir)
    labelmap, specs = read_segmentation(out_dir / SEGMENTATION)
    masks = {NEOPLASM_SEGMENT.name: np.asarray(labelmap.array) > 0}
    summary_path = out_dir / SUMMARY_JSON
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    tables = {SLICES_CSV: read_table_csv(out_dir / SLICES_CSV)}
    return SavedResult(out_dir, masks, specs, tables, {"segmentation": labelmap}, summary)


@dataclass
class Training(TrainOptions):
    """``lungai nlb train``: IQ-OTH/NCCD snapshots (presence) and LIDC-IDRI crops (segmentation)."""

    iqoth: str = ""
    lidc: str = ""
    block: str = "symmetry_localized"
    widths: tuple[int, ...] = (8, 16, 32, 64, 128)
    epochs: int = 4
    batch_size: int = 16
    lr: float = 2e-3
    max_crops: int = 200
    normal_empty_masks: bool = False
    folds: int = 2
    held_out_fold: int = 0  # -1: train on everything


def train(config: Training, *, progress: ProgressCallback | None = None, cancel=None) -> TrainOutcome:
    """Train, evaluate the held-out fold (``metrics.json``), optionally publish under ``config.register``."""
    if config.block not in BLOCK_TYPES:
        raise InputError(f"Unknown block type '{config.block}'; choose one of {', '.join(BLOCK_TYPES)}.")
    held_out = None if config.held_out_fold < 0 else config.held_out_fold
    out = Path(config.out)
    load_npz(config.lidc)  # a clear error for a file that is not a multi-reader .npz
    folds = make_folds(config.iqoth, config.lidc, config.folds, config.seed)
    data = load_data(folds, config.lidc, INPUT_SIZE)
    model_config = {"block_type": config.block, "widths": list(config.widths)}
    data_text = (
        f"IQ-OTH/NCCD snapshots + LIDC-IDRI crops (consensus masks, at most {config.max_crops})"
        + ("; normal snapshots as empty segmentation targets; " if config.normal_empty_masks else "; ")
        + (
            "all data"
            if held_out is None
            else f"{config.folds}-fold split seed {config.seed}, fold {held_out} held out"
        )
    )
    device = resolve_device(config.device)
    with staged_folder(out, expected=["last.pt", "metrics.json"]) as work:
        schedule = TrainConfig(
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            scheduler="cosine",
            seed=config.seed,
            device=str(device),
            out_dir=str(work),
        )
        result = train_nlb(
            build_nlb_unet(**model_config),
            model_config,
            training_dataset(folds, data, held_out, config.max_crops, config.normal_empty_masks),
            schedule,
            training_data=data_text,
            progress=subrange(progress, 0.0, 0.9),
            cancel=cancel,
        )
        model, header = load_model(work / "last.pt", device, expected_model="nlb_unet")
        metrics: dict = {}
        if held_out is not None:
            snap = folds.snapshot_folds == held_out
            crop = folds.crop_folds == held_out
            probabilities, _ = predict(model, data.snapshot_images[snap], device=device)
            _, maps = predict(model, data.crops.images[crop], device=device)
            cls = classification_report(probabilities, data.snapshot_labels[snap])
            seg = segmentation_report(maps, data.crops.masks[crop, 0].numpy(), seg_threshold_of(header))
            metrics = {
                **{f"held_out_{k}": cls[k] for k in ("precision", "recall", "f1", "accuracy")},
                "held_out_confusion_matrix": cls["confusion_matrix"],
                "held_out_iou": seg["iou"],
                "held_out_dice": seg["dice"],
                "seg_threshold": seg_threshold_of(header),
            }
        (work / "metrics.json").write_text(json.dumps({**metrics, "folds": folds.describe()}, indent=2) + "\n")
    outcome = TrainOutcome(out / "last.pt", metrics, result.history)
    if config.register:
        outcome.registered = publish_weights(
            outcome.checkpoint,
            config.register,
            command=config.command,
            metrics={k: v for k, v in metrics.items() if not isinstance(v, list)},
        )
    report(progress, 1.0, "done")
    return outcome


def publish_weights(
    checkpoint: str | Path,
    model_id: str,
    *,
    command: str,
    metrics: dict[str, Any],
    description: str = "",
    timings: dict[str, Any] | None = None,
):
    """Publish an ``nlb_unet`` checkpoint with its one-thread CPU latency per slice."""
    model, header = load_model(checkpoint, expected_model="nlb_unet")
    variant = header["config"].get("block_type")
    return publish(
        checkpoint,
        model_id,
        module=DESCRIPTOR.slicer_module,
        licence=LICENCE,
        command=command,
        metrics=metrics,
        description=description
        or f"U-Net with {variant} non-local blocks (seed 002): neoplasm probability per CT slice and its segmentation",
        timings={"cpu_ms_per_slice_1_thread": cpu_latency_ms(model), **(timings or {})},
    )


def evaluate(
    data: str | Path,
    out_dir: str | Path,
    model: LoadedModel,
    *,
    threshold: float = 0.5,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict:
    """Classification metrics on a folder in the iqoth_nccd layout: ``metrics.json`` and ``predictions.csv``."""
    about = {"model": model.source, "block_type": model.header.get("config", {}).get("block_type")}
    with staged_folder(out_dir, overwrite, expected=["metrics.json", "predictions.csv"]) as work:
        return evaluate_snapshot_folder(
            model.network,
            data,
            work,
            threshold=threshold,
            device=model.device,
            progress=progress,
            cancel=cancel,
            overwrite=True,
            about=about,
        )
