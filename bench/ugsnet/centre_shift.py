"""Issue 13: the bundled UGS-Net on fold 0 (crops with >= 2 readers) when the patch centre moves off the crop
centre by up to 0 to 3 pixels per axis (one random shift per crop, seed 0), and how far the crops' own reader's
nodule (bounding box, centroid) sits from the crop centre.

    PYTHONPATH=. python bench/ugsnet/centre_shift.py
"""

from __future__ import annotations

import numpy as np

from lungai import metrics
from lungai.registry import load_registered_model
from lungai.ugsnet.data import load_npz
from lungai.ugsnet.inference import predict_probabilities
from lungai.ugsnet.preprocess import extract_patch
from lungai.ugsnet.training import nested_patient_folds

DATA = "../shared/data/lidc_multireader.npz"


def main() -> None:
    arrays = load_npz(DATA)
    keep = np.nonzero(arrays["n_readers"] >= 2)[0]
    test = keep[nested_patient_folds(arrays["patient_id"][keep], arrays["n_readers"][keep]) == 0]
    label1 = arrays["masks"][test, 0]
    centre = (np.array(label1.shape[1:]) - 1) / 2
    boxes = np.array([[np.nonzero(m.any(axis))[0][[0, -1]].mean() for axis in (1, 0)] for m in label1])
    centroids = np.array([np.argwhere(m).mean(0) for m in label1])
    print("Label1 bounding-box centre from the crop centre, mean |offset|:", np.abs(boxes - centre).mean(0))
    print("Label1 centroid from the crop centre, mean |offset|:", np.abs(centroids - centre).mean(0))
    model, _ = load_registered_model("ugsnet-lidc-w8")
    rng = np.random.default_rng(0)
    for max_shift in (0, 1, 2, 3):
        centres = centre + rng.integers(-max_shift, max_shift + 1, (len(test), 2))
        images = np.stack([extract_patch(arrays["image_hu"][r].astype(np.float32), c) for r, c in zip(test, centres)])
        refs = [extract_patch(m, c, edge=False) for m, c in zip(label1, centres)]
        final = predict_probabilities(model, images)["final"] > 0.5
        dice = np.mean([metrics.dice(p, r) for p, r in zip(final, refs)])
        print(f"patch centre moved by up to {max_shift} px per axis: Dice vs Label1 {dice:.4f}")


if __name__ == "__main__":
    main()
