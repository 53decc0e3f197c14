"""CHS-Net's module contract (:mod:`lungai.contract`): load, run on a CT volume, write, read, train, evaluate.

CHS-Net on a CT volume: lungs split by side, infection, and the infection burden table.

Every axial slice is turned to display orientation (rows anterior -> posterior, columns patient
right -> left, the orientation the networks learn in), segmented by the :class:`Cascade` on its
own pixel grid (resized to the model grid and back), and turned back, so the outputs share the
volume's geometry exactly.

Right versus left lung (the network predicts "lung" only): the lung mask is cleaned of 3-D
components that touch the in-plane edge of the field of view (air outside the body; kept if
nothing else is left) and of components smaller than 1 % of the rest; when the two largest
components each hold at least 20 % of the lungs, each is one lung and the one further towards
patient left (larger LPS x of its centroid) is the left lung; otherwise (lungs touching, or one
lung) voxels are split by the sagittal plane halfway between the leftmost and rightmost lung voxels (LPS x).

Anatomical limits (:mod:`lungai.covid.anatomy`, with the shared HU lung field): nothing outside the body,
lungs that stop at the airways, infection only in components that touch the aerated lungs.

Slices where stage 1 finds no lung get no infection (hierarchical modes). A volume with no lung at
all is refused: it is probably not a chest CT (or not a lung window of one). A one-slice 8-bit image
(the MedSeg format) goes to :mod:`lungai.covid.snapshot`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from lungai.checkpoint import load_model
from lungai.contract import LoadedModel, SavedResult, TrainOptions, TrainOutcome
from lungai.covid import DESCRIPTOR
from lungai.covid.anatomy import constrain
from lungai.covid.bundle import (
    HELD_OUT_FOLD,
    doctor_split,
    held_out_names,
    measure,
    registry_metrics,
    save_trained,
)
from lungai.covid.cascade import THRESHOLD, Cascade
from lungai.covid.data import load_medseg_folder
from lungai.covid.evaluation import infection_metrics
from lungai.covid.folding import fold_batchnorm
from lungai.covid.intensity import hu_to_unit
from lungai.covid.orientation import check_axial, from_display, to_display
from lungai.covid.raiunet import PAPER_WIDTHS
from lungai.covid.snapshot import as_snapshot, segment_snapshot
from lungai.covid.training import CPU_WIDTHS, LUNG_WIDTHS, Recipe, TrainedCHSNet, train_chsnet
from lungai.device import resolve_device
from lungai.errors import CheckpointError, InputError, LungAIError
from lungai.io import read_segmentation, read_table_csv, write_segmentation, write_table_csv
from lungai.lungfield import lung_field
from lungai.outputs import staged_folder
from lungai.progress import CancelToken, ProgressCallback, report, subrange
from lungai.registry import ModelEntry, load_for_module, publish
from lungai.segments import (
    TERMINOLOGY_INFECTION,
    TERMINOLOGY_LEFT_LUNG,
    TERMINOLOGY_RIGHT_LUNG,
    SegmentSpec,
    pack_masks,
    unpack_masks,
)
from lungai.validation import validate_ct
from lungai.volume import Volume

RIGHT_LUNG = SegmentSpec("Right lung", 1, (0.35, 0.75, 0.35), TERMINOLOGY_RIGHT_LUNG)
LEFT_LUNG = SegmentSpec("Left lung", 2, (0.30, 0.50, 0.90), TERMINOLOGY_LEFT_LUNG)
INFECTION = SegmentSpec("Infection", 3, (0.90, 0.20, 0.15), TERMINOLOGY_INFECTION)
SEGMENTS = (RIGHT_LUNG, LEFT_LUNG, INFECTION)
_TIE_MM = 1e-3  # voxels on the midline go to the right lung, whatever the float rounding of the geometry
TABLE_COLUMNS = ("Region", "Lung volume (mL)", "Infection volume (mL)", "Infected (%)")


@dataclass
class BurdenResult:
    """Binary masks ``(z, y, x)`` on the input volume's grid, by segment name, and the table rows."""

    masks: dict[str, np.ndarray]
    table: list[dict]


def _lps_x(volume: Volume) -> np.ndarray:
    """LPS x (mm, + towards patient left) of every voxel, ``(z, y, x)``."""
    k, j, i = (np.arange(n, dtype=np.float32) for n in volume.shape)
    m = volume.ijk_to_lps().astype(np.float32)
    x = (m[0, 0] * i + m[0, 3])[None, None, :] + (m[0, 1] * j)[None, :, None]  # one full array, not four
    return x + (m[0, 2] * k)[:, None, None]


def split_lungs(lungs: np.ndarray, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) lung masks from one lung mask (module docstring)."""
    labels, count = ndimage.label(lungs)
    if count == 0:
        return np.zeros_like(lungs, dtype=bool), np.zeros_like(lungs, dtype=bool)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    edge = np.zeros(lungs.shape, dtype=bool)
    edge[:, [0, -1], :] = True
    edge[:, :, [0, -1]] = True
    inside = np.ones(count, dtype=bool)
    inside[np.unique(labels[edge & lungs]) - 1] = False
    if (sizes * inside).sum() > 0:  # air outside the body touches the field of view; lungs do not
        sizes = sizes * inside
    keep = np.flatnonzero(sizes >= 0.01 * sizes.sum()) + 1
    lungs = np.isin(labels, keep)
    x = _lps_x(volume)
    order = keep[np.argsort(sizes[keep - 1])[::-1]]
    if len(order) >= 2 and sizes[order[1] - 1] >= 0.2 * sizes[keep - 1].sum():
        first, second = labels == order[0], labels == order[1]
        left_first = x[first].mean() > x[second].mean()
        left, right = (first, second) if left_first else (second, first)
        # smaller pieces go to the side of the nearer big component's centroid
        rest = lungs & ~first & ~second
        midline = (x[first].mean() + x[second].mean()) / 2
        left = left | (rest & (x > midline + _TIE_MM))
        right = right | (rest & (x <= midline + _TIE_MM))
        return right, left
    midline = (x[lungs].min() + x[lungs].max()) / 2
    return lungs & (x <= midline + _TIE_MM), lungs & (x > midline + _TIE_MM)


def burden_table(right: np.ndarray, left: np.ndarray, infection: np.ndarray, voxel_mm3: float | None) -> list[dict]:
    """Rows: right lung, left lung, both lungs. Volumes are voxel counts x voxel volume (mL), blank (None)
    when ``voxel_mm3`` is None (a 2-D snapshot without pixel size).

    Infection per lung is the infection inside that lung; "Both lungs" reports all infection
    voxels (with masking they are all inside the lungs) and the share of lung voxels infected.
    """
    ml = None if voxel_mm3 is None else voxel_mm3 / 1000.0

    def row(region: str, lung: np.ndarray, infected: np.ndarray, inside: np.ndarray) -> dict:
        lung_voxels = int(np.count_nonzero(lung))
        share = 100.0 * np.count_nonzero(inside) / lung_voxels if lung_voxels else 0.0
        return {
            "Region": region,
            "Lung volume (mL)": None if ml is None else round(lung_voxels * ml, 3),
            "Infection volume (mL)": None if ml is None else round(int(np.count_nonzero(infected)) * ml, 3),
            "Infected (%)": round(share, 2),
        }

    both = right | left
    return [
        row("Right lung", right, infection & right, infection & right),
        row("Left lung", left, infection & left, infection & left),
        row("Both lungs", both, infection, infection & both),
    ]


def segment_volume(
    volume: Volume, cascade: Cascade, progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> BurdenResult:
    """Lungs (split by side), infection and the burden table for a CT volume in HU."""
    if not cascade.hierarchical:
        raise ValueError("segment_volume needs a hierarchical cascade (lungs then infection)")
    grey = as_snapshot(volume)
    if grey is not None:  # one 8-bit windowed slice (MedSeg format), not HU
        masks = {
            name: mask[None] for name, mask in segment_snapshot(grey, cascade, progress=progress, cancel=cancel).items()
        }
        return BurdenResult(
            masks, burden_table(masks[RIGHT_LUNG.name], masks[LEFT_LUNG.name], masks[INFECTION.name], None)
        )
    if volume.array.ndim != 3:
        raise InputError(f"Expected a 3-D CT volume, got an array of shape {volume.array.shape}.")
    validate_ct(volume)
    check_axial(volume)
    results = cascade.segment(list(to_display(hu_to_unit(volume.array), volume)), progress, cancel)
    lungs = from_display(np.stack([r.lung > THRESHOLD for r in results]), volume)
    infection = from_display(np.stack([r.infection > THRESHOLD for r in results]), volume)
    del results  # two float maps per slice: 630 MB on a 512 x 512 x 300 CT, no longer needed
    lungs, infection = constrain(lungs, infection, lung_field(volume), volume.array)
    right, left = split_lungs(lungs, volume)
    if not (right.any() or left.any()):
        raise InputError(
            "No lungs were found in this volume. CHS-Net expects an axial chest CT in Hounsfield units "
            "that shows the lungs."
        )
    if cascade.lung_input == "mask":
        infection &= right | left
    masks = {RIGHT_LUNG.name: right, LEFT_LUNG.name: left, INFECTION.name: infection}
    return BurdenResult(masks, burden_table(right, left, infection, volume.voxel_volume_mm3))


OUTPUT_NAMES = DESCRIPTOR.outputs  # segmentation.seg.nrrd, burden.csv


def write_outputs(result: BurdenResult, volume: Volume, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """``segmentation.seg.nrrd`` (overlapping segments in layers) and ``burden.csv`` in ``out_dir``.

    Nothing is written when either file exists and ``overwrite`` is False, or when writing fails.
    """
    out_dir = Path(out_dir)
    with staged_folder(out_dir, overwrite, expected=OUTPUT_NAMES) as work:
        layers, specs = pack_masks([result.masks[s.name] for s in SEGMENTS], list(SEGMENTS))
        write_segmentation(work / OUTPUT_NAMES[0], volume.like(layers), specs)
        write_table_csv(work / OUTPUT_NAMES[1], result.table)
    return [out_dir / name for name in OUTPUT_NAMES]


# --- the contract ------------------------------------------------------------------------------------------

LICENCE = (
    "Non-commercial research use only: trained on the MedSeg COVID-19 CT segmentation slices (non-commercial "
    "research licence), Semi-Inf-Net pseudo labels of COVID-19 CT slices from coronacases.org and Radiopaedia "
    "(CC BY-NC-SA) as distributed with Inf-Net, and the slicerio CTChest4 sample (3D Slicer sample data)."
)


@dataclass
class CHSNetResult:
    """What :func:`run` found: the CT and its lungs, infection and burden table."""

    volume: Volume
    burden: BurdenResult


def load(weights: str | Path | None = None, model_id: str | None = None, device="auto") -> LoadedModel:
    """The CHS-Net cascade (``network`` is a :class:`Cascade`) of a file, a registry id or the bundled model.

    Its ``network.tta`` averages the infection probability over left-right flips: on when the model was trained
    with ``tta`` (its recipe in the header says so), else off (:func:`evaluate` can switch it on)."""
    loaded = load_for_module(DESCRIPTOR, weights, model_id, device)
    if loaded.architecture != "chsnet":
        raise CheckpointError(f"{loaded.source} holds a '{loaded.architecture}' stage; give a whole chsnet model.")
    extra = loaded.header.get("extra", {})
    size = extra.get("input_size")
    if not isinstance(size, int):
        raise CheckpointError(f"The CHS-Net checkpoint {loaded.source} does not record its input_size.")
    network = fold_batchnorm(loaded.network)  # inference only: BatchNorms folded into the convolutions
    loaded.network = Cascade.from_chsnet(network, size, loaded.device, lung_size=extra.get("lung_input_size"))
    loaded.network.tta = bool(extra.get("recipe", {}).get("tta", False))  # trained with --tta: flips by default
    return loaded


def run(
    volume: Volume,
    model: LoadedModel,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> CHSNetResult:
    """Lungs (split by side), infection and the burden table of a CT volume in HU."""
    return CHSNetResult(volume, segment_volume(volume, model.network, progress, cancel))


def write(result: CHSNetResult, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    return write_outputs(result.burden, result.volume, out_dir, overwrite)


def read(out_dir: str | Path) -> SavedResult:
    """The segments and burden table :func:`write` put into ``out_dir``; refuses a folder lacking a segment."""
    out_dir = Path(out_dir)
    labelmap, specs = read_segmentation(out_dir / OUTPUT_NAMES[0])
    masks = unpack_masks(labelmap.array, specs)
    missing = [s.name for s in SEGMENTS if s.name not in masks]
    if missing:
        raise LungAIError(f"The result in {out_dir} lacks the segments {missing}; run lungai covid segment again.")
    masks = {s.name: np.asarray(masks[s.name], dtype=bool) for s in SEGMENTS}
    tables = {OUTPUT_NAMES[1]: read_table_csv(out_dir / OUTPUT_NAMES[1])}
    return SavedResult(out_dir, masks, list(SEGMENTS), tables, {"segmentation": labelmap})


@dataclass
class Training(TrainOptions):
    """``lungai covid train``: both stages (lungs; infection pre-trained on pseudo labels, fine-tuned on doctor
    labels), measured on the held-out doctor-labelled slices, one chsnet checkpoint (:mod:`lungai.covid.training`).
    """

    data: str = ""  # doctor-labelled slices, covid_infection_medseg layout
    pseudo: str | None = None  # pseudo-labelled slices, covid_pseudo_infnet layout
    size: int = Recipe.size
    lung_size: int = Recipe.lung_size
    widths: tuple[int, ...] = CPU_WIDTHS
    lung_widths: tuple[int, ...] = LUNG_WIDTHS
    variant: str = Recipe.variant
    lung_epochs: int = Recipe.lung_epochs
    pretrain_epochs: int = Recipe.pretrain_epochs
    pretrain_steps: int | None = Recipe.pretrain_steps
    finetune_epochs: int = Recipe.finetune_epochs
    pseudo_stride: int = Recipe.pseudo_stride
    lung_input: str = Recipe.mode
    batch_size: int = Recipe.batch_size
    lr: float = Recipe.lr
    finetune_lr: float = Recipe.finetune_lr
    orientation: str = "transposed"
    lung_weights: str | None = None  # reuse a trained lung stage (trained at lung_size)
    limit: int | None = None
    tta: bool = False  # the model averages over left-right flips at inference (measured so, recorded)
    members: int = Recipe.members  # infection networks from consecutive seeds, probabilities averaged
    held_out_fold: int = HELD_OUT_FOLD  # which fold of the doctor-labelled split is held out (0 cross-validates)

    def recipe(self) -> Recipe:
        return Recipe(
            mode=self.lung_input,
            variant=self.variant,
            size=self.size,
            lung_size=self.lung_size,
            widths=tuple(self.widths),
            lung_widths=tuple(self.lung_widths),
            lung_epochs=self.lung_epochs,
            pretrain_epochs=self.pretrain_epochs if self.pseudo else 0,
            pretrain_steps=self.pretrain_steps,
            finetune_epochs=self.finetune_epochs,
            pseudo_stride=self.pseudo_stride,
            batch_size=self.batch_size,
            lr=self.lr,
            finetune_lr=self.finetune_lr,
            tta=self.tta,
            ema=self.ema,
            seed=self.seed,
            members=self.members,
            device=str(resolve_device(self.device)),
        )


def train(config: Training, *, progress: ProgressCallback | None = None, cancel=None) -> TrainOutcome:
    """Train both stages (the lung stage unless reused), measure on the held-out doctor-labelled slices
    (:func:`lungai.covid.bundle.split_text`), write ``chsnet.pt``; optionally publish."""
    recipe = config.recipe()
    out = Path(config.out)
    doctor_source = Path(config.data).name
    pseudo_source = Path(config.pseudo).name if config.pseudo else "no pseudo-labelled"
    train_slices, held_out = doctor_split(
        load_medseg_folder(config.data, config.orientation)[: config.limit], config.held_out_fold
    )
    pseudo = load_medseg_folder(config.pseudo, config.orientation)[: config.limit] if config.pseudo else []
    lung = None
    if config.lung_weights:
        network, header = load_model(config.lung_weights, "cpu", expected_model="raiunet")
        lung = (network, header["config"], header.get("training_data") or Path(config.lung_weights).name)
    started = time.perf_counter()
    with staged_folder(out, expected=["chsnet.pt"]) as work:
        trained = train_chsnet(
            recipe,
            train_slices,
            pseudo,
            work,
            doctor_source=doctor_source,
            pseudo_source=pseudo_source,
            lung=lung,
            progress=subrange(progress, 0.0, 0.97),
            cancel=cancel,
        )
        seconds = time.perf_counter() - started
        metrics = measure(trained, held_out)
        save_trained(work / "chsnet.pt", trained, held_out, doctor_source, metrics, config.held_out_fold)
    flat = {f"held_out_{stage}_{k}": v for stage, values in metrics.items() for k, v in values.items()}
    outcome = TrainOutcome(out / "chsnet.pt", flat)
    if config.register:
        outcome.registered = publish_trained(
            outcome.checkpoint,
            trained,
            metrics,
            model_id=config.register,
            command=config.command,
            held_out=len(held_out),
            doctor_source=doctor_source,
            held_out_fold=config.held_out_fold,
            seconds=seconds,
            threads=torch.get_num_threads(),
        )
    report(progress, 1.0, "done")
    return outcome


def publish_trained(
    checkpoint: Path,
    trained: TrainedCHSNet,
    metrics: dict[str, dict[str, float]],
    *,
    model_id: str,
    command: str,
    held_out: int,
    doctor_source: str,
    held_out_fold: int,
    seconds: float,
    threads: int,
) -> ModelEntry:
    """Register a trained CHS-Net checkpoint with its recipe described, held-out metrics and the training's
    seconds with the torch threads they ran on."""
    recipe = trained.recipe
    widths = "the paper's widths" if recipe.widths == PAPER_WIDTHS else "widths of our choice"
    return publish(
        checkpoint,
        model_id,
        module=DESCRIPTOR.slicer_module,
        licence=LICENCE,
        command=command,
        description=(
            "CHS-Net (seed 003): RAIU-Nets with SSD attention, a lung stage then an infection stage, "
            f"{widths} {list(recipe.widths)} (50% growth per stage; lung stage {list(recipe.lung_widths)}), "
            f"infection grid {recipe.size} px, lung grid {recipe.lung_size} px, lung_input={recipe.mode}"
            + (
                f", {recipe.members} infection networks (seeds {recipe.seed}-{recipe.seed + recipe.members - 1}) "
                "with their probabilities averaged"
                if recipe.members > 1
                else ""
            )
            + (", infection averaged over left-right flips at inference" if recipe.tta else "")
            + (f", every stage's weights an exponential moving average (decay {recipe.ema})" if recipe.ema else "")
        ),
        metrics=registry_metrics(metrics, held_out, doctor_source, held_out_fold),
        timings={
            "train_seconds": round(seconds, 1),
            "torch_threads": threads,
            **{f"{k}_seconds": round(v, 1) for k, v in trained.seconds.items()},
        },
    )


def evaluate(
    data: str | Path,
    out_dir: str | Path,
    model: LoadedModel,
    *,
    orientation: str = "transposed",
    held_out: bool = False,
    tta: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict:
    """Infection metrics of the hierarchical model on a labelled folder: ``metrics.json`` and ``per_slice.csv``.

    They score the networks' infection output, as the training's held-out figures in the registry do, before the
    anatomical limits of the shared lung field that :func:`segment_volume` applies (``bench/covid/module_path.md``
    compares the two).

    ``held_out`` keeps only the slices the checkpoint lists as held out from its training; ``tta`` averages the
    infection stage over left-right flips (already on for a model trained with ``tta``)."""
    out_dir = Path(out_dir)
    model.network.tta = tta or model.network.tta
    slices = load_medseg_folder(data, orientation)
    if held_out:
        names = set(held_out_names(model.header))
        slices = [s for s in slices if s.name in names]
        if not slices:
            raise InputError(f"None of the slices in {data} is among the checkpoint's held-out slices.")
    with staged_folder(out_dir, overwrite, expected=["metrics.json", "per_slice.csv"]) as work:
        cascade = model.network
        metrics, rows = infection_metrics(cascade, slices, progress, cancel)
        result = {
            "mode": "hierarchical",
            "lung_input": cascade.lung_input,
            "input_size": cascade.size,
            "slices": len(slices),
            "held_out_only": held_out,
            "tta": cascade.tta,
            "data": Path(data).name,
            "weights": model.source,
            "infection": {k: round(v, 4) for k, v in metrics.items()},
        }
        (work / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        write_table_csv(
            work / "per_slice.csv",
            [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in rows],
        )
    return result
