"""Measure how the IQ-OTH/NCCD snapshots were windowed and framed, against the real CT ``CTChest4`` (in HU).

Writes ``snapshot_levels.md`` (the numbers behind :mod:`lungai.nlb.framing`). Command::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/measure_snapshots.py --iqoth ../shared/data/iqoth_nccd \
        --out bench/nlb/snapshot_levels.md

Window: the bodies of the normal snapshots and the body of CTChest4 (slices with lungs) are compared level by level:
for grey g, the fraction of snapshot body pixels at or above g equals the fraction of CT body voxels at or above some
h(g) HU. A linear window maps h to g; least squares over g = 20, 25, ..., 200 (inside the window: 0 and 255 are
clipped) gives its ends. Field of view: body widths (snapshot pixels against CTChest4 millimetres).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from lungai.lungfield import lung_field
from lungai.nlb.data import list_snapshots
from lungai.nlb.regions import snapshot_field
from lungai.sample_data import chest_ct

GREY_LEVELS = np.arange(20, 201, 5)


def snapshot_body_values(paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Grey values inside the snapshots' bodies (all pooled) and each body's width in pixels."""
    values, widths = [], []
    for path in paths:
        grey = np.asarray(Image.open(path).convert("L"))
        body = snapshot_field(grey / 255.0).body
        values.append(grey[body])
        columns = np.flatnonzero(body.any(axis=0))
        widths.append(columns[-1] - columns[0] + 1)
    return np.concatenate(values), np.array(widths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iqoth", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    normals = [s.path for s in list_snapshots(args.iqoth) if s.category == "normal"]
    grey, widths = snapshot_body_values(normals)
    ct = chest_ct()
    field = lung_field(ct)
    with_lungs = field.lungs.any(axis=(1, 2))
    hu = ct.array[with_lungs][field.body[with_lungs]].astype(np.float32)
    matched = np.array([np.quantile(hu, 1 - (grey >= g).mean()) for g in GREY_LEVELS])
    slope, intercept = np.polyfit(matched, GREY_LEVELS, 1)
    low, high = -intercept / slope, (255 - intercept) / slope
    ct_widths = [
        (np.flatnonzero(body.any(axis=0))[[0, -1]] @ [-1, 1] + 1) * ct.spacing[0] for body in field.body[with_lungs]
    ]
    body_mm = float(np.median(ct_widths))
    body_px = float(np.median(widths))
    lines = [
        "# IQ-OTH/NCCD snapshots: window and field of view, measured",
        "",
        f"Command: `OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/measure_snapshots.py --iqoth {args.iqoth} "
        f"--out {args.out}`",
        "",
        f"{len(normals)} normal snapshots (bodies: :func:`lungai.nlb.regions.snapshot_field`) against the real CT "
        f"CTChest4 ({int(with_lungs.sum())} slices with lungs, body of the shared lung field, {hu.size} voxels).",
        "",
        "## Window",
        "",
        f"Share of snapshot body pixels that are black (grey 0): {np.mean(grey == 0):.3f}; saturated (255): "
        f"{np.mean(grey == 255):.4f}. Air, lung parenchyma and fat are all black: the lower end of the window lies "
        "above fat (about -100 HU).",
        "",
        "| grey g | share of body pixels >= g | HU with the same share in CTChest4 |",
        "|---|---|---|",
        *(f"| {g} | {(grey >= g).mean():.4f} | {h:.0f} |" for g, h in zip(GREY_LEVELS[::4], matched[::4])),
        "",
        f"Least-squares line over g = {GREY_LEVELS[0]}..{GREY_LEVELS[-1]}: grey = {slope:.3f} HU + {intercept:.1f}, "
        f"i.e. the window ({low:.0f}, {high:.0f}) HU. Used: `IQOTH_NCCD_WINDOW` = (-50, 265) HU, the same fit with a "
        "snapshot body mask that leaves out the black subcutaneous fat (the upper end is the less certain one: "
        "it rests on the few bright pixels of bone and contrast).",
        "",
        "## Field of view",
        "",
        f"Median body width: snapshots {body_px:.0f} px (of 256), CTChest4 {body_mm:.0f} mm: "
        f"{body_mm / body_px:.2f} mm per snapshot pixel for a body of CTChest4's width. Used: `SNAPSHOT_PIXEL_MM` = "
        "1.40 (a 358 mm field at 256 px; patients differ in width, so this is the scale of a typical adult body, not "
        "of each snapshot).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
