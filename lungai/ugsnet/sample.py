"""The bundled UGS-Net sample (16 LIDC-IDRI crops, ``Resources/SampleData/ugsnet``) for demo and self-tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungai.registry import resources_dir
from lungai.ugsnet.data import load_npz
from lungai.volume import Volume


def sample_path() -> Path:
    return resources_dir() / "SampleData" / "ugsnet" / "lidc_multireader_sample.npz"


def load_sample() -> dict[str, np.ndarray]:
    return load_npz(sample_path())


def crop_volume(
    arrays: dict[str, np.ndarray],
    index: int,
    slices: int = 1,
    slice_thickness_mm: float = 2.5,
    origin=(-120.0, -150.0, -200.0),
) -> tuple[Volume, np.ndarray]:
    """A CT Volume made of crop ``index`` (repeated over ``slices`` axial slices) in LPS with the crop's pixel
    spacing, and the RAS point at the crop centre on the middle slice (where the nodule is)."""
    image = arrays["image_hu"][index].astype(np.int16)
    spacing = float(arrays["pixel_spacing_mm"][index])
    volume = Volume(np.repeat(image[None], slices, axis=0), (spacing, spacing, slice_thickness_mm), origin, np.eye(3))
    centre = np.array([(image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2, (slices - 1) // 2, 1.0])
    return volume, (volume.ijk_to_ras() @ centre)[:3]
