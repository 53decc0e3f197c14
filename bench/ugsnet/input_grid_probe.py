# ruff: noqa: E701, E702, E741, E501, E731
"""Issue 13 probe (fold 0, min 2 readers): MONAI UNet (16-256, 2 residual units), DiceCE, flips and 90-degree turns,
Adam 1e-3 cosine, batch 16, on the central 64 x 64 native pixels (`native`), native with random shifts of up to 3
pixels per axis (`nativeshift`) or crops resampled to a fixed spacing (`grid` = 0.55 mm, `grid0.7`, `grid0.85`).
Usage: OMP_NUM_THREADS=1 PYTHONPATH=. python bench/ugsnet/input_grid_probe.py MODE EPOCHS  (prints Dice vs Label1)."""

import os
import sys
import time

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from scipy import ndimage

from lungai.ugsnet.data import load_npz
from lungai.ugsnet.preprocess import normalise_hu
from lungai.ugsnet.training import nested_patient_folds

torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
torch.manual_seed(0)
mode = sys.argv[1]
epochs = int(sys.argv[2])
arr = load_npz("../shared/data/lidc_multireader.npz")
nr = arr["n_readers"]
keep = np.nonzero(nr >= 2)[0]
folds = nested_patient_folds(arr["patient_id"][keep], nr[keep])
if mode.startswith("native"):
    img71 = normalise_hu(arr["image_hu"][keep].astype(np.float32))
    lab71 = arr["masks"][keep][:, 0]
    img = img71[:, 3:67, 3:67]
    lab = lab71[:, 3:67, 3:67]
    X71 = torch.from_numpy(img71[:, None].copy())
    Y71 = torch.from_numpy(lab71[:, None].copy()).float()
else:
    spacing_out = float(mode[4:] or 0.55)  # resample around the crop centre as lungai did before (order 1, mask >= 0.5)

    def grid(a, sp, fill):
        off = (np.arange(64) - 31.5) * spacing_out / sp
        rr, cc = np.meshgrid(35 + off, 35 + off, indexing="ij")
        return ndimage.map_coordinates(a.astype(np.float32), [rr, cc], order=1, mode=fill)

    sps = arr["pixel_spacing_mm"][keep]
    img = normalise_hu(np.stack([grid(i, s, "nearest") for i, s in zip(arr["image_hu"][keep], sps)]))
    lab = np.stack([grid(m, s, "constant") >= 0.5 for m, s in zip(arr["masks"][keep][:, 0], sps)])
tr, te = np.nonzero(folds != 0)[0], np.nonzero(folds == 0)[0]
X = torch.from_numpy(img[:, None].copy()).float()
Y = torch.from_numpy(lab[:, None].copy()).float()
net = UNet(2, 1, 1, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2)
loss_fn = DiceCELoss(sigmoid=True)
opt = torch.optim.Adam(net.parameters(), 1e-3)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
g = torch.Generator().manual_seed(0)
t0 = time.time()


def evaluate():
    net.eval()
    with torch.no_grad():
        p = torch.cat([torch.sigmoid(net(X[te[i : i + 64]])) for i in range(0, len(te), 64)])[:, 0].numpy() > 0.5
    y = lab[te]
    inter = (p & y).sum((1, 2))
    d = 2 * inter / (p.sum((1, 2)) + y.sum((1, 2)))
    net.train()
    return d.mean()


for ep in range(epochs):
    perm = tr[torch.randperm(len(tr), generator=g).numpy()]
    for i in range(0, len(perm), 16):
        b = perm[i : i + 16]
        if mode == "nativeshift":
            dr, dc = (int(v) for v in torch.randint(0, 7, (2,), generator=g))
            x, y = X71[b, :, dr : dr + 64, dc : dc + 64], Y71[b, :, dr : dr + 64, dc : dc + 64]
        else:
            x, y = X[b], Y[b]
        if torch.rand(1, generator=g) < 0.5:
            x, y = x.flip(2), y.flip(2)
        if torch.rand(1, generator=g) < 0.5:
            x, y = x.flip(3), y.flip(3)
        k = int(torch.randint(4, (1,), generator=g))
        x, y = x.rot90(k, (2, 3)), y.rot90(k, (2, 3))
        opt.zero_grad()
        l = loss_fn(net(x), y)
        l.backward()
        opt.step()
    sched.step()
    if ep % 5 == 4 or ep == epochs - 1:
        print(mode, ep + 1, round(time.time() - t0), evaluate(), flush=True)
net.eval()
with torch.no_grad():
    p = torch.cat([torch.sigmoid(net(X[te[i : i + 64]])) for i in range(0, len(te), 64)])[:, 0].numpy()
np.savez(f"/tmp/input_grid_pred_{mode}.npz", p=p, rows=keep[te])
rng = np.random.default_rng(0)
for m in (1, 2, 3) if mode.startswith("native") else ():
    sh = rng.integers(-m, m + 1, (len(te), 2))
    xs = torch.stack([X71[r, :, 3 + a : 67 + a, 3 + b : 67 + b] for r, (a, b) in zip(te, sh)])
    ys = np.stack([lab71[r, 3 + a : 67 + a, 3 + b : 67 + b] for r, (a, b) in zip(te, sh)])
    with torch.no_grad():
        ps = torch.cat([torch.sigmoid(net(xs[i : i + 64])) for i in range(0, len(xs), 64)])[:, 0].numpy() > 0.5
    d = 2 * (ps & ys).sum((1, 2)) / (ps.sum((1, 2)) + ys.sum((1, 2)))
    print(mode, "shift up to", m, d.mean(), flush=True)
