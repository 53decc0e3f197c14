"""Build the bundled UGS-Net sample ``Resources/SampleData/ugsnet/lidc_multireader_sample.npz``.

    python bench/ugsnet/make_sample.py --data ../shared/data/lidc_multireader.npz

Takes 16 crops with 2 to 4 readers from distinct patients of test fold 0 (patient folds, seed 0), so the
bundled demo weights (trained on folds 1-4) never saw them; the file keeps the source format. Only crops whose
DICOM rescale intercept is known: an inferred intercept can be wrong (one such crop had its lung at about
-300 HU instead of -850, a shift of about +1024).
"""

import argparse
from pathlib import Path

import numpy as np

from lungai.ugsnet.data import load_npz, patient_folds

OUT = Path(__file__).resolve().parents[2] / "Resources" / "SampleData" / "ugsnet" / "lidc_multireader_sample.npz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--count", type=int, default=16)
    args = parser.parse_args()
    arrays = load_npz(args.data)
    eligible = arrays["n_readers"] >= 2
    folds = np.full(len(eligible), -1)
    folds[eligible] = patient_folds(arrays["patient_id"][eligible])
    rng = np.random.default_rng(0)
    chosen, patients = [], set()
    for row in rng.permutation(np.nonzero(folds == 0)[0]):
        if arrays["intercept_known"][row] and arrays["patient_id"][row] not in patients:
            chosen.append(row)
            patients.add(arrays["patient_id"][row])
        if len(chosen) == args.count:
            break
    chosen = np.sort(np.array(chosen))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, source_row=chosen, **{k: v[chosen] for k, v in arrays.items()})
    print(OUT, OUT.stat().st_size, "bytes; readers", np.bincount(arrays["n_readers"][chosen]))


if __name__ == "__main__":
    main()
