"""UGS-Net on a CT volume: nodule points in, final / high-confidence / low-confidence masks and measurements out.

For each point (RAS, Slicer's world frame) the axial slice through it is resampled to the network input
(64 x 64 at 0.55 mm, :mod:`lungai.ugsnet.preprocess`) around the point, segmented, and the sigmoid maps
are resampled back onto the slice's own pixel grid. The nodule is followed slice by slice up and down while
its final mask still overlaps the previous slice's (at most ``max_extent_mm`` through the point), so each
nodule gets the axial slices that actually contain it. HC = intersection head AND union head, LC = union
minus HC, each restricted to the connected region that holds the final nodule.

Bad input: a point outside the volume, a non-axial volume or in-plane spacing coarser than
``MAX_INPLANE_SPACING_MM`` raise InputError before any work; a point whose surroundings hold almost no lung
parenchyma, a nodule that reaches the volume's edge, slices thicker than ``THICK_SLICE_MM`` or no nodule
found at the point (nothing predicted, or only air) are reported per nodule in ``NoduleResult.warnings``
(and the table).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage

from lungai.errors import InputError
from lungai.progress import CancelToken, ProgressCallback, check_cancel, report
from lungai.ugsnet.inference import predict_probabilities
from lungai.ugsnet.preprocess import INPUT_SIZE, INPUT_SPACING_MM, resample_patch
from lungai.validation import validate_ct
from lungai.volume import Volume

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
    """Sigmoid maps of every head on slice k's own pixel grid (within the patch) and the HU patch."""
    spacing_rc = (volume.spacing[1], volume.spacing[0])
    patch = resample_patch(volume.array[k].astype(np.float32), center_rc, spacing_rc)
    probabilities = predict_probabilities(model, patch[None], device=device)
    rows, cols = volume.shape[1:]
    grid_r, grid_c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    to_patch = [
        (grid_r - center_rc[0]) * spacing_rc[0] / INPUT_SPACING_MM + (INPUT_SIZE - 1) / 2.0,
        (grid_c - center_rc[1]) * spacing_rc[1] / INPUT_SPACING_MM + (INPUT_SIZE - 1) / 2.0,
    ]
    back = {
        name: ndimage.map_coordinates(p[0], to_patch, order=1, mode="constant", cval=0.0)
        for name, p in probabilities.items()
    }
    return back, patch


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
        rr, cc = np.ogrid[:rows, :cols]
        seed = ((rr - j) * sy) ** 2 + ((cc - i) * sx) ** 2 <= seed_radius_mm**2
        prob, patch = _slice_probabilities(model, volume, k0, center, device)
        lung = np.mean((patch > LUNG_HU_RANGE[0]) & (patch < LUNG_HU_RANGE[1]))
        if lung < MIN_LUNG_FRACTION:
            warnings.append(
                f"the point seems outside the lungs: only {100 * lung:.0f}% of the 35 mm window around "
                "it is lung parenchyma"
            )
        half_fov = (INPUT_SIZE / 2) * INPUT_SPACING_MM
        if min(j * sy, i * sx, (rows - 1 - j) * sy, (cols - 1 - i) * sx) < half_fov:
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
    from lungai.segments import TERMINOLOGY_NODULE, SegmentSpec

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
