"""Multi-reader LIDC crops: resampling, MCM targets, patient folds and bad input (real data)."""

import numpy as np
import pytest
import torch
from conftest import shared_data_dir

from lungai.errors import InputError
from lungai.ugsnet.data import CropDataset, load_npz, patient_folds, prepare_crops
from lungai.ugsnet.preprocess import INPUT_SIZE, normalise_hu, patch_coordinates, resample_patch


@pytest.fixture(scope="module")
def arrays():
    full = load_npz(shared_data_dir() / "lidc_multireader.npz")
    return {k: v[:160] for k, v in full.items()}


def test_targets_follow_the_real_readers(arrays):
    crops = prepare_crops(arrays, min_readers=2)
    assert len(crops) == int((arrays["n_readers"] >= 2).sum())
    assert crops.image_hu.shape[1:] == (INPUT_SIZE, INPUT_SIZE)
    for i in range(len(crops)):
        real = crops.masks[i, : crops.n_readers[i]]
        assert real.any((1, 2)).all()  # every real annotation is non-empty
        assert not crops.masks[i, crops.n_readers[i] :].any()  # padding stays empty
        assert (crops.intersection[i] <= real).all() and (real <= crops.union[i]).all()
    # the nodule is at the centre of the resampled crop
    assert crops.union[:, INPUT_SIZE // 2, INPUT_SIZE // 2].mean() > 0.9


def test_single_reader_crops_are_kept_only_when_asked(arrays):
    crops = prepare_crops(arrays, min_readers=1)
    single = crops.n_readers == 1
    assert single.any()
    assert (crops.union[single] == crops.label1[single]).all()
    assert (crops.intersection[single] == crops.label1[single]).all()


def test_resampling_keeps_physical_size():
    image = np.zeros((71, 71), np.float32)
    image[25:46, 25:46] = 1.0  # 21 pixels at 0.7 mm = 14.7 mm
    patch = resample_patch(image, (35, 35), 0.7) > 0.5
    assert abs(patch[32].sum() * 0.55 - 14.7) <= 1.1
    coords = patch_coordinates((35.0, 35.0), 0.55)
    assert np.allclose(coords[:, 31:33, 31:33].mean((1, 2)), [35.0, 35.0])


def test_patient_folds_never_share_a_patient(arrays):
    folds = patient_folds(arrays["patient_id"], 5, seed=0)
    for fold in range(5):
        inside = set(arrays["patient_id"][folds == fold])
        outside = set(arrays["patient_id"][folds != fold])
        assert inside and not inside & outside


def test_dataset_items(arrays):
    item = CropDataset(prepare_crops(arrays), augment=True)[0]
    assert item["image"].shape == (1, 64, 64) and 0 <= float(item["image"].min()) and float(item["image"].max()) <= 1
    assert item["masks"].shape == (4, 64, 64) and item["n_readers"].dtype == torch.int64
    assert torch.equal(item["label1"][0], item["masks"][0])
    assert np.isclose(normalise_hu(np.array([-2000, -1000, 400, 3000])), [0, 0, 1, 1]).all()


def test_bad_inputs_say_what_is_wrong(arrays, tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_npz(tmp_path / "missing.npz")
    partial = tmp_path / "partial.npz"
    np.savez(partial, image_hu=arrays["image_hu"])
    with pytest.raises(InputError, match="lacks arrays"):
        load_npz(partial)
    broken = dict(arrays)
    broken["masks"] = arrays["masks"].copy()
    row = int(np.nonzero(arrays["n_readers"] >= 2)[0][0])
    broken["masks"][row, 1] = False
    with pytest.raises(InputError, match=f"Rows \\[{row}\\] have an empty real reader mask"):
        prepare_crops(broken)
    with pytest.raises(InputError, match="No crop has at least 5 readers"):
        prepare_crops(arrays, min_readers=5)
