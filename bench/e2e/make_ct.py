"""A realistic-size CT made from the bundled one (CTChest4, 128 x 128 x 34) by resampling: same anatomy and field of
view, finer voxels. Linear interpolation of the HU values (SimpleITK), air (-1024 HU) outside, int16 NRRD.

    python bench/e2e/make_ct.py --size 512 512 300 --out /tmp/lungai_e2e/ct_512x512x300.nrrd

``--size`` is columns, rows, slices (x, y, z), as Slicer shows it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungai.io import volume_from_sitk, volume_to_sitk, write_volume
from lungai.sample_data import chest_ct
from lungai.volume import Volume


def resampled_chest_ct(size: tuple[int, int, int]) -> Volume:
    """The bundled chest CT on an (x, y, z) = ``size`` grid covering the same physical extent."""
    source = chest_ct()
    image = volume_to_sitk(source)
    old_size = np.array(image.GetSize(), float)
    spacing = np.array(image.GetSpacing()) * old_size / np.array(size, float)
    # voxel centres: the first new centre sits half a new voxel inside the old grid's outer edge
    direction = np.array(image.GetDirection()).reshape(3, 3)
    corner = np.array(image.GetOrigin()) - direction @ (np.array(image.GetSpacing()) / 2)
    origin = corner + direction @ (spacing / 2)
    resampled = sitk.Resample(
        image,
        [int(s) for s in size],
        sitk.Transform(),
        sitk.sitkLinear,
        tuple(origin),
        tuple(spacing),
        image.GetDirection(),
        -1024.0,
        sitk.sitkInt16,
    )
    return volume_from_sitk(resampled)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=3, default=(512, 512, 300), metavar=("X", "Y", "Z"))
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    volume = resampled_chest_ct(tuple(args.size))
    write_volume(volume, out, overwrite=True)
    print(f"{out}: {volume.shape[::-1]} voxels (x, y, z), spacing {tuple(round(s, 3) for s in volume.spacing)} mm")


if __name__ == "__main__":
    main()
