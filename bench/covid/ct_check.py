"""The CTChest4 checks that ``Testing/test_covid_pipeline.py`` asks of the bundled CHS-Net, as numbers, for any weights.

Regenerate (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/covid/ct_check.py --weights chsnet.pt

Prints one Markdown table: on CTChest4 slices 22-33 (the lung stage never trains on them) the lung Dice against the
reference segmentation (test: at least 0.95; each lung at least 0.9), the segmented lung volume over the reference
(within 5 %), infection voxels as a share of the lungs (a normal scan: at most 0.5 %); on the whole scan the voxels of
any segment outside the body and of the lungs in the airways (none).
"""

from __future__ import annotations

import argparse

from lungai.covid.data import TEST_SLICES
from lungai.covid.pipeline import load, segment_volume
from lungai.lungfield import lung_field
from lungai.metrics import dice
from lungai.sample_data import chest_ct, chest_lungs


def ct_checks(weights: str | None) -> dict[str, float]:
    ct = chest_ct()
    result = segment_volume(ct, load(weights, device="cpu").network)
    field = lung_field(ct)
    held_out = slice(TEST_SLICES.start, TEST_SLICES.stop)
    labels = chest_lungs()[0].array[held_out]
    right, left = result.masks["Right lung"][held_out], result.masks["Left lung"][held_out]
    lungs = right | left
    all_lungs = result.masks["Right lung"] | result.masks["Left lung"]
    return {
        "lung Dice (>= 0.95)": dice(lungs, labels > 0),
        "right / left lung Dice (>= 0.9)": (dice(right, labels == 1), dice(left, labels == 2)),
        "lung volume / reference (1 +- 0.05)": lungs.sum() / (labels > 0).sum(),
        "infection % of lungs (<= 0.5)": 100 * result.masks["Infection"][held_out].sum() / lungs.sum(),
        "voxels outside the body (0)": int(sum((mask & ~field.body).sum() for mask in result.masks.values())),
        "lung voxels in the airways (0)": int((all_lungs & field.airways).sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="chsnet checkpoint (default: the bundled chsnet-covid)")
    arguments = parser.parse_args()
    print("| check | value |\n|---|---|")
    for name, value in ct_checks(arguments.weights).items():
        shown = " / ".join(f"{v:.4f}" for v in value) if isinstance(value, tuple) else f"{value:.4g}"
        print(f"| {name} | {shown} |")


if __name__ == "__main__":
    main()
