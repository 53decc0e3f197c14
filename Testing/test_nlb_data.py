"""NeoplasmNLB input convention (window, framing), nodule insertion, snapshot regions and data (real files)."""

import numpy as np
import pytest
import torch
from conftest import shared_data_dir
from PIL import Image
from scipy import ndimage

from lungai.errors import InputError
from lungai.nlb.data import (
    WholeSliceDataset,
    degrade_resolution,
    frame_snapshot,
    list_snapshots,
    load_nodules,
    snapshot_unit,
)
from lungai.nlb.framing import INPUT_PIXEL_MM, INPUT_SIZE, SNAPSHOT_WINDOW, Framing, hu_to_unit
from lungai.nlb.insertion import (
    MARGIN_MM,
    Nodule,
    consensus_masks,
    insert_at_random,
    insert_nodule,
    resample_nodule,
    shows_in_window,
    usable_nodules,
)
from lungai.nlb.intensity import prepare_slices, to_unit
from lungai.nlb.regions import convex_fill, findings_region, snapshot_field


def test_snapshot_window_maps_hu_like_the_measured_snapshots():
    low, high = SNAPSHOT_WINDOW
    assert (low, high) == (-50.0, 265.0)  # bench/nlb/snapshot_levels.md
    hu = np.array([-1000, -850, -100, low, (low + high) / 2, high, 1000], dtype=np.float32)
    assert np.allclose(hu_to_unit(hu), [0, 0, 0, 0, 0.5, 1, 1])  # air, lung and fat black, as in the snapshots
    unit, kind = to_unit(np.array([[-1000, 107.5], [265, 1000]], dtype=np.float32))
    assert kind == "HU" and np.allclose(unit, [[0, 0.5], [1, 1]])


def test_eight_bit_images_are_scaled_by_255_and_colour_becomes_grey():
    grey = np.array([[0, 51], [255, 102]], dtype=np.uint8)
    unit, kind = to_unit(grey)
    assert kind == "8-bit" and np.allclose(unit, grey / 255.0)
    assert to_unit(grey.astype(np.int32))[1] == "8-bit"  # integer 0..255 data in another dtype
    rgb = np.stack([grey, grey, grey], axis=-1)
    images, _, kind = prepare_slices(np.pad(rgb, ((0, 30), (0, 30), (0, 0))))
    assert kind == "8-bit" and images.shape == (1, 1, INPUT_SIZE, INPUT_SIZE)


def test_bad_inputs_are_refused_clearly():
    with pytest.raises(InputError, match="Hounsfield"):
        to_unit(np.linspace(0, 4095, 64 * 64).reshape(64, 64).round())  # raw scanner values, no intercept
    with pytest.raises(InputError, match="NaN"):
        to_unit(np.full((32, 32), np.nan))
    with pytest.raises(InputError, match="too small"):
        prepare_slices(np.zeros((10, 40), dtype=np.uint8))
    with pytest.raises(InputError, match="spacing"):
        prepare_slices(np.full((1, 40, 60), -1000, dtype=np.int16))


def test_ct_framing_centres_the_body_at_the_snapshot_pixel_size_and_restores_the_grid():
    # a 0.7 mm slice with an off-centre 200 mm wide elliptic "body" of soft tissue
    rows, cols = np.mgrid[:400, :500]
    body = ((rows - 180) / 110) ** 2 + ((cols - 300) / (100 / 0.7)) ** 2 <= 1
    framing = Framing.of_body(body[None], (0.7, 0.7))
    framed = framing.apply(body[None].astype(np.float32))[0, 0].numpy() > 0.5
    frows, fcols = np.nonzero(framed)
    assert abs((frows.min() + frows.max()) / 2 - (INPUT_SIZE - 1) / 2) <= 1
    assert abs((fcols.min() + fcols.max()) / 2 - (INPUT_SIZE - 1) / 2) <= 1
    assert abs((fcols.max() - fcols.min() + 1) * INPUT_PIXEL_MM - 200) <= 2 * INPUT_PIXEL_MM
    back = framing.restore(torch.from_numpy(framed[None, None].astype(np.float32)))[0].numpy() > 0.5
    assert back.shape == body.shape and (back & body).sum() / (back | body).sum() > 0.97


def test_snapshots_fill_the_network_grid():
    unit = snapshot_unit(list_snapshots(shared_data_dir() / "iqoth_nccd")[0].path)
    framed = frame_snapshot(unit)
    assert unit.shape == (256, 256) and framed.shape == (1, INPUT_SIZE, INPUT_SIZE)
    assert abs(float(framed.mean()) - float(unit.mean())) < 0.01


@pytest.fixture(scope="module")
def lidc():
    with np.load(shared_data_dir() / "lidc_multireader.npz") as data:
        rows = np.arange(40)
        return {
            "hu": data["image_hu"][rows],
            "consensus": consensus_masks(data["masks"][rows], data["n_readers"][rows]),
            "spacing": data["pixel_spacing_mm"][rows],
        }


def test_consensus_masks_need_half_of_the_readers():
    masks = np.zeros((2, 4, 3, 3), dtype=bool)
    masks[0, 0, 0, 0] = masks[0, 1, 0, 0] = masks[0, 2, 1, 1] = True  # 3 readers: (0,0) has 2 votes, (1,1) 1
    masks[1, 0, 2, 2] = True  # 2 readers: one vote is enough (union)
    consensus = consensus_masks(masks, np.array([3, 2]))
    assert consensus[0, 0, 0] and not consensus[0, 1, 1] and consensus[1, 2, 2] and consensus.sum() == 2


def test_unusable_nodules_are_left_out(lidc):
    usable = usable_nodules(lidc["hu"], lidc["consensus"], lidc["spacing"])
    shifted = lidc["hu"] + 1024  # an unapplied rescale intercept: no lung left in the crop
    assert usable.any() and not usable_nodules(shifted, lidc["consensus"], lidc["spacing"]).any()
    tiny = np.zeros_like(lidc["consensus"])
    tiny[:, 35, 35] = True  # one pixel: under 5 mm
    assert not usable_nodules(lidc["hu"], tiny, lidc["spacing"]).any()


def test_resampling_keeps_the_nodule_size_in_millimetres(lidc):
    for k in np.flatnonzero(usable_nodules(lidc["hu"], lidc["consensus"], lidc["spacing"]))[:5]:
        nodule = Nodule(lidc["hu"][k], lidc["consensus"][k], float(lidc["spacing"][k]))
        area_mm2 = nodule.mask.sum() * nodule.pixel_mm**2
        for slice_mm in (1.4, 3.0):
            _, fraction = resample_nodule(nodule, slice_mm)
            assert fraction.sum() * slice_mm**2 == pytest.approx(area_mm2, rel=0.1)


def test_insertion_blends_only_inside_the_soft_border_and_only_brightens(lidc):
    k = int(np.flatnonzero(usable_nodules(lidc["hu"], lidc["consensus"], lidc["spacing"]))[0])
    nodule = Nodule(lidc["hu"][k], lidc["consensus"][k], float(lidc["spacing"][k]))
    background = np.full((80, 80), 0.02, dtype=np.float32)
    out, mask = insert_nodule(background, nodule, 1.4, (40, 30))
    rows, cols = np.nonzero(mask)
    assert abs((rows.min() + rows.max()) / 2 - 40) <= 1 and abs((cols.min() + cols.max()) / 2 - 30) <= 1
    assert mask.sum() * 1.4**2 == pytest.approx(nodule.mask.sum() * nodule.pixel_mm**2, rel=0.2)
    assert np.all(out >= background - 1e-6)
    changed = out > background + 1e-6
    near = np.zeros_like(mask)
    near[rows.min() - 3 : rows.max() + 4, cols.min() - 3 : cols.max() + 4] = True
    assert changed.any() and not (changed & ~near).any()  # nothing changes away from the nodule
    # the nodule's own tissue shows in the snapshot window (mean HU inside the mask above the lower bound)
    assert out[mask].mean() > 0.1
    # the border is blended, not cut: pixels just outside the mask take intermediate values (in HU; in the snapshot
    # window such partial-volumed border pixels lie below -50 HU and stay black, as on a scanner)
    lung = np.full((80, 80), -850.0, dtype=np.float32)
    out_hu, mask_hu = insert_nodule(lung, nodule, 1.4, (40, 30), in_hu=True)
    assert np.array_equal(mask_hu, mask)
    ring = near & ~mask & (out_hu > lung + 1)
    assert ring.any() and np.all(out_hu[ring] < out_hu[mask].max())


def test_placement_keeps_the_whole_nodule_inside_the_region(lidc):
    k = int(np.flatnonzero(usable_nodules(lidc["hu"], lidc["consensus"], lidc["spacing"]))[0])
    nodule = Nodule(lidc["hu"][k], lidc["consensus"][k], float(lidc["spacing"][k]))
    region = np.zeros((120, 120), dtype=bool)
    region[20:100, 30:70] = True
    rng = np.random.default_rng(0)
    for _ in range(10):
        _, mask = insert_at_random(np.zeros((120, 120), np.float32), region, nodule, 1.4, rng)
        assert mask.any() and not (mask & ~region).any()
        rows, cols = np.nonzero(mask)
        assert rows.min() - 20 >= MARGIN_MM / 1.4 - 1 and 69 - cols.max() >= MARGIN_MM / 1.4 - 1
    small = np.zeros((120, 120), dtype=bool)
    small[50:54, 50:54] = True  # 5.6 mm: no room for the nodule and its margin
    assert insert_at_random(np.zeros((120, 120), np.float32), small, nodule, 1.4, rng) is None


def test_snapshot_field_on_real_snapshots():
    snapshots = {s.path.stem: s for s in list_snapshots(shared_data_dir() / "iqoth_nccd")}
    for name in ("Normal_case_1", "Malignant_case_110", "Bengin_case_93"):
        unit = snapshot_unit(snapshots[name].path)
        field = snapshot_field(unit)
        assert 0.2 < field.body.mean() < 0.8  # the body, not the whole picture (issue 12: 65,430 of 65,536 px)
        assert not (field.parenchyma & ~field.body).any()
        assert not field.body[-5:].any()  # the table below the patient is not body
    normal = snapshot_field(snapshot_unit(snapshots["Normal_case_1"].path))
    assert normal.parenchyma.sum() * 1.4**2 > 5000  # two lungs' worth of black parenchyma


def test_convex_fill_fills_the_hull_of_pixel_centres_edges_included():
    corner = np.zeros((8, 8), dtype=bool)
    corner[1, 1:6] = True  # an L: its hull is the right triangle (1, 1), (1, 5), (5, 5)
    corner[1:6, 5] = True
    filled = convex_fill(corner)
    rows, cols = np.nonzero(filled)
    assert filled.sum() == 15 and np.all(cols - rows >= 0)  # every pixel on or above the diagonal edge, none below
    assert filled[3, 3] and not filled[4, 3]
    diagonal = np.eye(6, dtype=bool)  # collinear pixels span no hull: kept as they are
    assert np.array_equal(convex_fill(diagonal), diagonal)
    assert not convex_fill(np.zeros((4, 4), dtype=bool)).any()


def test_findings_region_of_the_real_ct_keeps_lungs_inside_the_body(chest_ct, chest_lungs):
    region = findings_region(chest_ct.array, chest_ct.spacing, chest_ct.direction)
    assert not region.snapshot and region.body.shape == chest_ct.shape
    assert not (region.lungs & ~region.body).any()
    reference = chest_lungs[0].array > 0
    assert (region.lungs & reference).sum() / reference.sum() > 0.9


def test_whole_slice_dataset_inserts_real_nodules_into_normal_snapshots(tmp_path):
    snapshots = list_snapshots(shared_data_dir() / "iqoth_nccd")
    chosen = [s for s in snapshots if s.category == "normal"][:3] + [s for s in snapshots if s.category != "normal"][:1]
    nodules, patients = load_nodules(shared_data_dir() / "lidc_multireader.npz")
    assert len(nodules) == len(patients) > 1500 and all(n.diameter_mm >= 5 for n in nodules[:50])
    units = [snapshot_unit(s.path) for s in chosen]
    dataset = WholeSliceDataset(units, np.array([s.label for s in chosen]), nodules[:20], n_inserted=3, seed=0)
    assert len(dataset) == 7
    normal, tumour = dataset[0], dataset[3]
    assert normal["label"] == 0 and normal["has_mask"] == 1 and normal["mask"].sum() == 0
    assert tumour["label"] == 1 and tumour["has_mask"] == 0
    inserted = dataset[4]
    assert inserted["label"] == 1 and inserted["has_mask"] == 1 and inserted["mask"].sum() > 0
    assert inserted["image"].shape == inserted["mask"].shape == (1, INPUT_SIZE, INPUT_SIZE)
    image, mask = dataset.inserted(0)
    sources = [u for u in units[:3] if np.abs(u - image)[~mask].max() < 0.5]
    assert sources, "the inserted slice is one of the normal snapshots outside the nodule's neighbourhood"
    assert np.array_equal(dataset.inserted(0)[1], mask)  # the same draw for the same (seed, epoch, index)
    dataset.set_epoch(1)
    assert not np.array_equal(dataset.inserted(0)[1], mask)  # a new epoch, new positives
    # any folder in the iqoth layout is accepted; an empty one is refused clearly
    (tmp_path / "normal").mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "normal" / "a.png")
    assert [s.label for s in list_snapshots(tmp_path)] == [0]
    with pytest.raises(InputError, match="normal/, benign/"):
        list_snapshots(tmp_path / "normal")


def test_resolution_degradation_blurs_the_image_only_and_keeps_the_mask_aligned():
    snapshots = list_snapshots(shared_data_dir() / "iqoth_nccd")
    units = [snapshot_unit(s.path) for s in snapshots if s.category == "normal"][:2]
    unit = units[0]
    assert degrade_resolution(unit, 1.4, 1.4) is unit  # not coarser: unchanged
    coarse = degrade_resolution(unit, 1.4, 3.0)
    assert coarse.shape == unit.shape and abs(coarse.mean() - unit.mean()) < 0.01  # no shift, no drift
    # fine detail (neighbour differences) is lost, coarse structure kept
    assert np.abs(np.diff(coarse, axis=1)).mean() < 0.7 * np.abs(np.diff(unit, axis=1)).mean()
    assert np.corrcoef(coarse.ravel(), unit.ravel())[0, 1] > 0.9
    nodules, _ = load_nodules(shared_data_dir() / "lidc_multireader.npz")
    plain = WholeSliceDataset(units, np.zeros(2), nodules[:200], n_inserted=2, seed=0)
    degraded = WholeSliceDataset(units, np.zeros(2), nodules[:200], n_inserted=2, seed=0, degrade_prob=1.0)
    for index in range(4):
        a, b = plain[index], degraded[index]
        assert torch.equal(a["mask"], b["mask"]) and a["label"] == b["label"]  # same draw, same exact mask
        assert not torch.equal(a["image"], b["image"])
    # the blurred nodule still sits on its mask: brighter there than in the lung around it
    sample = degraded[2]
    inside = sample["mask"][0] > 0
    ring = torch.from_numpy(ndimage.binary_dilation(inside.numpy(), iterations=4)) & ~inside
    assert sample["image"][0][inside].mean() > sample["image"][0][ring].mean()


def test_only_nodules_the_snapshot_window_shows_are_inserted(lidc):
    solid = np.full((71, 71), -850.0, dtype=np.float32)
    yy, xx = np.mgrid[:71, :71]
    disc_mask = (yy - 35) ** 2 + (xx - 35) ** 2 <= 10**2
    solid[disc_mask] = 30.0
    ground_glass = np.where(disc_mask, -550.0, -850.0).astype(np.float32)
    assert shows_in_window(Nodule(solid, disc_mask, 0.7), 1.4)
    assert not shows_in_window(Nodule(ground_glass, disc_mask, 0.7), 1.4)  # black in the (-50, 265) HU window
    nodules, _ = load_nodules(shared_data_dir() / "lidc_multireader.npz")
    dataset = WholeSliceDataset([np.zeros((64, 64), np.float32)], np.zeros(1), nodules[:300], n_inserted=0)
    assert 0 < len(dataset.nodules) < 300 and all(shows_in_window(n, 1.4) for n in dataset.nodules)
    unfiltered = WholeSliceDataset([np.zeros((64, 64), np.float32)], np.zeros(1), nodules[:300], 0, visible_only=False)
    assert len(unfiltered.nodules) == 300
