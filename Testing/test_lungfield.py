"""The shared body and lung-field mask on the real chest CT, against its reference lung segmentation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lungai.intensity import MEDSEG_WINDOW, grey_to_hu, window_to_uint8
from lungai.lungfield import BODY_HU, field_factors, lung_field, lung_field_2d
from lungai.metrics import dice


@pytest.fixture(scope="module")
def field(chest_ct):
    return lung_field(chest_ct)


def _outside_air(hu: np.ndarray) -> np.ndarray:
    """Per slice: low-density voxels connected to the image border (air around and behind the patient)."""
    out = np.zeros(hu.shape, dtype=bool)
    for k, plane in enumerate(hu <= BODY_HU):
        labels, _ = ndimage.label(plane)
        border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        out[k] = np.isin(labels, border[border > 0])
    return out


def test_lungs_match_the_reference_segmentation(field, chest_lungs):
    labels = chest_lungs[0].array
    reference = labels > 0
    assert dice(field.lungs, reference) >= 0.97
    assert abs(field.lungs.sum() / reference.sum() - 1) <= 0.03
    assert dice(field.right, labels == 1) >= 0.95
    assert dice(field.left, labels == 2) >= 0.95
    assert not (field.right & field.left).any()
    assert np.array_equal(field.lungs, field.right | field.left)


def test_body_holds_the_patient_and_nothing_around_or_behind_it(field, chest_ct, chest_lungs):
    reference = chest_lungs[0].array > 0
    assert not (reference & ~field.body).any()
    assert not (field.body & _outside_air(chest_ct.array)).any()
    assert not (field.lungs & ~field.body).any()
    # the table (dense, separated from the patient by air) is not body
    dense_outside = (chest_ct.array > BODY_HU) & ~field.body
    assert dense_outside.sum() > 1000


def test_trachea_is_airway_not_lung(field, chest_ct):
    top = field.airways[25:]
    assert all(plane.any() for plane in top), "the trachea is found on every upper slice"
    assert not (field.airways & field.lungs).any()
    assert (chest_ct.array[field.airways] < -930).all()
    assert field.airways.sum() < 0.02 * field.lungs.sum()


def test_array_input_and_reversed_slice_order_give_the_same_field(field, chest_ct):
    plain = lung_field(chest_ct.array, chest_ct.spacing, direction=chest_ct.direction)
    assert np.array_equal(plain.lungs, field.lungs)
    flip = np.diag([1.0, 1.0, -1.0]) @ chest_ct.direction
    reversed_field = lung_field(chest_ct.array[::-1], chest_ct.spacing, direction=flip)
    assert np.array_equal(reversed_field.right[::-1], field.right)
    assert np.array_equal(reversed_field.airways[::-1], field.airways)


def test_coarse_grid_of_a_finely_sampled_ct_gives_the_field_of_its_source(field, chest_ct):
    """Each voxel split into 2 x 2 x 2 (and the last one of every axis cut): block means give back the source CT,
    so the field on the coarse grid is the source's field, voxel for voxel, on the fine grid."""
    fine = chest_ct.array
    for axis in range(3):
        fine = np.repeat(fine, 2, axis=axis)
    fine = fine[:-1, :-1, :-1]
    spacing = tuple(s / 2 for s in chest_ct.spacing)
    assert field_factors(spacing, chest_ct.spacing) == (2, 2, 2)
    coarse = lung_field(fine, spacing, direction=chest_ct.direction, grid_mm=chest_ct.spacing)
    for name in ("body", "lungs", "airways", "right", "left"):
        expected = getattr(field, name)
        for axis in range(3):
            expected = np.repeat(expected, 2, axis=axis)
        assert np.array_equal(getattr(coarse, name), expected[:-1, :-1, :-1]), name


def test_coarse_grid_agrees_with_the_full_resolution_field(chest_ct):
    """CTChest4 resampled to 0.87 mm pixels: the field on the default grid (1.74 mm pixels) against the field on
    the input's own grid."""
    zoom = 3.5
    fine = ndimage.zoom(chest_ct.array.astype(np.float32), (1, zoom, zoom), order=1)
    spacing = (chest_ct.spacing[0] / zoom, chest_ct.spacing[1] / zoom, chest_ct.spacing[2])
    assert field_factors(spacing) == (1, 2, 2)
    full = lung_field(fine, spacing, direction=chest_ct.direction, grid_mm=None)
    coarse = lung_field(fine, spacing, direction=chest_ct.direction)
    assert dice(coarse.lungs, full.lungs) >= 0.98  # measured 0.990
    assert dice(coarse.right, full.right) >= 0.98 and dice(coarse.left, full.left) >= 0.98
    assert dice(coarse.body, full.body) >= 0.99  # measured 0.997
    assert not (coarse.airways & coarse.lungs).any() and coarse.airways[25:].any()


@pytest.mark.parametrize("k", [10, 16, 22, 28])
def test_single_slices_in_hu_and_as_8_bit_snapshots(chest_ct, chest_lungs, k):
    from lungai.covid.orientation import to_display

    image = to_display(chest_ct.array, chest_ct)[k]
    reference = to_display(chest_lungs[0].array, chest_ct)[k]
    hu_field = lung_field_2d(image, pixel_mm=chest_ct.spacing[0])
    assert dice(hu_field.lungs, reference > 0) >= 0.95
    assert dice(hu_field.right, reference == 1) >= 0.9  # display orientation: patient right on the image left
    assert dice(hu_field.left, reference == 2) >= 0.9
    snapshot = lung_field_2d(window_to_uint8(image, MEDSEG_WINDOW), window=MEDSEG_WINDOW)
    assert dice(snapshot.lungs, reference > 0) >= 0.93


def test_grey_to_hu_inverts_the_window():
    hu = np.array([-1024.0, -600.0, 0.0, 240.0])
    back = grey_to_hu(window_to_uint8(hu, MEDSEG_WINDOW), MEDSEG_WINDOW)
    assert np.abs(back - hu).max() <= (MEDSEG_WINDOW[1] - MEDSEG_WINDOW[0]) / 255


def test_refuses_wrong_dimensions():
    with pytest.raises(ValueError, match="2-D"):
        lung_field_2d(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="spacing"):
        lung_field(np.zeros((2, 8, 8)))


def test_cropped_medseg_snapshots_keep_the_doctors_infection_in_body_and_lung_field(shared_data):
    """MedSeg slices are cropped through the chest wall: their lungs touch the image border."""
    from lungai.covid.anatomy import constrain
    from lungai.covid.data import load_medseg_folder

    slices = load_medseg_folder(shared_data / "covid_infection_medseg")
    total = in_body = kept = 0
    for s in slices:
        grey = np.round(s.image * 255).astype(np.uint8)
        field = lung_field_2d(grey, window=MEDSEG_WINDOW)
        _, kept_mask = constrain(field.lungs, s.infection, field, grey_to_hu(grey, MEDSEG_WINDOW))
        total += s.infection.sum()
        in_body += (s.infection & field.body).sum()
        kept += kept_mask.sum()
    assert in_body / total >= 0.9  # measured 0.954
    assert kept / total >= 0.8  # measured 0.856: whole components touching the aerated lung field


def test_slice_operations_on_the_mask_box_equal_the_whole_slice():
    """_per_slice cuts each slice to its mask's box (grown by the structure): same result as the whole slice."""
    from lungai.lungfield import _disc, _per_slice

    rng = np.random.default_rng(0)
    mask = ndimage.binary_opening(rng.random((12, 90, 110)) > 0.55, np.ones((1, 3, 3)))
    mask[:, :4] |= rng.random((12, 4, 110)) > 0.3  # touching the image border
    mask[3], mask[4, 40, 50], mask[5] = False, True, True
    for operation, structure in [
        (ndimage.binary_closing, _disc(10.0, (1.5, 1.5))),
        (ndimage.binary_opening, _disc(3.0, (0.8, 1.2))),
        (ndimage.binary_dilation, np.ones((3, 3), dtype=bool)),
        (ndimage.binary_fill_holes, None),
    ]:
        whole = np.zeros_like(mask)
        for k, plane in enumerate(mask):
            pad = 0 if structure is None else max(structure.shape)
            padded = np.pad(plane, pad)
            result = operation(padded) if structure is None else operation(padded, structure=structure)
            whole[k] = result[pad : pad + plane.shape[0], pad : pad + plane.shape[1]]
        assert np.array_equal(_per_slice(operation, mask, structure), whole), operation.__name__
