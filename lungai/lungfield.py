"""The one body and lung-field mask of lungai, from Hounsfield units alone (no network).

Every module that must keep its findings inside the patient or inside the lungs uses this mask.

Steps on a CT volume (:func:`lung_field`; :func:`lung_field_2d` does the same on one slice):

1. **Body.** Dense voxels (above :data:`BODY_HU`, soft tissue, bone, also the table and blankets) are
   opened in-plane with a disc of ``opening_mm`` radius (default 3 mm: thin table and blanket lines go,
   a chest wall thinner than twice that would break), which cuts the thin contacts with the table,
   the blankets and the air pockets they enclose. The largest 3-D component of what remains
   is the patient; it is given back its skin (dense voxels within ``opening_mm`` of it) and its
   holes are filled slice by slice (lungs, airways, bowel gas are inside the body). On a single slice,
   low-density regions along less than 3/4 of the image border are lungs cut by a tight crop (as in the
   MedSeg snapshots); then the body is everything but the air around the patient.
2. **Low-density candidates.** Voxels of the body below :data:`BODY_HU`. Components smaller than
   ``min_lung_fraction`` of the largest (bowel gas, small pockets) are dropped.
3. **Airways.** Trachea and main bronchi are pure gas (below ``gas_hu``, stricter than lung
   parenchyma, whose partial-volumed voxels mostly lie above about -930 HU). On a volume the trachea
   is the gas component of the topmost slices with lungs that lies between the lungs; it is grown
   slice by slice downwards through gas voxels, stopping where a slice's airway area more than
   doubles (a leak into parenchyma). On a single slice, low-density components that are mostly gas, no larger than
   four times a trachea's cross-section and centred in the middle half between the lungs are airways.
   Airways, dilated by one voxel (their wall's partial volume), are removed from the lungs.
4. **Right and left.** The sagittal midline is the body's mean LPS x (LPS x grows towards patient left).
   A lung component lying mostly (over 80 %) on one side belongs to that side; a component with more
   than 20 % on each side (lungs touching at the anterior junction) is cut at the midline.
5. **Closing.** Each lung is closed in-plane with a disc of ``closing_mm`` radius and its holes filled
   slice by slice (vessels and small opacities belong to the lung field), then airways and anything
   outside the body are removed again.

**Grid.** On a volume the steps run on a coarser grid when the voxels are fine (:func:`field_factors`: whole
multiples of the voxel, about :data:`FIELD_GRID_MM`, z kept for thick slices): the HU are block-averaged (what a
coarser reconstruction shows) and the masks are given back on the input grid by nearest neighbour. Every step
above is about millimetres, not voxels, so the field is the same (on CTChest4 resampled to 0.87 mm pixels, lung
Dice 0.99 against the field at full resolution, ``Testing/test_lungfield.py``), and on a 512 x 512 x 300 CT it
takes seconds instead of nearly two minutes (most of it the 10 mm closing, whose cost grows with the pixel count
times the disc's area).

Measured on the bundled CTChest4 against its reference lung segmentation (``Testing/test_lungfield.py``):
lung Dice 0.983, volume +0.06 %, right and left Dice 0.980 and 0.982, trachea and main bronchi excluded,
no body voxel in the air around or behind the patient.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from lungai.intensity import grey_to_hu
from lungai.volume import Volume

BODY_HU = -500.0  # between lung parenchyma (about -850) and fat (about -100)
GAS_HU = -930.0  # airways and air; below nearly all lung parenchyma voxels
DEFAULT_FOV_MM = 350.0  # field of view assumed for a slice whose pixel size is unknown
_SIDE_SHARE = 0.2  # a lung component with at least this share on each side of the midline is both lungs
_CUT_BORDER_SHARE = 0.75  # a low-density region along less of the image border than this is a cut lung
_LEAK_GROWTH = 2.0  # airway area growing more than this between consecutive slices is a leak
FIELD_GRID_MM = (1.5, 1.5, 2.5)  # (x, y, z): the volume field's grid is about this coarse where voxels are finer


@dataclass
class LungField:
    """Boolean masks, all of the input's shape: ``lungs == right | left``; airways are not lung."""

    body: np.ndarray
    lungs: np.ndarray
    airways: np.ndarray
    right: np.ndarray
    left: np.ndarray


def _map(field: LungField, operation) -> LungField:
    return LungField(*(operation(getattr(field, f.name)) for f in fields(LungField)))


def _disc(radius_mm: float, pixel_mm: tuple[float, float]) -> np.ndarray:
    """In-plane elliptic structuring element of ``radius_mm`` for pixels of ``pixel_mm`` = (row, column)."""
    ry, rx = (max(1, int(round(radius_mm / p))) for p in pixel_mm)
    y, x = np.ogrid[-ry : ry + 1, -rx : rx + 1]
    return (y / ry) ** 2 + (x / rx) ** 2 <= 1.0


def _per_slice(operation, mask: np.ndarray, structure: np.ndarray | None = None) -> np.ndarray:
    """Apply a 2-D binary ``operation`` to every slice of a (z, y, x) mask, padding so borders do not bite.

    Each slice is cut to the bounding box of its mask grown by the structure's size (one pixel without a
    structure): the operations here (openings, closings, dilations by ``structure``, hole filling) do not reach
    further, so the result is the same as on the whole slice, at a fraction of the cost for small masks."""
    out = np.zeros_like(mask, dtype=bool)
    pad = 1 if structure is None else max(structure.shape)
    rows_any, cols_any = mask.any(axis=2), mask.any(axis=1)
    for k, plane in enumerate(mask):
        rows, cols = np.flatnonzero(rows_any[k]), np.flatnonzero(cols_any[k])
        if rows.size == 0:
            continue
        crop = np.pad(plane[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], pad)  # crop[i, j] = plane[i + y0, j + x0]
        result = operation(crop) if structure is None else operation(crop, structure=structure)
        y0, x0 = rows[0] - pad, cols[0] - pad
        top, left = max(y0, 0), max(x0, 0)
        bottom, right = min(rows[-1] + 1 + pad, plane.shape[0]), min(cols[-1] + 1 + pad, plane.shape[1])
        out[k, top:bottom, left:right] = result[top - y0 : bottom - y0, left - x0 : right - x0]
    return out


def _largest_component(mask: np.ndarray) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())[1:]
    return labels == (int(np.argmax(sizes)) + 1)


def _body(hu: np.ndarray, pixel_mm: tuple[float, float], opening_mm: float) -> np.ndarray:
    dense = hu > BODY_HU
    disc = _disc(opening_mm, pixel_mm)
    core = _largest_component(_per_slice(ndimage.binary_opening, dense, disc))
    if not core.any():
        return core
    body = dense & _per_slice(ndimage.binary_dilation, core, disc)
    return _per_slice(ndimage.binary_fill_holes, body)


def _body_of_a_cropped_slice(hu: np.ndarray, body: np.ndarray) -> np.ndarray:
    """``body`` of one slice, grown to the lungs a tight crop cut through the chest wall (module docstring).

    A low-density region touching less than :data:`_CUT_BORDER_SHARE` of the image border is a cut lung (the
    air around a whole patient runs along most of the border); with cut lungs, the body is everything but
    the air around the patient.
    """
    labels, _ = ndimage.label(hu <= BODY_HU)
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    touching = np.unique(edge[edge > 0])
    outside = [label for label in touching if (edge == label).mean() >= _CUT_BORDER_SHARE]
    if len(outside) == len(touching):
        return body
    return ndimage.binary_fill_holes(_largest_component(~np.isin(labels, outside)))


def _large_components(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    labels, count = ndimage.label(mask)
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= min_fraction * sizes.max()) + 1
    return np.isin(labels, keep)


def _columns_between(lungs_plane: np.ndarray, component: np.ndarray) -> bool:
    """True when ``component``'s centre column lies between the leftmost and rightmost lung columns."""
    columns = np.flatnonzero(lungs_plane.any(axis=0))
    if columns.size == 0:
        return False
    centre = np.flatnonzero(component.any(axis=0)).mean()
    span = columns[-1] - columns[0]
    return columns[0] + 0.25 * span <= centre <= columns[-1] - 0.25 * span


def _airways_from_top(gas: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Trachea seed on the topmost slices with lung candidates (k = last), grown downwards through gas."""
    airways = np.zeros_like(gas)
    slices = np.flatnonzero(candidates.any(axis=(1, 2)))
    if slices.size == 0:
        return airways
    previous = None
    for k in slices[::-1]:
        labels, count = ndimage.label(gas[k] & candidates[k])
        if previous is None:  # seed: the gas component between the lungs
            seeds = [
                label
                for label in range(1, count + 1)
                if _columns_between(candidates[k], labels == label)
                and (labels == label).sum() < 0.5 * candidates[k].sum()
            ]
            if not seeds:
                continue
            current = np.isin(labels, seeds)
        else:
            touching = np.unique(labels[previous & (labels > 0)])
            current = np.isin(labels, touching[touching > 0])
            if not current.any() or current.sum() > _LEAK_GROWTH * max(previous.sum(), 1):
                break
        airways[k] = current
        previous = ndimage.binary_dilation(current)
    return airways


def _airways_in_plane(
    hu: np.ndarray, candidates: np.ndarray, gas_hu: float, pixel_mm: tuple[float, float]
) -> np.ndarray:
    """On one slice: candidate components that are mostly gas (median below ``gas_hu``), no larger than four
    trachea cross-sections and centred between the lungs (trachea, main bronchi, oesophageal air)."""
    labels, count = ndimage.label(candidates)
    max_pixels = 4 * np.pi * 12.0**2 / (pixel_mm[0] * pixel_mm[1])  # trachea about 2.5 cm across
    airways = np.zeros_like(candidates)
    for label in range(1, count + 1):
        component = labels == label
        if (
            component.sum() <= max_pixels
            and np.median(hu[component]) < gas_hu
            and _columns_between(candidates & ~component, component)
        ):
            airways |= component
    return airways


def split_sides(lungs: np.ndarray, lps_x: np.ndarray, midline: float) -> tuple[np.ndarray, np.ndarray]:
    """(right, left) from one lung mask, every voxel's LPS x and the body's midline x (module docstring, step 4)."""
    labels, count = ndimage.label(lungs)
    left = np.zeros_like(lungs, dtype=bool)
    for label in range(1, count + 1):
        component = labels == label
        on_left = lps_x[component] > midline
        share = on_left.mean()
        if _SIDE_SHARE <= share <= 1 - _SIDE_SHARE:  # both lungs joined: cut at the midline
            left[component] = on_left
        elif share > 0.5:
            left |= component
    return lungs & ~left, left


def _close(mask: np.ndarray, pixel_mm: tuple[float, float], closing_mm: float) -> np.ndarray:
    if closing_mm <= 0:
        return _per_slice(ndimage.binary_fill_holes, mask)
    closed = _per_slice(ndimage.binary_closing, mask, _disc(closing_mm, pixel_mm))
    return _per_slice(ndimage.binary_fill_holes, closed)


def _field(
    hu: np.ndarray,
    pixel_mm: tuple[float, float],
    lps_x: np.ndarray,
    closing_mm: float,
    gas_hu: float,
    opening_mm: float,
    min_lung_fraction: float,
    single_slice: bool,
) -> LungField:
    body = _body(hu, pixel_mm, opening_mm)
    if single_slice:
        body[0] = _body_of_a_cropped_slice(hu[0], body[0])
        airways = _airways_in_plane(hu[0], body[0] & (hu[0] <= BODY_HU), gas_hu, pixel_mm)[None]
        candidates = _large_components(body & (hu <= BODY_HU) & ~airways, min_lung_fraction)
    else:
        candidates = _large_components(body & (hu <= BODY_HU), min_lung_fraction)
        airways = _airways_from_top(hu < gas_hu, candidates)
    airway_wall = _per_slice(ndimage.binary_dilation, airways, np.ones((3, 3), dtype=bool))
    lungs = _large_components(candidates & ~airway_wall, min_lung_fraction)
    right, left = split_sides(lungs, lps_x, float(lps_x[body].mean()) if body.any() else 0.0)
    keep = body & ~airway_wall
    right = _close(right, pixel_mm, closing_mm) & keep
    left = _close(left, pixel_mm, closing_mm) & keep & ~right
    return LungField(body, right | left, airways, right, left)


def _lps_x(shape: tuple[int, ...], spacing: tuple[float, ...], direction: np.ndarray) -> np.ndarray:
    """LPS x (mm, + towards patient left; origin irrelevant) of every voxel of a (z, y, x) grid."""
    k, j, i = (np.arange(n, dtype=np.float32) for n in shape)
    x = (direction[0, 0] * spacing[0] * i)[None, None, :] + (direction[0, 1] * spacing[1] * j)[None, :, None]
    return (x + (direction[0, 2] * spacing[2] * k)[:, None, None]).astype(np.float32)


def field_factors(spacing: tuple[float, ...], grid_mm: tuple[float, ...] | None = FIELD_GRID_MM) -> tuple[int, ...]:
    """Whole (z, y, x) factors that bring voxels of ``spacing`` = (x, y, z) mm near ``grid_mm`` = (x, y, z)
    (never below 1; all 1 for ``grid_mm`` None: the input's own grid)."""
    if grid_mm is None:
        return (1, 1, 1)
    return tuple(max(1, int(round(g / float(s)))) for g, s in zip(grid_mm[::-1], spacing[::-1]))


def _block_mean(hu: np.ndarray, factors: tuple[int, ...]) -> np.ndarray:
    """Mean of every ``factors`` block of a (z, y, x) array, float32; the last block of an axis repeats its edge."""
    out = np.pad(hu, [(0, -n % f) for n, f in zip(hu.shape, factors)], mode="edge")
    for axis, f in enumerate(factors):
        if f > 1:
            index = [slice(None)] * 3
            index[axis] = slice(0, None, f)
            total = out[tuple(index)].astype(np.float32)
            for offset in range(1, f):
                index[axis] = slice(offset, None, f)
                total += out[tuple(index)]
            out = total / np.float32(f)
    return out.astype(np.float32, copy=False)


def _upsample(field: LungField, factors: tuple[int, ...], shape: tuple[int, ...]) -> LungField:
    """``field`` of a coarse grid back on the (z, y, x) ``shape`` grid, nearest neighbour.

    The masks are nested (airways, right and left inside the body; lungs = right | left), so one label map
    carries them all through the repeat."""
    labels = field.body.astype(np.uint8)
    labels[field.airways] = 2
    labels[field.right] = 3
    labels[field.left] = 4
    (z, y, x), (fz, fy, fx) = labels.shape, factors
    labels = np.broadcast_to(labels[:, None, :, None, :, None], (z, fz, y, fy, x, fx)).reshape(z * fz, y * fy, x * fx)
    labels = labels[: shape[0], : shape[1], : shape[2]]
    right, left = labels == 3, labels == 4
    return LungField(labels > 0, right | left, labels == 2, right, left)


def lung_field(
    volume_hu: Volume | np.ndarray,
    spacing: tuple[float, float, float] | None = None,
    closing_mm: float = 10.0,
    gas_hu: float = GAS_HU,
    opening_mm: float = 3.0,
    min_lung_fraction: float = 0.1,
    direction: np.ndarray | None = None,
    grid_mm: tuple[float, float, float] | None = FIELD_GRID_MM,
) -> LungField:
    """Body, lungs (right, left) and airways of an axial CT volume in HU, ``(z, y, x)`` with k increasing
    towards the head (as in an LPS-ordered scan).

    ``volume_hu`` is a :class:`~lungai.volume.Volume` (its spacing and direction are used) or an array with
    ``spacing`` = (x, y, z) mm and optional ``direction`` (columns: i, j, k axes in LPS; identity when
    omitted). The steps run on a grid about ``grid_mm`` = (x, y, z) mm where the voxels are finer (module
    docstring, **Grid**; None: on the input's own grid); the masks always have the input's shape.
    """
    if isinstance(volume_hu, Volume):
        hu, spacing, direction = volume_hu.array, volume_hu.spacing, volume_hu.direction
    else:
        hu = np.asarray(volume_hu)
        if spacing is None:
            raise ValueError("lung_field needs the voxel spacing (x, y, z) in mm with a plain array")
    if hu.ndim != 3:
        raise ValueError(f"lung_field expects a (z, y, x) volume, got shape {hu.shape}")
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    from_top = bool(direction[2, 2] >= 0)  # k grows towards the head: the trachea is on the last slices
    shape = hu.shape
    factors = field_factors(spacing, grid_mm)
    spacing = tuple(float(s) * f for s, f in zip(spacing, factors[::-1]))
    hu = _block_mean(hu, factors) if factors != (1, 1, 1) else hu.astype(np.float32)
    ordered = hu if from_top else hu[::-1]
    lps_x = _lps_x(hu.shape, spacing, direction)
    field = _field(
        ordered,
        (spacing[1], spacing[0]),
        lps_x if from_top else lps_x[::-1],
        closing_mm,
        gas_hu,
        opening_mm,
        min_lung_fraction,
        single_slice=False,
    )
    if not from_top:
        field = _map(field, lambda mask: mask[::-1].copy())
    return _upsample(field, factors, shape) if factors != (1, 1, 1) else field


def lung_field_2d(
    image: np.ndarray,
    pixel_mm: float | None = None,
    window: tuple[float, float] | None = None,
    closing_mm: float = 10.0,
    gas_hu: float = GAS_HU,
    opening_mm: float = 3.0,
    min_lung_fraction: float = 0.1,
) -> LungField:
    """Body, lungs and airways of one axial slice in display orientation (rows anterior -> posterior,
    columns patient right -> left), masks of shape ``(y, x)``.

    ``image`` is in HU, or 8-bit grey of a windowed snapshot with its ``window`` = (low, high) HU
    (e.g. :data:`lungai.intensity.MEDSEG_WINDOW`), which maps it back to HU. Without ``pixel_mm`` the
    image is taken to span :data:`DEFAULT_FOV_MM`.
    """
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"lung_field_2d expects one 2-D slice, got shape {image.shape}")
    hu = grey_to_hu(image, window) if window is not None else image.astype(np.float32)
    pixel = float(pixel_mm) if pixel_mm else DEFAULT_FOV_MM / max(image.shape)
    columns = np.broadcast_to(np.arange(image.shape[1], dtype=np.float32) * pixel, image.shape)[None]
    field = _field(
        hu[None],
        (pixel, pixel),
        columns,  # display orientation: columns run towards patient left, as LPS x
        closing_mm,
        gas_hu,
        opening_mm,
        min_lung_fraction,
        single_slice=True,
    )
    return _map(field, lambda mask: mask[0])
