"""CHS-Net on a CT volume: lungs split by side, infection, and the infection burden table.

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

Slices where stage 1 finds no lung get no infection (hierarchical modes). A volume with no lung at
all is refused: it is probably not a chest CT (or not a lung window of one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lungai.covid.cascade import THRESHOLD, Cascade
from lungai.covid.intensity import hu_to_unit
from lungai.covid.orientation import check_axial, from_display, to_display
from lungai.errors import InputError, LungAIError
from lungai.io import write_segmentation, write_table_csv
from lungai.progress import CancelToken, ProgressCallback
from lungai.segments import (
    TERMINOLOGY_INFECTION,
    TERMINOLOGY_LEFT_LUNG,
    TERMINOLOGY_RIGHT_LUNG,
    SegmentSpec,
    pack_masks,
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
    k, j, i = np.indices(volume.shape, dtype=np.float32)
    m = volume.ijk_to_lps()
    return m[0, 0] * i + m[0, 1] * j + m[0, 2] * k + m[0, 3]


def split_lungs(lungs: np.ndarray, volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) lung masks from one lung mask (module docstring)."""
    labels, count = ndimage.label(lungs)
    if count == 0:
        return np.zeros_like(lungs, dtype=bool), np.zeros_like(lungs, dtype=bool)
    sizes = ndimage.sum(lungs, labels, index=np.arange(1, count + 1))
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


def burden_table(right: np.ndarray, left: np.ndarray, infection: np.ndarray, voxel_mm3: float) -> list[dict]:
    """Rows: right lung, left lung, both lungs. Volumes are voxel counts x voxel volume (mL).

    Infection per lung is the infection inside that lung; "Both lungs" reports all infection
    voxels (with masking they are all inside the lungs) and the share of lung voxels infected.
    """
    ml = voxel_mm3 / 1000.0

    def row(region: str, lung: np.ndarray, infected: np.ndarray, inside: np.ndarray) -> dict:
        lung_voxels = int(np.count_nonzero(lung))
        share = 100.0 * np.count_nonzero(inside) / lung_voxels if lung_voxels else 0.0
        return {
            "Region": region,
            "Lung volume (mL)": round(lung_voxels * ml, 3),
            "Infection volume (mL)": round(int(np.count_nonzero(infected)) * ml, 3),
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
    if volume.array.ndim != 3:
        raise InputError(f"Expected a 3-D CT volume, got an array of shape {volume.array.shape}.")
    validate_ct(volume)
    check_axial(volume)
    display = to_display(hu_to_unit(volume.array), volume)
    results = cascade.segment(list(display), progress, cancel)
    lungs = from_display(np.stack([r.lung for r in results]) > THRESHOLD, volume)
    infection = from_display(np.stack([r.infection for r in results]) > THRESHOLD, volume)
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


OUTPUT_NAMES = ("segmentation.seg.nrrd", "burden.csv")


def write_outputs(result: BurdenResult, volume: Volume, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """``segmentation.seg.nrrd`` (overlapping segments in layers) and ``burden.csv`` in ``out_dir``.

    Nothing is written when either file exists and ``overwrite`` is False.
    """
    out_dir = Path(out_dir)
    paths = [out_dir / name for name in OUTPUT_NAMES]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise LungAIError(f"{', '.join(existing)} already exist(s); choose another folder or allow overwriting.")
    out_dir.mkdir(parents=True, exist_ok=True)
    layers, specs = pack_masks([result.masks[s.name] for s in SEGMENTS], list(SEGMENTS))
    write_segmentation(paths[0], volume.like(layers), specs, overwrite=True)
    write_table_csv(paths[1], result.table, overwrite=True)
    return paths
