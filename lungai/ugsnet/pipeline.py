"""UGS-Net's module contract (:mod:`lungai.contract`): load, run on a CT with nodule points, write, read, train,
and evaluate on multi-reader crops.

Nodule points in, final / high-confidence / low-confidence masks and measurements out.

For each point (RAS, Slicer's world frame) the network input, the 64 x 64 native pixels of the axial slice around
the point (:mod:`lungai.ugsnet.preprocess`), is segmented, and the sigmoid maps are placed back on the slice.
The nodule is followed slice by slice up and down while its final mask still overlaps the previous slice's (at
most ``max_extent_mm`` through the point), so each nodule gets the axial slices that actually contain it.
HC = intersection head AND union head, LC = union minus HC, each restricted to the connected region
that holds the final nodule.

Bad input: a point outside the volume, a non-axial volume or in-plane spacing coarser than
``MAX_INPLANE_SPACING_MM`` raise InputError before any work; in-plane pixels outside the training range
(:data:`lungai.ugsnet.preprocess.TRAINED_SPACING_MM`: the network sees native pixels, so the nodule's size in
pixels follows the scan), a point whose surroundings hold almost no lung
parenchyma, a nodule that reaches the volume's edge, slices thicker than ``THICK_SLICE_MM`` or no nodule
found at the point (nothing predicted, or only air) are reported per nodule in ``NoduleResult.warnings``
(and the table).
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from lungai.checkpoint import load_checkpoint
from lungai.contract import LoadedModel, SavedResult, TrainOptions, TrainOutcome
from lungai.device import resolve_device
from lungai.errors import InputError
from lungai.io import read_segmentation, read_table_csv, write_segmentation, write_table_csv
from lungai.outputs import check_outputs, staged_folder
from lungai.plotting import save_overlay_png
from lungai.progress import CancelToken, ProgressCallback, check_cancel, report, subrange
from lungai.registry import load_for_module, publish
from lungai.segments import TERMINOLOGY_NODULE, SegmentSpec, pack_masks, unpack_masks
from lungai.training import TrainConfig
from lungai.ugsnet import DESCRIPTOR, evaluation
from lungai.ugsnet.data import load_npz, prepare_crops
from lungai.ugsnet.evaluation import evaluate_crops
from lungai.ugsnet.inference import predict_probabilities
from lungai.ugsnet.networks import DEMO_FEATURES
from lungai.ugsnet.preprocess import INPUT_SIZE, TRAINED_SPACING_MM, extract_patch, paste_patch
from lungai.ugsnet.task import BUDGET_ATTENTION_POOL
from lungai.ugsnet.training import BUDGET_TRAIN, split_by_patient, train_model
from lungai.validation import validate_ct
from lungai.volume import Volume

SEGMENTATION, TABLE = "nodules.seg.nrrd", "nodules.csv"
LICENCE = "Apache-2.0 (weights trained on LIDC-IDRI, CC BY 3.0)"

MAX_INPLANE_SPACING_MM = 1.5
THICK_SLICE_MM = 5.0
LUNG_HU_RANGE = (-950.0, -500.0)
MIN_LUNG_FRACTION = 0.05
MIN_NODULE_HU = -850.0
REGION_NAMES = ("final", "high", "low", "union")


@dataclass
class NoduleResult:
    """Masks of one nodule on the slab of slices ``first_slice .. first_slice + len - 1`` (full y, x)."""

    number: int
    point_ras: tuple[float, float, float]
    point_ijk: tuple[float, float, float]
    first_slice: int
    masks: dict[str, np.ndarray]  # name -> (slices, y, x) bool
    warnings: list[str] = field(default_factory=list)

    @property
    def slices(self) -> list[int]:
        used = np.nonzero(self.masks["final"].any((1, 2)))[0]
        return [int(self.first_slice + s) for s in used]

    def full_mask(self, name: str, shape: tuple[int, int, int]) -> np.ndarray:
        """The region ``name`` (final, high, low, union) as a (z, y, x) mask of the whole volume."""
        full = np.zeros(shape, bool)
        full[self.first_slice : self.first_slice + len(self.masks[name])] = self.masks[name]
        return full


def ras_to_ijk(volume: Volume, point_ras) -> np.ndarray:
    """Continuous voxel index (i, j, k) of a RAS point."""
    ras = np.append(np.asarray(point_ras, dtype=float), 1.0)
    return (np.linalg.inv(volume.ijk_to_ras()) @ ras)[:3]


def check_volume_and_points(volume: Volume, points_ras) -> np.ndarray:
    """Validate the CT and every point; returns the points' voxel indices (P, 3) in (i, j, k)."""
    validate_ct(volume, max_spacing_mm=MAX_INPLANE_SPACING_MM)
    if not volume.is_axial():
        raise InputError(
            "UGS-Net segments axial slices, but this volume's slices are not axial; resample it to an "
            "axial orientation first (Resample Scalar/Vector/DWI Volume or Crop Volume)."
        )
    points = np.asarray(points_ras, dtype=float).reshape(-1, 3)
    if len(points) == 0:
        raise InputError("No nodule points were given; place one point on each nodule.")
    ijk = np.stack([ras_to_ijk(volume, p) for p in points])
    shape_ijk = np.array(volume.shape[::-1], dtype=float)
    for n, (p, index) in enumerate(zip(points, ijk), start=1):
        if np.any(index < -0.5) or np.any(index > shape_ijk - 0.5):
            corners = [volume.ijk_to_ras() @ np.array([*c, 1.0]) for c in ([0, 0, 0], list(shape_ijk - 1))]
            low, high = np.minimum(corners[0], corners[1])[:3], np.maximum(corners[0], corners[1])[:3]
            raise InputError(
                f"Point {n} at RAS ({p[0]:.1f}, {p[1]:.1f}, {p[2]:.1f}) mm lies outside the volume "
                f"(RAS from {np.round(low, 1).tolist()} to {np.round(high, 1).tolist()} mm); "
                "move it onto the nodule."
            )
    return ijk


def _slice_probabilities(model, volume: Volume, k: int, center_rc, device) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sigmoid maps of every head on slice k's pixel grid (zero outside the patch) and the HU patch."""
    patch = extract_patch(volume.array[k].astype(np.float32), center_rc)
    probabilities = predict_probabilities(model, patch[None], device=device)
    shape = volume.shape[1:]
    return {name: paste_patch(p[0], center_rc, shape) for name, p in probabilities.items()}, patch


def _regions(
    prob: dict[str, np.ndarray], keep: np.ndarray, threshold: float, slice_hu: np.ndarray
) -> dict[str, np.ndarray] | None:
    """Binary regions of one slice, restricted to the final component(s) overlapping ``keep``.

    None when nothing overlaps ``keep`` or when the region is air (mean below ``MIN_NODULE_HU``): the network
    only ever saw nodule-centred crops and paints a central blob even on empty lung, so air is rejected here.
    """
    final = prob["final"] > threshold
    labels, count = ndimage.label(final)
    touching = np.unique(labels[keep & final])
    final = np.isin(labels, touching[touching > 0])
    if not final.any() or slice_hu[final].mean() < MIN_NODULE_HU:
        return None
    union = (prob["union"] > threshold) | final if "union" in prob else final.copy()
    labels, _ = ndimage.label(union)
    touching = np.unique(labels[final])
    union = np.isin(labels, touching[touching > 0])
    high = (prob["intersection"] > threshold) & union if "intersection" in prob else final.copy()
    return {"final": final, "high": high, "low": union & ~high, "union": union}


def segment_nodules(
    volume: Volume,
    points_ras,
    model: torch.nn.Module,
    *,
    device: str | torch.device = "cpu",
    threshold: float = 0.5,
    max_extent_mm: float = 40.0,
    seed_radius_mm: float = 3.0,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> list[NoduleResult]:
    """Segment the nodule at each RAS point. See the module docstring for the procedure and warnings."""
    ijk = check_volume_and_points(volume, points_ras)
    model.eval().to(device)
    slices, rows, cols = volume.shape
    sx, sy, sz = volume.spacing
    reach = max(0, int(round(max_extent_mm / 2 / sz)))
    results = []
    for n, (point, (i, j, k)) in enumerate(zip(np.asarray(points_ras, float).reshape(-1, 3), ijk), start=1):
        check_cancel(cancel)
        report(progress, (n - 1) / len(ijk), f"nodule {n} of {len(ijk)}")
        k0, center = int(round(k)), (float(j), float(i))
        warnings = []
        if sz > THICK_SLICE_MM:
            warnings.append(
                f"slices are {sz:.1f} mm thick (> {THICK_SLICE_MM:g} mm): volumes and the slice range are coarse"
            )
        low, high = TRAINED_SPACING_MM
        if not (low <= sx <= high and low <= sy <= high):
            warnings.append(
                f"pixels are {sx:.2f} x {sy:.2f} mm, outside the {low:g}-{high:g} mm the network was trained on: "
                "it sees native pixels, so the nodule looks smaller or larger than any it learned; check the contour"
            )
        rr, cc = np.ogrid[:rows, :cols]
        seed = ((rr - j) * sy) ** 2 + ((cc - i) * sx) ** 2 <= seed_radius_mm**2
        prob, patch = _slice_probabilities(model, volume, k0, center, device)
        lung = np.mean((patch > LUNG_HU_RANGE[0]) & (patch < LUNG_HU_RANGE[1]))
        if lung < MIN_LUNG_FRACTION:
            warnings.append(
                f"the point seems outside the lungs: only {100 * lung:.0f}% of the {INPUT_SIZE}-pixel window around "
                "it is lung parenchyma"
            )
        if min(j, i, rows - 1 - j, cols - 1 - i) < INPUT_SIZE // 2:
            warnings.append("the point is near the volume's in-plane edge: the crop was padded with edge values")
        masks = {name: np.zeros((slices, rows, cols), bool) for name in REGION_NAMES}
        regions = _regions(prob, seed, threshold, volume.array[k0])
        if regions is None:
            warnings.append("no nodule was found at this point (empty prediction, or only air)")
            first, last = k0, k0
        else:
            for name in REGION_NAMES:
                masks[name][k0] = regions[name]
            first, last = k0, k0
            for step in (-1, 1):
                previous, kk = regions["final"], k0 + step
                while 0 <= kk < slices and abs(kk - k0) <= reach:
                    check_cancel(cancel)
                    prob, _ = _slice_probabilities(model, volume, kk, center, device)
                    found = _regions(prob, previous, threshold, volume.array[kk])
                    if found is None:
                        break
                    for name in REGION_NAMES:
                        masks[name][kk] = found[name]
                    first, last = min(first, kk), max(last, kk)
                    previous, kk = found["final"], kk + step
                else:
                    if not 0 <= kk < slices:
                        warnings.append(
                            f"the nodule reaches the volume's {'first' if step < 0 else 'last'} slice: "
                            "its volume may be truncated"
                        )
        results.append(
            NoduleResult(
                n,
                tuple(float(v) for v in point),
                (float(i), float(j), float(k)),
                first,
                {name: m[first : last + 1].copy() for name, m in masks.items()},
                warnings,
            )
        )
    report(progress, 1.0, "done")
    return results


def longest_axial_diameter_mm(mask: np.ndarray, spacing_xy: tuple[float, float]) -> float:
    """Largest in-plane distance between two voxel centres of ``mask`` (z, y, x), over its slices."""
    best = 0.0
    for slice_mask in mask:
        edge = slice_mask & ~ndimage.binary_erosion(slice_mask)
        points = np.argwhere(edge) * np.array([spacing_xy[1], spacing_xy[0]])
        if len(points) > 1:
            best = max(best, float(np.sqrt(((points[:, None] - points[None]) ** 2).sum(-1)).max()))
    return best


def nodule_table_rows(volume: Volume, results: list[NoduleResult]) -> list[dict]:
    """One row per nodule: volumes (mm3), low-confidence fraction, longest axial diameter, mean HU, slices."""
    voxel = volume.voxel_volume_mm3
    rows = []
    for result in results:
        m = result.masks
        hu = volume.array[result.first_slice : result.first_slice + len(m["final"])]
        union = int(m["union"].sum())
        rows.append(
            {
                "nodule": f"Nodule {result.number}",
                "volume_final_mm3": round(float(m["final"].sum()) * voxel, 2),
                "volume_high_confidence_mm3": round(float(m["high"].sum()) * voxel, 2),
                "volume_union_mm3": round(union * voxel, 2),
                "low_confidence_fraction": round(float(m["low"].sum()) / union, 4) if union else 0.0,
                "longest_axial_diameter_mm": round(longest_axial_diameter_mm(m["final"], volume.spacing[:2]), 2),
                "mean_hu_high_confidence": round(float(hu[m["high"]].mean()), 1) if m["high"].any() else float("nan"),
                "mean_hu_low_confidence": round(float(hu[m["low"]].mean()), 1) if m["low"].any() else float("nan"),
                "slices": ",".join(str(s) for s in result.slices),
                "warnings": "; ".join(result.warnings),
            }
        )
    return rows


NODULE_COLORS = {"final": (0.18, 0.8, 0.25), "high": (0.9, 0.12, 0.12), "low": (0.15, 0.35, 0.95)}
SEGMENT_SUFFIX = {"final": "", "high": " high confidence", "low": " low confidence"}


def nodule_segments(results: list[NoduleResult], shape: tuple[int, int, int], first_number: int = 1):
    """Masks (z, y, x) and SegmentSpecs "Nodule N" (green), "Nodule N high confidence" (red) and
    "Nodule N low confidence" (blue) for every nodule; one place shared by the command line and Slicer."""
    masks, specs = [], []
    for offset, result in enumerate(results):
        number = first_number + offset
        for region in ("final", "high", "low"):
            masks.append(result.full_mask(region, shape))
            specs.append(
                SegmentSpec(
                    f"Nodule {number}{SEGMENT_SUFFIX[region]}",
                    len(specs) + 1,
                    NODULE_COLORS[region],
                    TERMINOLOGY_NODULE,
                )
            )
    return masks, specs


# --- the contract ------------------------------------------------------------------------------------------


@dataclass
class NodulesResult:
    """What :func:`run` found: the CT and one :class:`NoduleResult` per point."""

    volume: Volume
    nodules: list[NoduleResult]

    def rows(self) -> list[dict]:
        return nodule_table_rows(self.volume, self.nodules)


def load(weights: str | Path | None = None, model_id: str | None = None, device="auto") -> LoadedModel:
    """A UGS-Net (or comparison) model from a file, a registry id, or the bundled default."""
    return load_for_module(DESCRIPTOR, weights, model_id, device)


def run(
    volume: Volume,
    model: LoadedModel,
    *,
    points,
    threshold: float = 0.5,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> NodulesResult:
    """Segment the nodule at each RAS point of ``points`` (P, 3)."""
    nodules = segment_nodules(
        volume, points, model.network, device=model.device, threshold=threshold, progress=progress, cancel=cancel
    )
    return NodulesResult(volume, nodules)


def write(result: NodulesResult, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """``nodules.seg.nrrd`` (three segments per nodule), ``nodules.csv`` and one ``nodule_N.png`` per nodule."""
    out_dir = Path(out_dir)
    volume = result.volume
    pictures = [f"nodule_{n.number}.png" for n in result.nodules]
    with staged_folder(out_dir, overwrite, expected=[SEGMENTATION, TABLE, *pictures]) as work:
        masks, specs = nodule_segments(result.nodules, volume.shape)
        layers, packed = pack_masks(masks, specs)
        write_segmentation(work / SEGMENTATION, volume.like(layers), packed)
        write_table_csv(work / TABLE, result.rows())
        for nodule, picture in zip(result.nodules, pictures):
            k = int(round(nodule.point_ijk[2]))
            save_overlay_png(
                work / picture,
                volume.array[k],
                [
                    (nodule.full_mask("high", volume.shape)[k], (1, 0, 0)),
                    (nodule.full_mask("low", volume.shape)[k], (0, 0.3, 1)),
                    (nodule.full_mask("final", volume.shape)[k], (0, 0.9, 0)),
                ],
                title=f"Nodule {nodule.number}, slice {k}: red HC, blue LC, green final",
            )
    return [out_dir / name for name in (SEGMENTATION, TABLE, *pictures)]


def read(out_dir: str | Path) -> SavedResult:
    """The segments and the nodule table that :func:`write` put into ``out_dir``."""
    out_dir = Path(out_dir)
    labelmap, specs = read_segmentation(out_dir / SEGMENTATION)
    masks = unpack_masks(labelmap.array, specs)
    return SavedResult(out_dir, masks, specs, {TABLE: read_table_csv(out_dir / TABLE)}, {"segmentation": labelmap}, {})


def read_points_csv(path: str | Path) -> np.ndarray:
    """RAS points (P, 3) from a CSV: a header with r, a, s columns (Slicer's markups CSV) or rows of 3 numbers."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Points file not found: {path}; give a CSV with columns r,a,s (one nodule per row).")
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise InputError(f"{path} is not a text CSV; give a CSV with columns r,a,s (one nodule per row).") from error
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not lines:
        raise InputError(f"{path} holds no points; write one line 'r,a,s' per nodule.")
    rows = list(csv.reader(lines))
    header = [h.strip().lower() for h in rows[0]]
    try:
        if {"r", "a", "s"} <= set(header):
            cols = [header.index(c) for c in ("r", "a", "s")]
            return np.array([[float(row[c]) for c in cols] for row in rows[1:]], dtype=float).reshape(-1, 3)
        return np.array([[float(v) for v in row[:3]] for row in rows], dtype=float).reshape(-1, 3)
    except (ValueError, IndexError) as exc:
        raise InputError(
            f"{path}: cannot read RAS points ({exc}); expected columns r,a,s or three numbers per line."
        ) from exc


@dataclass
class Training(TrainOptions):
    """``lungai ugsnet train``: one comparison model on the patient folds of a multi-reader ``.npz``."""

    data: str = ""
    kind: str = "ugsnet"  # a key of lungai.ugsnet.task.MODELS
    features: tuple[int, ...] = DEMO_FEATURES
    fold: int | None = None  # held-out patient fold (None: train on everything)
    fusion: str = "bce"
    min_readers: int = 2
    attention_pool: int = BUDGET_ATTENTION_POOL  # UGS-Net self-attention key/value pooling (1: full, the paper)
    schedule: TrainConfig = field(default_factory=lambda: replace(BUDGET_TRAIN))
    augmentation: str = "dihedral"  # see lungai.ugsnet.training.train_model
    final_target: str = "annotations"  # UGS-Net final output's target: "annotations" (Eq. 3) or "label1"


def train(config: Training, *, progress: ProgressCallback | None = None, cancel=None) -> TrainOutcome:
    """Train on the folds other than ``config.fold``, evaluate on it, optionally publish under ``config.register``."""
    out_dir = Path(config.out)
    crops = prepare_crops(load_npz(config.data), min_readers=config.min_readers)
    train_rows, test_rows = split_by_patient(crops, config.fold)
    if len(train_rows) == 0:
        raise InputError("No training crops left after the split; lower --min-readers or use another fold.")
    data_note = (
        f"{Path(config.data).name}: {len(train_rows)} crops (>= {config.min_readers} readers), "
        f"patient folds != {config.fold}"
    )
    device = resolve_device(config.device)
    started = time.perf_counter()
    with staged_folder(out_dir, expected=["last.pt", "log.csv"]) as work:
        schedule = replace(
            config.schedule, device=str(device), seed=config.seed, ema_decay=config.ema, out_dir=str(work)
        )
        model, result = train_model(
            config.kind,
            crops,
            train_rows,
            features=config.features,
            config=schedule,
            fusion=config.fusion,
            attention_pool=config.attention_pool,
            augmentation=config.augmentation,
            final_target=config.final_target,
            training_data=data_note,
            progress=subrange(progress, 0.0, 0.9),
            cancel=cancel,
        )
        test = {}
        if len(test_rows):
            test = evaluate_crops(
                model,
                crops.subset(test_rows),
                work / "test",
                device=device,
                progress=subrange(progress, 0.9, 1.0),
                cancel=cancel,
            )
    checkpoint = out_dir / Path(result.last_checkpoint).name
    outcome = TrainOutcome(checkpoint, test, result.history)
    if config.register:
        timings = {
            "train_seconds": round(sum(row["seconds"] for row in result.history), 1),
            "train_and_test_wall_seconds": round(time.perf_counter() - started, 1),
            "torch_threads": torch.get_num_threads(),
            "parameters": int(sum(p.numel() for p in model.parameters())),
        }
        outcome.registered = publish_weights(
            config.register,
            checkpoint,
            config.kind,
            test,
            config.schedule.epochs,
            command=config.command,
            timings=timings,
            held_out=f"patients of fold {config.fold} of 5",
        )
    report(progress, 1.0, "done")
    return outcome


def publish_weights(
    model_id: str,
    checkpoint: Path,
    kind: str,
    test: dict,
    epochs: int,
    command: str = "",
    timings: dict | None = None,
    held_out: str = "patients of the test fold",
):
    """Publish trained weights with their held-out scores (the bundled model: LUNGAI_USER_MODELS=Resources/Models).
    ``held_out`` names the test crops' patients for the entry's description."""
    metrics = {k: round(v, 4) for k, v in test.get("scores_of_final", {}).items()}
    metrics.update({k: round(v, 1) for k, v in test.get("hu", {}).items() if k.startswith("mean_hu")})
    metrics["test_crops"] = test.get("crops", 0)
    features = list(load_checkpoint(checkpoint).header["config"]["features"])
    return publish(
        checkpoint,
        model_id,
        module=DESCRIPTOR.slicer_module,
        licence=LICENCE,
        metrics=metrics,
        timings=timings,
        command=command,
        description=f"{kind}, widths {features}, {epochs} epochs on CPU; metrics held out by patient: the "
        f"{test.get('crops', 0)} crops (>= 2 readers) of the {held_out} (lungai.ugsnet.training.nested_patient_folds, "
        "seed 0), patients never seen in training; Dice at threshold 0.5 without test-time flips",
    )


def evaluate(
    data: str | Path,
    out_dir: str | Path,
    model: LoadedModel,
    *,
    min_readers: int = 1,
    fold: int | None = None,
    overwrite: bool = False,
    tta: bool = False,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> dict:
    """Scores of ``model`` on the crops of a multi-reader ``.npz``, written into ``out_dir``: every crop (all test
    data), or with ``fold`` only the patients of that fold, split exactly as ``train`` splits the same file, so the
    weights trained with ``fold`` held out are scored on patients they never saw. ``tta`` averages each crop's
    prediction over flips."""
    out_dir = Path(out_dir)
    check_outputs([out_dir / "metrics.json"], overwrite)
    crops = prepare_crops(load_npz(data), min_readers=min_readers)
    if fold is not None:
        crops = crops.subset(split_by_patient(crops, fold)[1])
    with staged_folder(out_dir, overwrite) as work:
        result = evaluate_crops(
            model.network, crops, work, device=model.device, tta=tta, progress=progress, cancel=cancel
        )
        result["model"] = {"name": model.architecture, "weights": model.source}
        result["held_out_fold"] = fold
        evaluation.write_json(work / "metrics.json", result)
    return result
