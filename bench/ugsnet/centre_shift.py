# ruff: noqa: E702, E501
"""Issue 13: the bundled UGS-Net on fold 0 when the patch centre moves off the crop centre by up to 0-3 pixels.
Usage: PYTHONPATH=. python bench/ugsnet/centre_shift.py"""

import numpy as np
import torch

from lungai.registry import load_registered_model
from lungai.ugsnet.data import load_npz
from lungai.ugsnet.inference import predict_probabilities
from lungai.ugsnet.training import nested_patient_folds

torch.set_num_threads(2)
a = load_npz("../shared/data/lidc_multireader.npz")
nr = a["n_readers"]
keep = np.nonzero(nr >= 2)[0]
te = keep[nested_patient_folds(a["patient_id"][keep], nr[keep]) == 0]
m = a["masks"][te, 0]
rows = np.nonzero(m.any(2))[1]
bb = [(np.nonzero(x.any(1))[0][[0, -1]].mean(), np.nonzero(x.any(0))[0][[0, -1]].mean()) for x in m]
cm = [np.argwhere(x).mean(0) for x in m]
print(
    "bbox centre offset from 35: mean abs", np.abs(np.array(bb) - 35).mean(0), "max", np.abs(np.array(bb) - 35).max(0)
)
print("centroid offset: mean abs", np.abs(np.array(cm) - 35).mean(0))
model, _ = load_registered_model("ugsnet-lidc-w8")
rng = np.random.default_rng(0)
for max_shift in (0, 1, 2, 3):
    sh = rng.integers(-max_shift, max_shift + 1, (len(te), 2))
    img = np.stack([a["image_hu"][r][3 + s[0] : 67 + s[0], 3 + s[1] : 67 + s[1]] for r, s in zip(te, sh)]).astype(
        np.float32
    )
    lab = np.stack([a["masks"][r, 0][3 + s[0] : 67 + s[0], 3 + s[1] : 67 + s[1]] for r, s in zip(te, sh)])
    p = predict_probabilities(model, img)["final"] > 0.5
    d = 2 * (p & lab).sum((1, 2)) / (p.sum((1, 2)) + lab.sum((1, 2)))
    print(f"point off the crop centre by up to {max_shift} px per axis: Dice {d.mean():.4f}")
