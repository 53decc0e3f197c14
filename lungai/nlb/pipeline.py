"""NeoplasmNLB's module contract (:mod:`lungai.contract`): load, run on a CT, write, read, train, evaluate.

Score every axial slice of a CT (or one 2-D image) and segment the neoplasm on slices judged positive.

Each slice is a snapshot: it is turned to the radiological view (anterior at the top, the patient's right on the
left, as the IQ-OTH/NCCD snapshots are shown, using the volume's direction like
:func:`lungai.plotting.radiological_view`), mapped to [0, 1] and framed to the network grid like a snapshot by
:mod:`lungai.nlb.intensity` (HU: the measured snapshot window, 1.87 mm pixels, the body centred), and passed through
the network (a network trained with the lung view, two input channels, also gets :func:`lung_views`, see
:mod:`lungai.nlb.lungview`). The segmentation probabilities are mapped back to the slice's pixel grid, turned back
to the volume's own orientation and thresholded. Findings are reported only inside the lungs
(:mod:`lungai.nlb.regions`): on CT the segmentation is cut to the shared lung field, and a slice is positive only if
its probability reaches the decision threshold *and* the segmentation locates the finding inside the lungs (a slice
without lung, or whose finding lies outside the lungs, is never positive; its probability is still reported); on
8-bit snapshots, whose window hides the lungs' outline, the segmentation is cut to the body and the probability
alone decides.

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
from lungai.nlb.bundle import LICENCE, cpu_latency_ms, held_out_sentence
from lungai.nlb.data import IMAGE_SUFFIXES, read_snapshot
from lungai.nlb.evaluation import evaluate_snapshot_folder, predict, seg_threshold_of
from lungai.nlb.framing import SNAPSHOT_PIXEL_MM, SNAPSHOT_SIZE
from lungai.nlb.intensity import HU_WINDOW, INPUT_SIZE, prepare_slices, to_grey
from lungai.nlb.lungview import ct_lung_view, snapshot_lung_region, snapshot_lung_view
from lungai.nlb.networks import build_nlb_unet
from lungai.nlb.regions import findings_region, snapshot_parenchyma
from lungai.nlb.training import NLBData, evaluate_split, make_split, train_nlb, uses_lung_view
from lungai.outputs import staged_folder
from lungai.plotting import radiological_view, save_line_chart, save_overlay_png
from lungai.progress import CancelToken, ProgressCallback, report, subrange
from lungai.registry import load_for_module, publish
from lungai.segments import TERMINOLOGY_NEOPLASM, SegmentSpec
from lungai.training import TrainConfig, seed_everything
from lungai.ugsnet.data import load_npz
from lungai.volume import Volume

NEOPLASM_SEGMENT = SegmentSpec("Neoplasm", 1, (0.89, 0.35, 0.21), TERMINOLOGY_NEOPLASM)
DEFAULT_MODEL_ID = DESCRIPTOR.default_model_id
SLICES_CSV, SEGMENTATION, PLOT_PNG, OVERLAY_PNG, SUMMARY_JSON = DESCRIPTOR.outputs


def most_likely_slice(probabilities: np.ndarray, decisions: np.ndarray) -> int:
    """The most probable slice among those reported positive; the most probable slice when none is (on CT a slice
    can score high and still not be reported, e.g. one without lung: it is not shown as the finding)."""
    probabilities, decisions = np.asarray(probabilities, dtype=float), np.asarray(decisions, dtype=bool)
    return int(np.argmax(np.where(decisions, probabilities, -1.0) if decisions.any() else probabilities))


@dataclass
class SliceScores:
    """Per-slice results in the input array's own (z, y, x) order."""

    probabilities: np.ndarray  # (Z,) neoplasm probability per slice
    threshold: float  # decision threshold on the probability
    labelmap: np.ndarray  # (Z, H, W) uint8: 1 = neoplasm region (only on positive slices, only in the lungs)
    intensity: str  # "HU" or "8-bit": how the input was mapped to [0, 1]
    # (Z,) bool: the slice may be reported positive (on CT: it shows lung and the segmentation located the finding
    # inside the lungs); None: every slice may (snapshots, whose lungs are not known)
    reportable: np.ndarray | None = None

    @property
    def decisions(self) -> np.ndarray:
        decisions = self.probabilities >= self.threshold
        return decisions if self.reportable is None else decisions & self.reportable

    @property
    def most_likely_slice(self) -> int:
        return most_likely_slice(self.probabilities, self.decisions)

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
    spacing: tuple[float, float, float] | None = None,
    threshold: float = 0.5,
    seg_threshold: float = 0.5,
    size: int = INPUT_SIZE,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    restrict: bool = True,
    tta: bool = False,
) -> SliceScores:
    """Classify and segment every slice of ``array`` ((Z, H, W) volume, (H, W) image or (H, W, 3|4) colour).

    ``spacing``: (x, y, z) voxel size in mm, needed for CT in HU (framing and lung field). ``seg_threshold``: on the
    segmentation probability; use the model's calibrated value (:func:`lungai.nlb.evaluation.seg_threshold_of` of
    its checkpoint header). ``restrict=False`` returns the network's own output, not cut to the lungs (to measure
    what the restriction removes). ``tta``: average the network over the slice as given and flipped left-right
    (:func:`lungai.nlb.evaluation.predict`).
    """
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"the decision threshold must lie in [0, 1], got {threshold}")
    flips = _radiological_flips(direction) if direction is not None else (False, False)
    array = to_grey(np.asarray(array))
    array = array[None] if array.ndim == 2 else array
    region = findings_region(array, spacing, direction)
    pixel_mm = None if spacing is None else (float(spacing[1]), float(spacing[0]))
    body = _flip(region.body, *flips)
    images, framing, kind = prepare_slices(_flip(array, *flips), pixel_mm, body, size)
    if uses_lung_view(model):
        views = lung_views(_flip(array, *flips), kind, _flip(region.lungs, *flips))
        images = torch.cat([images, framing.apply(views)], dim=1)
    probabilities, maps = predict(
        model, images, batch_size=batch_size, device=device, progress=progress, cancel=cancel, tta=tta
    )
    has_lung = region.lungs.any(axis=(1, 2)) if restrict else np.ones(len(probabilities), dtype=bool)
    allowed = region.lungs if restrict else np.ones_like(region.lungs)
    positive = (probabilities >= threshold) & has_lung
    labelmap = np.zeros((len(probabilities), framing.height, framing.width), dtype=np.uint8)
    if positive.any():
        restored = framing.restore(torch.from_numpy(maps[positive])[:, None]).numpy()
        labelmap[positive] = _flip(restored >= seg_threshold, *flips) & allowed[positive]
    if region.snapshot or not restrict:
        return SliceScores(probabilities, threshold, labelmap, kind)
    return SliceScores(probabilities, threshold, labelmap, kind, labelmap.any(axis=(1, 2)))


def lung_views(array: np.ndarray, kind: str, lungs: np.ndarray) -> np.ndarray:
    """The lung view (:mod:`lungai.nlb.lungview`) of grey slices (Z, H, W): in HU inside the shared lung field
    ``lungs``; for 8-bit snapshots from each slice's own black lung region (``lungs`` unused)."""
    if kind == "HU":
        return ct_lung_view(np.asarray(array, dtype=np.float32), lungs)
    units = np.asarray(array, dtype=np.float32) / 255.0
    pixel_mm = SNAPSHOT_PIXEL_MM * SNAPSHOT_SIZE / max(units.shape[1:])
    return np.stack([snapshot_lung_view(u, snapshot_lung_region(snapshot_parenchyma(u, pixel_mm))) for u in units])


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
    return score_slices(model, volume.array, volume.direction, spacing=volume.spacing, **kwargs)


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
            title=f"slice {k}: neoplasm probability {scores.probabilities[k]:.2f}"
            + ("" if scores.decisions[k] else " (not reported: no finding located in the lungs)"),
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
    """``lungai nlb train``: whole IQ-OTH/NCCD snapshots, and normal ones with real LIDC-IDRI nodules inserted
    (:mod:`lungai.nlb.training`). The defaults are the bundled model's recipe."""

    iqoth: str = ""
    lidc: str = ""
    block: str = "symmetry_localized"
    widths: tuple[int, ...] = (8, 16, 32, 64, 128)
    epochs: int = 24
    batch_size: int = 16
    lr: float = 2e-3
    inserted_per_normal: float = 1.0
    degrade_prob: float = 0.5
    lung_view: bool = False  # measured trade-off in bench/nlb/recipe_runs/README.md: off in the bundled model
    inserted_class_share: float = 0.5
    patience: int = 8  # with keep="best" only
    # The last epoch, no early stopping (lungai.training, model selection): the loss on 70 validation snapshots
    # picked early, lucky epochs (seed 1: epoch 15, F1 0.837; bench/nlb/recipe_runs/README.md).
    keep: str = "last"
    folds: int = 5
    held_out_fold: int = 0  # -1: train on everything


def train(config: Training, *, progress: ProgressCallback | None = None, cancel=None) -> TrainOutcome:
    """Train, evaluate the held-out fold (``metrics.json`` with the split), optionally publish under
    ``config.register``."""
    if config.block not in BLOCK_TYPES:
        raise InputError(f"Unknown block type '{config.block}'; choose one of {', '.join(BLOCK_TYPES)}.")
    held_out = None if config.held_out_fold < 0 else config.held_out_fold
    out = Path(config.out)
    load_npz(config.lidc)  # a clear error for a file that is not a multi-reader .npz
    data = NLBData.load(config.iqoth, config.lidc)
    split = make_split(data.categories, data.nodule_patients, config.folds, held_out, config.seed)
    model_config = {"block_type": config.block, "widths": list(config.widths)}
    if config.lung_view:
        model_config["in_channels"] = 2
    device = resolve_device(config.device)
    with staged_folder(out, expected=["best.pt", "last.pt", "metrics.json"]) as work:
        schedule = TrainConfig(
            epochs=config.epochs,
            batch_size=config.batch_size,
            lr=config.lr,
            scheduler="cosine",
            min_lr=config.lr / 50,
            seed=config.seed,
            device=str(device),
            out_dir=str(work),
            monitor="loss",
            monitor_mode="min",
            patience=config.patience if config.keep == "best" else None,
            keep=config.keep,
            restore_best=True,
            ema_decay=config.ema,
        )
        seed_everything(config.seed)
        model = build_nlb_unet(**model_config)
        checkpoint, seg_threshold = train_nlb(
            model,
            model_config,
            data,
            split,
            schedule,
            inserted_per_normal=config.inserted_per_normal,
            degrade_prob=config.degrade_prob,
            inserted_class_share=config.inserted_class_share,
            progress=subrange(progress, 0.0, 0.9),
            cancel=cancel,
        )
        held = evaluate_split(model, data, split.test, split.test_nodules, seg_threshold, config.seed + 3)
        metrics = {**{f"held_out_{k}": v for k, v in held.items()}, "seg_threshold": seg_threshold}
        (work / "metrics.json").write_text(json.dumps({**metrics, "split": split.record}, indent=2) + "\n")
    outcome = TrainOutcome(out / checkpoint.name, metrics, [])
    if config.register:
        outcome.registered = publish_weights(
            outcome.checkpoint,
            config.register,
            command=config.command,
            metrics={k: v for k, v in metrics.items() if not isinstance(v, list)},
            held_out=split.record,
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
    held_out: dict[str, Any] | None = None,
):
    """Publish an ``nlb_unet`` checkpoint with its one-thread CPU latency per slice; ``held_out`` (a split record
    of :func:`lungai.nlb.training.make_split`) becomes the sentence ``metrics["held_out"]``."""
    model, header = load_model(checkpoint, expected_model="nlb_unet")
    variant = header["config"].get("block_type")
    return publish(
        checkpoint,
        model_id,
        module=DESCRIPTOR.slicer_module,
        licence=LICENCE,
        command=command,
        metrics={**metrics, **({"held_out": held_out_sentence(held_out)} if held_out else {})},
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
    fold: int | None = None,
    folds: int = 5,
    seed: int = 0,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    tta: bool = False,
) -> dict:
    """Classification metrics (and segmentation inside the body) on a folder in the iqoth_nccd layout, or on one
    ``fold`` of it (the training split): ``metrics.json`` and ``predictions.csv``; ``tta``: left-right flip
    averaging."""
    about = {"model": model.source, "block_type": model.header.get("config", {}).get("block_type")}
    with staged_folder(out_dir, overwrite, expected=["metrics.json", "predictions.csv"]) as work:
        return evaluate_snapshot_folder(
            model.network,
            data,
            work,
            threshold=threshold,
            seg_threshold=seg_threshold_of(model.header),
            fold=fold,
            n_folds=folds,
            seed=seed,
            device=model.device,
            progress=progress,
            cancel=cancel,
            overwrite=True,
            about=about,
            tta=tta,
        )
