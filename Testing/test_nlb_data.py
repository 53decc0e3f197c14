"""NeoplasmNLB intensity convention, bad inputs, data loading and fold splits (real IQ-OTH/NCCD and LIDC files)."""

import numpy as np
import pytest
import torch
from conftest import shared_data_dir
from PIL import Image

from lungai.errors import InputError
from lungai.nlb.data import (
    NLBDataset,
    consensus_masks,
    group_folds,
    list_snapshots,
    load_nodule_crops,
    load_snapshots,
    read_snapshot,
    stratified_folds,
)
from lungai.nlb.intensity import HU_WINDOW, INPUT_SIZE, SquareResize, hu_to_unit, prepare_slices, to_unit


def test_hu_window_maps_to_unit_range():
    low, high = HU_WINDOW
    hu = np.array([-1000, low, (low + high) / 2, high, 3000], dtype=np.int16)
    assert np.allclose(hu_to_unit(hu), [0.0, 0.0, 0.5, 1.0, 1.0])
    assert (low, high) == (-600.0, 400.0)  # the documented window: level -100, width 1000
    unit, kind = to_unit(np.array([[-1000, -100], [400, 1000]], dtype=np.int16))
    assert kind == "HU" and np.allclose(unit, [[0, 0.5], [1, 1]])


def test_eight_bit_images_are_scaled_by_255_and_colour_becomes_grey():
    grey = np.array([[0, 51], [255, 102]], dtype=np.uint8)
    unit, kind = to_unit(grey)
    assert kind == "8-bit" and np.allclose(unit, grey / 255.0)
    # integer-valued 0..255 data in another dtype (e.g. a PNG series loaded as a volume) is 8-bit too
    assert to_unit(grey.astype(np.int32))[1] == "8-bit"
    rgb = np.stack([grey, grey, grey], axis=-1)
    images, _, kind = prepare_slices(np.pad(rgb, ((0, 30), (0, 30), (0, 0))))
    assert kind == "8-bit" and images.shape == (1, 1, INPUT_SIZE, INPUT_SIZE)


def test_values_that_are_neither_hu_nor_eight_bit_are_refused():
    with pytest.raises(InputError, match="Hounsfield"):
        to_unit(np.linspace(0, 4095, 64 * 64).reshape(64, 64).round())  # raw scanner values, no intercept
    with pytest.raises(InputError, match="NaN"):
        to_unit(np.full((32, 32), np.nan))


def test_tiny_images_are_refused_and_one_slice_volumes_work():
    with pytest.raises(InputError, match="too small"):
        prepare_slices(np.zeros((10, 40), dtype=np.uint8))
    images, resize, _ = prepare_slices(np.full((1, 40, 60), -1000, dtype=np.int16))
    assert images.shape == (1, 1, INPUT_SIZE, INPUT_SIZE) and (resize.height, resize.width) == (40, 60)


def test_square_resize_pads_non_square_slices_and_restores_the_pixel_grid():
    resize = SquareResize(60, 100, 50)
    unit = np.zeros((1, 60, 100), dtype=np.float32)
    unit[0, 20:40, 40:60] = 1.0
    tensor = resize.apply(unit)
    assert tensor.shape == (1, 1, 50, 50)
    assert tensor[0, 0, :8].max() == 0  # padding rows (20 of 100 -> 10 of 50) stay empty
    back = resize.restore(tensor).numpy()
    assert back.shape == (1, 60, 100)
    assert np.mean((back > 0.5) == (unit > 0.5)) > 0.99


def test_iqoth_folder_layout_and_fold_split(tmp_path):
    root = shared_data_dir() / "iqoth_nccd"
    snapshots = list_snapshots(root)
    assert len(snapshots) == 875
    assert {s.category for s in snapshots} == {"normal", "benign", "malignant"}
    assert sum(s.label for s in snapshots) == 98 + 446
    categories = np.array([s.category for s in snapshots])
    folds = stratified_folds(categories, 2, seed=0)
    assert np.array_equal(folds, stratified_folds(categories, 2, seed=0))
    for category in ("normal", "benign", "malignant"):
        counts = np.bincount(folds[categories == category], minlength=2)
        assert abs(counts[0] - counts[1]) <= 1
    images = load_snapshots(snapshots[:3])
    assert images.shape == (3, 1, INPUT_SIZE, INPUT_SIZE) and 0 <= images.min() and images.max() <= 1
    assert torch.allclose(
        images[0, 0, ::2, ::2].mean(),
        torch.tensor(read_snapshot(snapshots[0].path).astype(np.float32).mean() / 255),
        atol=0.02,
    )
    # any folder in the same layout is accepted; an empty one is refused clearly
    (tmp_path / "normal").mkdir()
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "normal" / "a.png")
    assert [s.label for s in list_snapshots(tmp_path)] == [0]
    with pytest.raises(InputError, match="normal/, benign/"):
        list_snapshots(tmp_path / "normal")


def test_lidc_crops_consensus_masks_and_patient_folds():
    path = shared_data_dir() / "lidc_multireader.npz"
    masks = np.zeros((2, 4, 3, 3), dtype=bool)
    masks[0, 0, 0, 0] = masks[0, 1, 0, 0] = masks[0, 2, 1, 1] = True  # 3 readers: (0,0) has 2 votes, (1,1) 1
    masks[1, 0, 2, 2] = True  # 2 readers: one vote is enough (union)
    consensus = consensus_masks(masks, np.array([3, 2]))
    assert consensus[0, 0, 0] and not consensus[0, 1, 1] and consensus[1, 2, 2] and consensus.sum() == 2
    crops = load_nodule_crops(path, indices=np.arange(4))
    assert crops.images.shape == (4, 1, INPUT_SIZE, INPUT_SIZE) and crops.masks.shape == crops.images.shape
    assert set(np.unique(crops.masks.numpy())) <= {0.0, 1.0} and crops.masks.sum() > 0
    patients = np.array(["a", "a", "b", "c", "c", "d"])
    folds = group_folds(patients, 2, seed=0)
    for patient in np.unique(patients):
        assert len(set(folds[patients == patient])) == 1


def test_dataset_mixes_classification_and_segmentation_samples():
    snaps, crops = torch.rand(3, 1, 16, 16), torch.rand(2, 1, 16, 16)
    masks = (torch.rand(2, 1, 16, 16) > 0.5).float()
    dataset = NLBDataset(snaps, np.array([0, 1, 1]), crops, masks)
    assert len(dataset) == 5
    first, last = dataset[1], dataset[4]
    assert first["has_label"] == 1 and first["has_mask"] == 0 and first["label"] == 1
    assert last["has_label"] == 0 and last["has_mask"] == 1 and torch.equal(last["mask"], masks[1])
    negatives = NLBDataset(snaps, np.array([0, 1, 1]), crops, masks, normal_empty_masks=True)
    assert [float(negatives[i]["has_mask"]) for i in range(5)] == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert negatives[0]["mask"].sum() == 0 and negatives[0]["has_label"] == 1
