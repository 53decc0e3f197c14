"""NeoplasmNLB's lung view (second input channel, lungai/nlb/lungview.py) on real snapshots, real LIDC crops and the
real CT: what it shows, that training and inference build it the same way, and that nothing is invented on
snapshots."""

import numpy as np
import pytest
import torch
from conftest import shared_data_dir
from scipy import ndimage

from lungai.lungfield import lung_field
from lungai.nlb.data import WholeSliceDataset, list_snapshots, load_nodules, snapshot_unit
from lungai.nlb.framing import SNAPSHOT_WINDOW, hu_to_unit
from lungai.nlb.insertion import Nodule
from lungai.nlb.lungview import (
    LUNG_VIEW_WINDOW,
    PARENCHYMA_HU,
    TEXTURE_MARGIN_MM,
    TEXTURE_MAX_HU,
    ct_lung_view,
    lung_view_of_hu,
    paste_disc,
    snapshot_lung_region,
    snapshot_lung_view,
    texture_disc,
)
from lungai.nlb.networks import build_nlb_unet
from lungai.nlb.pipeline import lung_views, score_volume
from lungai.nlb.regions import snapshot_field

PARENCHYMA = (PARENCHYMA_HU - LUNG_VIEW_WINDOW[0]) / (LUNG_VIEW_WINDOW[1] - LUNG_VIEW_WINDOW[0])


@pytest.fixture(scope="module")
def nodules():
    return load_nodules(shared_data_dir() / "lidc_multireader.npz")[0]


@pytest.fixture(scope="module")
def normals():
    snapshots = list_snapshots(shared_data_dir() / "iqoth_nccd")
    return [snapshot_unit(s.path) for s in snapshots if s.category == "normal"][:3]


def test_the_lung_view_continues_the_snapshot_window_downwards_inside_the_lungs_only():
    assert LUNG_VIEW_WINDOW == (-1000.0, SNAPSHOT_WINDOW[0])
    hu = np.array([-1000, PARENCHYMA_HU, -550, -40, 40, 300], dtype=np.float32)
    view = lung_view_of_hu(hu, np.ones(6, bool))
    assert np.allclose(view, [0, PARENCHYMA, 450 / 950, 1, 1, 1])
    # ground glass (-550 HU) is black in the snapshot view and mid-grey in the lung view; white in the lung view is
    # exactly "not black" in the snapshot view
    assert hu_to_unit(hu)[2] == 0 and 0.4 < view[2] < 0.6
    assert np.array_equal(view >= 1, hu_to_unit(hu) > 0)
    assert not lung_view_of_hu(hu, np.zeros(6, bool)).any()


def test_snapshot_lung_view_invents_nothing(normals):
    for unit in normals:
        field = snapshot_field(unit)
        region = snapshot_lung_region(field.parenchyma)
        view = snapshot_lung_view(unit, region)
        assert region.sum() >= field.parenchyma.sum() > 1000 and not (region & ~field.body).any()
        assert not view[~region].any()
        # inside the lungs: flat parenchyma, or white where the snapshot shows something (3 x 3 median not black)
        flat, white = np.isclose(view[region], PARENCHYMA), view[region] == 1.0
        assert np.all(flat | white)
        assert 0.5 < np.isclose(view[region], PARENCHYMA).mean() < 1.0
        # speckle (single bright pixels in black lung) is not taken for tissue
        assert (view[region] >= 1).mean() < (unit[region] > 0).mean()


def test_ct_lung_view_shows_the_real_lung_texture_inside_the_lung_field(chest_ct):
    lungs = lung_field(chest_ct).lungs
    view = ct_lung_view(chest_ct.array.astype(np.float32), lungs)
    assert not view[~lungs].any()
    inside = view[lungs]
    assert abs(np.median(inside) - PARENCHYMA) < 0.03  # PARENCHYMA_HU is CTChest4's median lung HU
    assert 0.02 < (inside > 0.5).mean() < 0.06  # vessels: 3.3 % of the lung field above -500 HU


def test_pasted_lung_keeps_both_views_consistent():
    unit = np.zeros((40, 40), np.float32)
    unit[5, 5] = 0.5  # a vessel the snapshot shows
    lung_hu = np.full((40, 40), PARENCHYMA_HU, np.float32)
    lung_hu[5, 5] = 100.0
    source = np.full((21, 21), -700.0, np.float32)
    source[10, 10] = 50.0  # a small vessel above the snapshot window's lower end
    new_unit, new_hu = paste_disc(unit, lung_hu, source, (10, 10), 6.0, (20, 20))
    assert new_hu[20, 20] == pytest.approx(50.0, abs=60) and new_hu[20, 23] == pytest.approx(-700.0, abs=5)
    assert new_hu[5, 5] == 100.0 and np.all(new_hu[:, :10] == lung_hu[:, :10])  # far from the disc: unchanged
    assert np.all(new_unit >= unit) and new_unit[20, 20] > 0 and new_unit[20, 23] == 0  # only brightens
    # a disc over a pixel the snapshot shows cannot darken it in the lung view
    _, over = paste_disc(unit, lung_hu, source, (10, 10), 6.0, (5, 5))
    assert over[5, 5] >= 100.0


def test_texture_discs_are_real_lung_away_from_the_nodule(nodules):
    rng = np.random.default_rng(0)
    found = 0
    for nodule in nodules[:40]:
        disc = texture_disc(nodule, 1.4, rng)
        if disc is None:
            continue
        found += 1
        hu, centre, radius = disc
        rows, cols = np.indices(hu.shape)
        inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2
        assert hu[inside].mean() <= TEXTURE_MAX_HU
        from lungai.nlb.insertion import resample_nodule

        _, fraction = resample_nodule(nodule, 1.4, in_hu=True)
        distance = ndimage.distance_transform_edt(fraction < 0.1)
        assert distance[inside].min() >= TEXTURE_MARGIN_MM / 1.4 - 1e-6
    assert found >= 10


def test_lung_view_dataset_matches_inference_and_inserts_ground_glass_nodules(normals, nodules):
    ground_glass_crop = np.full((71, 71), -850.0, dtype=np.float32)
    yy, xx = np.mgrid[:71, :71]
    disc_mask = (yy - 35) ** 2 + (xx - 35) ** 2 <= 8**2
    ground_glass_crop[disc_mask] = -550.0
    ground_glass = Nodule(ground_glass_crop, disc_mask, 0.7)
    dataset = WholeSliceDataset(normals, np.zeros(3), [ground_glass], n_inserted=2, seed=0, lung_view=True)
    assert dataset.nodules == [ground_glass]  # no window filter: the lung view shows ground glass
    sample = dataset[3]
    assert sample["image"].shape == (2, 192, 192) and sample["inserted"] == 1 and sample["label"] == 1
    inside = sample["mask"][0] > 0
    assert inside.sum() > 10
    assert sample["image"][0][inside].max() == 0  # black in the snapshot view
    assert sample["image"][1][inside].mean() > PARENCHYMA + 0.15  # visible in the lung view
    # a real snapshot as training shows it without texture is exactly what inference feeds the network
    dataset.texture_real = False
    grey = np.round(normals[0] * 255).astype(np.uint8)
    view = lung_views(grey[None], "8-bit", np.zeros((1,) + grey.shape, bool))
    from lungai.nlb.framing import Framing

    expected = Framing.snapshot(*grey.shape).apply(view)[0, 0]
    assert torch.allclose(dataset[0]["image"][1], expected, atol=1e-5)
    assert torch.allclose(dataset[0]["image"][0], Framing.snapshot(*grey.shape).apply(normals[0][None])[0, 0])
    # with texture (training): real LIDC lung appears in the lung view of some normal snapshots
    textured = WholeSliceDataset(normals, np.zeros(3), nodules[:100], n_inserted=0, seed=0, lung_view=True)
    changed = []
    for epoch in range(4):
        textured.set_epoch(epoch)
        lung = textured[0]["image"][1]
        changed.append(int(((lung - expected).abs() > 0.05).sum()))
        assert torch.equal(lung == 0, expected == 0)  # texture only inside the lungs
    assert max(changed) > 20


def test_a_two_channel_network_scores_the_real_ct_inside_the_lungs(chest_ct):
    torch.manual_seed(0)
    model = build_nlb_unet(block_type="symmetry_localized", widths=(4, 8, 16, 32, 64), in_channels=2).eval()
    scores = score_volume(model, chest_ct, threshold=0.0, seg_threshold=0.0)
    lungs = lung_field(chest_ct).lungs
    assert scores.labelmap.any() and not (scores.labelmap.astype(bool) & ~lungs).any()
    assert np.isfinite(scores.probabilities).all() and len(scores.probabilities) == chest_ct.shape[0]
