"""Where NeoplasmNLB looks and reports: the body and the lungs of a CT volume or of a snapshot.

Findings (segmentation, positive slices) are only reported inside the lungs (issue 12).

* CT in HU: the shared lung field of the backend, :func:`lungai.lungfield.lung_field` (the same mask every module
  uses).
* 8-bit snapshots in the IQ-OTH/NCCD window (:data:`lungai.nlb.framing.SNAPSHOT_WINDOW`): that window clips air,
  lung and fat alike to black, so :func:`lungai.lungfield.lung_field_2d`, which separates lung from fat by HU, finds
  no lungs in them (measured: no lung pixel and the whole image as body on ``Normal_case_1``, ``Malignant_case_110``
  and ``Bengin_case_93``), and the black lung cannot be told from black fat reliably either (a tumour that fills a
  lung leaves no black parenchyma to anchor a lung mask). On snapshots, findings are therefore kept inside the body
  only, and every slice counts as showing lung. :func:`snapshot_field` gives the body: the convex hull of the non-black
  pixels closed by a 4 mm disc (the speckled skin and chest wall of this narrow window leave gaps, and a thin anterior
  chest wall may vanish altogether), taking the largest component and the other parts above its lowest row (not the
  table); and, for inserting nodules only, the black lung *parenchyma*: the black pixels enclosed by the closed
  non-black ones (holes of their largest component: no subcutaneous fat outside the chest wall) opened by a 4 mm disc
  (drops thin fat layers), the two largest components (a second one only if at least a tenth of the first), each at
  least :data:`MIN_LUNG_AREA_MM2`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

MIN_LUNG_AREA_MM2 = 1000.0  # smaller black pockets of a snapshot are fat, not lung
MIN_PART_AREA_MM2 = 50.0  # bright parts of a snapshot's body (ribs, sternum, skin) outside its largest component
DARK_GREY = 0.04  # unit grey at or below which a snapshot pixel is black (about 10 of 255)


@dataclass(frozen=True)
class SnapshotField:
    """Masks (H, W) of one snapshot: the body and its black lung parenchyma (where nodules may be inserted)."""

    body: np.ndarray
    parenchyma: np.ndarray


def disc(radius_px: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius_px : radius_px + 1, -radius_px : radius_px + 1]
    return yy**2 + xx**2 <= radius_px**2


def _largest(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask
    return labels == 1 + int(np.argmax(ndimage.sum(mask, labels, range(1, count + 1))))


def convex_fill(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull of a 2-D mask's pixel centres, edges included (scikit-image's); the mask itself when
    its pixels are fewer than three or collinear, which span no hull."""
    from skimage.morphology import convex_hull_image

    points = np.argwhere(mask)
    if len(points) < 3 or np.linalg.matrix_rank(points[1:] - points[0]) < 2:
        return mask.copy()
    return convex_hull_image(mask, offset_coordinates=False)


def _body_parts(bright: np.ndarray, pixel_mm: float) -> np.ndarray:
    """The largest bright component and every other of at least :data:`MIN_PART_AREA_MM2` whose centre lies above
    its lowest row (ribs, sternum, skin; not the table, which lies below the patient)."""
    labels, count = ndimage.label(bright)
    if count == 0:
        return bright
    sizes = ndimage.sum(bright, labels, range(1, count + 1))
    largest = labels == 1 + int(np.argmax(sizes))
    lowest = np.flatnonzero(largest.any(axis=1))[-1]
    centres = ndimage.center_of_mass(bright, labels, range(1, count + 1))
    parts = [k + 1 for k in range(count) if sizes[k] * pixel_mm**2 >= MIN_PART_AREA_MM2 and centres[k][0] < lowest]
    return largest | np.isin(labels, parts)


def snapshot_field(image: np.ndarray, pixel_mm: float = 1.40) -> SnapshotField:
    """:class:`SnapshotField` of a snapshot (H, W) in [0, 1] (grey / 255); see the module docstring."""
    image = np.asarray(image)
    radius = max(1, int(round(4.0 / pixel_mm)))
    bright = ndimage.binary_closing(image > DARK_GREY, structure=disc(radius), border_value=0)
    return SnapshotField(convex_fill(_body_parts(bright, pixel_mm)), snapshot_parenchyma(image, pixel_mm, bright))


def snapshot_parenchyma(image: np.ndarray, pixel_mm: float = 1.40, bright: np.ndarray | None = None) -> np.ndarray:
    """The black lung parenchyma of :func:`snapshot_field` alone (without the body's convex hull)."""
    image = np.asarray(image)
    radius = max(1, int(round(4.0 / pixel_mm)))
    dark = image <= DARK_GREY
    if bright is None:
        bright = ndimage.binary_closing(~dark, structure=disc(radius), border_value=0)
    inside = ndimage.binary_opening(dark & _largest(ndimage.binary_fill_holes(bright)), structure=disc(radius))
    labels, count = ndimage.label(inside)
    parenchyma = np.zeros_like(inside)
    if count:
        sizes = ndimage.sum(inside, labels, range(1, count + 1))
        keep = 1 + np.argsort(sizes)[::-1][:2]
        large = (sizes[keep - 1] >= 0.1 * sizes.max()) & (sizes[keep - 1] * pixel_mm**2 >= MIN_LUNG_AREA_MM2)
        parenchyma = np.isin(labels, keep[large])
    return parenchyma


@dataclass(frozen=True)
class FindingsRegion:
    """(Z, H, W) masks in the input's own orientation: the body, and the lungs where findings may be reported
    (``snapshot``: the input was 8-bit snapshots, whose lungs are not known: ``lungs`` is the body)."""

    body: np.ndarray
    lungs: np.ndarray
    snapshot: bool = False


def findings_region(
    array: np.ndarray, spacing: tuple[float, float, float] | None = None, direction: np.ndarray | None = None
) -> FindingsRegion:
    """Body and lungs of a (Z, H, W) grey volume: :func:`snapshot_field` per slice for 8-bit snapshots, the shared
    :func:`lungai.lungfield.lung_field` for CT in HU (``spacing`` (x, y, z) mm required, ``direction`` optional)."""
    from lungai.errors import InputError
    from lungai.lungfield import lung_field
    from lungai.nlb.framing import SNAPSHOT_PIXEL_MM, SNAPSHOT_SIZE
    from lungai.nlb.intensity import to_unit

    unit, kind = to_unit(array)
    if kind == "8-bit":
        pixel_mm = SNAPSHOT_PIXEL_MM * SNAPSHOT_SIZE / max(array.shape[1:])
        body = np.stack([snapshot_field(image, pixel_mm).body for image in unit])
        return FindingsRegion(body, body, snapshot=True)
    if spacing is None:
        raise InputError("a CT in Hounsfield units needs its voxel spacing to find the body and the lungs")
    field = lung_field(np.asarray(array), tuple(spacing), direction=direction)
    return FindingsRegion(field.body, field.lungs, snapshot=False)
