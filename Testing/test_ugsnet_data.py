"""Multi-reader LIDC crops: the native-pixel patch, MCM targets, patient folds and bad input (real data)."""

import numpy as np
import pytest
import torch
from conftest import shared_data_dir

from lungai.errors import InputError
from lungai.ugsnet.data import CropDataset, load_npz, patient_folds, prepare_crops
from lungai.ugsnet.preprocess import INPUT_SIZE, extract_patch, normalise_hu, paste_patch


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


def test_patch_is_the_native_block_around_the_centre_and_pastes_back(arrays):
    crops = prepare_crops(arrays, min_readers=2)
    row = crops.index[0]  # 71 x 71 source crop, centre pixel 35: the patch is rows and columns 3 to 66, unresampled
    assert np.array_equal(crops.image_hu[0], arrays["image_hu"][row, 3:67, 3:67])
    assert np.array_equal(crops.label1[0], arrays["masks"][row, 0, 3:67, 3:67])
    image = np.arange(100 * 120, dtype=np.float32).reshape(100, 120)
    patch = extract_patch(image, (50.2, 59.7))
    assert patch[INPUT_SIZE // 2, INPUT_SIZE // 2] == image[50, 60]  # nearest pixel to the point at the centre
    assert np.array_equal(paste_patch(patch, (50.2, 59.7), image.shape)[18:82, 28:92], image[18:82, 28:92])
    corner = extract_patch(image, (2.0, 118.0))  # beyond the image: edge values for CT, zeros for masks
    assert corner[0, 0] == image[0, 86] and corner[0, -1] == image[0, -1] and corner[-1, -1] == image[33, -1]
    assert not extract_patch(image > 0, (2.0, 118.0), edge=False)[:, -1].any()
    assert paste_patch(corner, (2.0, 118.0), image.shape)[:34, 86:].tolist() == image[:34, 86:].tolist()


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
