"""NeoplasmNLB on the real CT (CTChest4, never used for training): the bundled model's acceptance checks of issue 12,
and the CT with inserted real nodules that the check uses."""

import numpy as np
import pytest
from conftest import shared_data_dir

from lungai.lungfield import lung_field
from lungai.nlb.data import load_nodules
from lungai.nlb.evaluation import seg_threshold_of
from lungai.nlb.framing import SNAPSHOT_WINDOW
from lungai.nlb.pipeline import DEFAULT_MODEL_ID, score_volume
from lungai.nlb.regions import findings_region
from lungai.nlb.simulation import insert_into_ct, score_inserted
from lungai.registry import load_registered_model
from lungai.splits import group_folds


@pytest.fixture(scope="module")
def bundled():
    return load_registered_model(DEFAULT_MODEL_ID, "cpu")


@pytest.fixture(scope="module")
def held_out_nodules():
    """Usable nodules of the LIDC patients the bundled model never saw (nodule fold 0 of 5 by patient, seed 0)."""
    nodules, patients = load_nodules(shared_data_dir() / "lidc_multireader.npz")
    folds = group_folds(patients, 5, 0)
    return [n for n, f in zip(nodules, folds) if f == 0]


def test_inserted_nodules_lie_inside_the_lungs_and_change_only_their_neighbourhood(chest_ct, held_out_nodules):
    inserted = insert_into_ct(chest_ct, held_out_nodules, seed=0)
    lungs = lung_field(chest_ct).lungs
    assert len(inserted.nodule_slices) >= 10 and np.all(np.diff(inserted.nodule_slices) % 2 == 0)
    assert inserted.masks[inserted.nodule_slices].any(axis=(1, 2)).all()
    assert not (inserted.masks & ~lungs).any()
    changed = inserted.volume.array != chest_ct.array
    assert not changed[np.setdiff1d(np.arange(chest_ct.shape[0]), inserted.nodule_slices)].any()
    # nodule tissue is denser than the lung it replaces, and the geometry of the volume is kept
    assert inserted.volume.array[inserted.masks].mean() > chest_ct.array[inserted.masks].mean() + 200
    assert inserted.volume.spacing == chest_ct.spacing and np.allclose(inserted.volume.origin, chest_ct.origin)
    # which nodules the snapshot window shows at the CT's 3.05 mm pixels: those with enough of the mask above -50 HU
    assert inserted.visible.shape == inserted.nodule_slices.shape and 0 < inserted.visible.sum() < len(inserted.visible)
    low = SNAPSHOT_WINDOW[0]
    shown = [(inserted.volume.array[k][inserted.masks[k]] > low).mean() for k in inserted.nodule_slices]
    assert np.mean([s for s, v in zip(shown, inserted.visible) if v]) > np.mean(
        [s for s, v in zip(shown, inserted.visible) if not v]
    )


KNOWN_GAP = (
    "bundled nlb_unet_demo sees CT through the snapshot window (-50, 265) HU, where most LIDC nodules at CTChest4's "
    "3.05 mm pixels are black: 19 % of inserted held-out nodule slices positive, 42 % of those the window shows "
    "(bench/nlb/ct_check.md); the optional lung view finds 72 % but calls 16 of 34 normal slices positive "
    "(bench/nlb/recipe_runs/README.md)"
)


def test_bundled_model_is_quiet_on_the_normal_ct(bundled, chest_ct):
    model, header = bundled
    scores = score_volume(model, chest_ct, threshold=0.5, seg_threshold=seg_threshold_of(header))
    segmented = scores.labelmap > 0
    region = findings_region(chest_ct.array, chest_ct.spacing, chest_ct.direction)
    assert scores.decisions.sum() <= 2  # of 34 slices (issue 12: all 34 were positive; bench/nlb/ct_check.md: 2)
    assert segmented.mean() <= 0.001  # at most 0.1 % of the volume (issue 12: 80.7 %)
    assert not (segmented & ~region.body).any()


def test_bundled_model_segments_only_inside_the_body_of_the_ct(bundled, chest_ct):
    model, header = bundled
    scores = score_volume(model, chest_ct, threshold=0.0, seg_threshold=seg_threshold_of(header))
    region = findings_region(chest_ct.array, chest_ct.spacing, chest_ct.direction)
    segmented = scores.labelmap > 0
    assert segmented.any() and not (segmented & ~region.lungs).any() and not (segmented & ~region.body).any()


@pytest.mark.xfail(strict=True, reason=KNOWN_GAP)
def test_bundled_model_finds_inserted_real_nodules_in_the_ct(bundled, chest_ct, held_out_nodules):
    model, header = bundled
    rows = score_inserted(
        model,
        insert_into_ct(chest_ct, held_out_nodules, seed=0),
        threshold=0.5,
        seg_threshold=seg_threshold_of(header),
    )
    nodule_rows = [r for r in rows if r["nodule"]]
    assert np.mean([r["positive"] for r in nodule_rows]) >= 0.8
