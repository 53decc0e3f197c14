"""Why NeoplasmNLB has a lung view: what each view shows of held-out LIDC nodules, and of CTChest4's normal lung.

Regenerate (from the repository root; seconds, no network)::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/lung_view_check.py --lidc ../shared/data/lidc_multireader.npz \
        --out bench/nlb/lung_view.md

Nodules: the usable nodules of the LIDC patients of nodule fold 0 of 5 (by patient, seed 0), the ones the CT check
inserts (``bench/nlb/ct_check.py``). A nodule "shows" above a level when at least a quarter of its inserted mask
(resampled to the pixel size, :func:`lungai.nlb.insertion.resample_nodule`) lies above it, the rule of
:func:`lungai.nlb.insertion.shows_in_window`. CTChest4's lung: the shared lung field.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from lungai.lungfield import lung_field
from lungai.nlb.data import load_nodules
from lungai.nlb.insertion import MIN_VISIBLE_SHARE, resample_nodule
from lungai.nlb.lungview import LUNG_VIEW_WINDOW
from lungai.sample_data import chest_ct
from lungai.splits import group_folds

LEVELS = (-50, -200, -300, -400, -500, -600, -700)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lidc", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    nodules, patients = load_nodules(args.lidc)
    folds = group_folds(patients, 5, 0)
    held = [n for n, f in zip(nodules, folds) if f == 0]
    lines = [
        "# What the snapshot view and the lung view show (NeoplasmNLB)",
        "",
        "Command: `OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/lung_view_check.py "
        + " ".join(sys.argv[1:])
        + "`",
        "",
        f"## {len(held)} held-out LIDC-IDRI nodules (nodule fold 0 of 5 by patient): share that shows above a level",
        "",
        "At least a quarter of the inserted mask above the level. The snapshot view starts at -50 HU; the lung view "
        f"spans {LUNG_VIEW_WINDOW} HU inside the lungs.",
        "",
        "| pixel size | " + " | ".join(f"> {level} HU" for level in LEVELS) + " | median mean HU of the mask |",
        "|---|" + "---|" * (len(LEVELS) + 1),
    ]
    for pixel_mm, name in ((1.40, "1.40 mm (snapshots)"), (3.05, "3.05 mm (CTChest4)")):
        shown = {level: 0 for level in LEVELS}
        means = []
        for nodule in held:
            hu, fraction = resample_nodule(nodule, pixel_mm, in_hu=True)
            inside = fraction >= 0.5
            if not inside.any():
                continue
            means.append(float(hu[inside].mean()))
            for level in LEVELS:
                shown[level] += int((hu[inside] > level).mean() >= MIN_VISIBLE_SHARE)
        lines.append(
            f"| {name} | "
            + " | ".join(f"{shown[level] / len(held):.3f}" for level in LEVELS)
            + f" | {np.median(means):.0f} |"
        )
    ct = chest_ct()
    lungs = lung_field(ct).lungs
    hu = ct.array.astype(np.float32)
    inner = np.stack([ndimage.binary_erosion(s, iterations=2) for s in lungs])
    percentiles = np.percentile(hu[lungs], [5, 25, 50, 75, 95])
    lines += [
        "",
        f"## CTChest4's normal lung (shared lung field, {int(lungs.sum())} voxels of 3.05 x 3.05 x 10 mm)",
        "",
        "HU percentiles 5/25/50/75/95: " + ", ".join(f"{p:.0f}" for p in percentiles) + ".",
        "",
        "| level | share of the lung field above | in-plane blobs above it, lung eroded by 2 px | of at least 5 px |",
        "|---|---|---|---|",
    ]
    for level in LEVELS:
        above = (hu > level) & lungs
        sizes = []
        for k in range(len(hu)):
            labels, count = ndimage.label(above[k] & inner[k])
            if count:
                sizes += list(ndimage.sum(np.ones_like(labels), labels, range(1, count + 1)))
        sizes = np.array(sizes)
        lines.append(f"| {level} HU | {above.sum() / lungs.sum():.4f} | {len(sizes)} | {int((sizes >= 5).sum())} |")
    lines += [
        "",
        "A nodule of 5-10 mm covers 2-8 pixels at 3.05 mm: in the lung view the vessels of a normal lung are blobs of "
        "the same size and brightness. The network must learn them as normal, which the snapshots (lungs clipped "
        "black) cannot teach: training blends real LIDC lung texture into the lungs of every sample "
        "(`lungai/nlb/lungview.py`).",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
