"""Volume I/O in every supported format, and a clear message for each kind of bad input."""

import numpy as np
import pytest
import SimpleITK as sitk

from lungai.errors import InputError, LungAIError
from lungai.io import (
    read_image_2d,
    read_segmentation,
    read_table_csv,
    read_volume,
    write_segmentation,
    write_table_csv,
    write_volume,
)
from lungai.segments import SegmentSpec, pack_masks
from lungai.validation import validate_ct, validate_image_2d
from lungai.volume import Volume


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz", ".mha"])
def test_volume_roundtrip_keeps_geometry(chest_ct, tmp_path, suffix):
    path = write_volume(chest_ct, tmp_path / f"ct{suffix}")
    back = read_volume(path)
    assert np.array_equal(back.array, chest_ct.array)
    assert np.allclose(back.spacing, chest_ct.spacing, atol=1e-5)
    assert np.allclose(back.origin, chest_ct.origin, atol=1e-4)
    assert np.allclose(back.direction, chest_ct.direction, atol=1e-6)


def test_dicom_series_folder_is_read(chest_ct, tmp_path):
    image = sitk.GetImageFromArray(chest_ct.array[:4].astype(np.int16))
    image.SetSpacing(chest_ct.spacing)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(4):
        slice_image = image[:, :, k]
        z = chest_ct.origin[2] + k * chest_ct.spacing[2]
        for tag, value in {
            "0008|0060": "CT",
            "0020|000e": "1.2.826.0.1.3680043.2.1125.1",
            "0020|0013": str(k + 1),
            "0020|0032": f"0\\0\\{z}",
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": str(chest_ct.spacing[2]),
            "0028|1052": "0",
            "0028|1053": "1",
        }.items():
            slice_image.SetMetaData(tag, value)
        writer.SetFileName(str(tmp_path / f"slice{k}.dcm"))
        writer.Execute(slice_image)
    volume = read_volume(tmp_path)
    assert volume.shape == (4, 128, 128)
    assert np.array_equal(volume.array, chest_ct.array[:4])
    assert volume.spacing[2] == pytest.approx(chest_ct.spacing[2], rel=1e-3)


def test_segmentation_with_overlapping_segments_roundtrips(chest_ct, tmp_path):
    core = np.zeros(chest_ct.shape, bool)
    core[10:12, 40:60, 40:60] = True
    rim = np.zeros_like(core)
    rim[9:13, 35:65, 35:65] = True
    layers, specs = pack_masks([rim, core], [SegmentSpec("Rim", 0, (0, 0, 1)), SegmentSpec("Core", 0, (1, 0, 0))])
    path = write_segmentation(tmp_path / "x.seg.nrrd", chest_ct.like(layers), specs)
    back, back_specs = read_segmentation(path)
    assert [s.name for s in back_specs] == ["Rim", "Core"]
    assert np.array_equal(back.array, layers)
    assert np.allclose(back.ijk_to_lps(), chest_ct.ijk_to_lps(), atol=1e-4)


def test_writers_never_overwrite_unless_asked(chest_ct, tmp_path):
    path = write_table_csv(tmp_path / "t.csv", [{"a": 1, "b": 2.5}])
    with pytest.raises(LungAIError, match="already exists"):
        write_table_csv(path, [{"a": 3, "b": 4}])
    assert read_table_csv(path) == [{"a": "1", "b": "2.5"}]
    write_table_csv(path, [{"a": 3, "b": 4}], overwrite=True)
    assert read_table_csv(path)[0]["a"] == "3"
    write_volume(chest_ct, tmp_path / "v.nrrd")
    with pytest.raises(LungAIError, match="already exists"):
        write_volume(chest_ct, tmp_path / "v.nrrd")


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_volume(tmp_path / "nothing.nrrd")


def test_unreadable_file_is_not_an_image(tmp_path):
    path = tmp_path / "notes.nrrd"
    path.write_text("this is not an image")
    with pytest.raises(InputError, match="could not be read as an image"):
        read_volume(path)
    with pytest.raises(InputError, match="not a readable picture"):
        read_image_2d(path)


def test_folder_without_dicom(tmp_path):
    with pytest.raises(InputError, match="without a DICOM series"):
        read_volume(tmp_path)


def test_wrong_dimensionality(tmp_path):
    image = sitk.Image([4, 4, 4, 4], sitk.sitkInt16)
    sitk.WriteImage(image, str(tmp_path / "four.nrrd"))
    with pytest.raises(InputError, match="4-D image"):
        read_volume(tmp_path / "four.nrrd")
    with pytest.raises(InputError, match="3-D CT volume"):
        validate_ct(Volume(np.zeros((32, 32))))


def _ct_like(values: np.ndarray) -> Volume:
    return Volume(values.reshape(4, 32, 32))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_infinite_voxels(bad):
    array = np.full(4 * 32 * 32, -1000.0)
    array[5] = bad
    with pytest.raises(InputError, match="1 NaN or infinite voxels"):
        validate_ct(_ct_like(array))


def test_eight_bit_picture_is_not_hu():
    with pytest.raises(InputError, match=r"from 0 to 255.*8-bit picture"):
        validate_ct(_ct_like(np.linspace(0, 255, 4 * 32 * 32)))


def test_raw_values_without_intercept_are_not_hu():
    with pytest.raises(InputError, match="without the rescale intercept"):
        validate_ct(_ct_like(np.linspace(0, 4095, 4 * 32 * 32)))


def test_no_air_is_not_a_chest_ct():
    with pytest.raises(InputError, match="has no air"):
        validate_ct(_ct_like(np.linspace(-100, 400, 4 * 32 * 32)))


def test_far_outside_hu():
    with pytest.raises(InputError, match="not CT in Hounsfield units"):
        validate_ct(_ct_like(np.linspace(-60000, 100, 4 * 32 * 32)))


def test_size_and_spacing_limits(chest_ct):
    with pytest.raises(InputError, match="at least 5"):
        validate_ct(Volume(chest_ct.array[:2], chest_ct.spacing), min_slices=5)
    with pytest.raises(InputError, match="at least 16 x 16"):
        validate_ct(Volume(chest_ct.array[:, :8, :8]))
    with pytest.raises(InputError, match="spacing"):
        validate_ct(Volume(chest_ct.array, (0.0, 1.0, 1.0)))
    with pytest.raises(InputError, match="too coarse"):
        validate_ct(chest_ct, max_spacing_mm=1.5)
    validate_ct(chest_ct)  # the real chest CT passes


def test_image_2d_checks():
    with pytest.raises(InputError, match="2-D grey image"):
        validate_image_2d(np.zeros((3, 40, 40)))
    with pytest.raises(InputError, match="at least 32 x 32"):
        validate_image_2d(np.zeros((10, 40)))
