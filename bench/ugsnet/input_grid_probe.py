"""Issue 13 probe: which input grid for UGS-Net? MONAI UNet (16-256, 2 residual units), DiceCE, random flips and
90-degree turns, Adam 1e-3 with cosine decay, batch 16, seed 0; fold 0 of the crops with >= 2 readers; Dice against
Label1 at threshold 0.5 on the model's own grid.

MODE: ``native`` (the central 64 x 64 native pixels, :func:`lungai.ugsnet.data.prepare_crops`), ``nativeshift``
(native with a random shift of 0 to 6 pixels of the 64-pixel window inside the 71-pixel crop per batch, i.e. up to 3
off centre), or ``grid`` / ``grid0.7`` / ``grid0.85`` (crops resampled to 0.55 / 0.7 / 0.85 mm around the crop
centre, bilinear, masks thresholded at 0.5: lungai's input before 2026-12-06). Native modes also report Dice with
the test patch centre moved by up to 1, 2 and 3 pixels per axis, and their output resampled onto the 0.55 mm grid
and scored against Label1 resampled there.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/ugsnet/input_grid_probe.py MODE 30
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from scipy import ndimage

from lungai.ugsnet.data import load_npz, prepare_crops
from lungai.ugsnet.preprocess import INPUT_SIZE, extract_patch, normalise_hu
from lungai.ugsnet.training import nested_patient_folds

DATA = "../shared/data/lidc_multireader.npz"


def resample(image: np.ndarray, spacing_in: float, spacing_out: float, fill: str) -> np.ndarray:
    """The 64 x 64 grid at ``spacing_out`` mm around the centre of a native crop (bilinear)."""
    centre = (image.shape[0] - 1) / 2
    offsets = centre + (np.arange(INPUT_SIZE) - (INPUT_SIZE - 1) / 2) * spacing_out / spacing_in
    rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
    return ndimage.map_coordinates(image.astype(np.float32), [rows, cols], order=1, mode=fill)


def mean_dice(pred: np.ndarray, ref: np.ndarray) -> float:
    return float(np.mean(2 * (pred & ref).sum((1, 2)) / (pred.sum((1, 2)) + ref.sum((1, 2)))))


def predict(net: torch.nn.Module, x: torch.Tensor) -> np.ndarray:
    net.eval()
    with torch.no_grad():
        p = torch.cat([torch.sigmoid(net(x[i : i + 64])) for i in range(0, len(x), 64)])[:, 0].numpy()
    net.train()
    return p


def main(mode: str, epochs: int) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    arrays = load_npz(DATA)
    keep = np.nonzero(arrays["n_readers"] >= 2)[0]
    folds = nested_patient_folds(arrays["patient_id"][keep], arrays["n_readers"][keep])
    spacing = arrays["pixel_spacing_mm"][keep]
    crops_hu, label1 = arrays["image_hu"][keep].astype(np.float32), arrays["masks"][keep][:, 0]
    if mode.startswith("native"):
        crops = prepare_crops(arrays, min_readers=2)
        image, label = normalise_hu(crops.image_hu), crops.label1
        whole = torch.from_numpy(normalise_hu(crops_hu)[:, None])
        whole_label = torch.from_numpy(label1[:, None]).float()
    else:
        out = float(mode[4:] or 0.55)
        image = normalise_hu(np.stack([resample(i, s, out, "nearest") for i, s in zip(crops_hu, spacing)]))
        label = np.stack([resample(m, s, out, "constant") >= 0.5 for m, s in zip(label1, spacing)])
    train_rows, test = np.nonzero(folds != 0)[0], np.nonzero(folds == 0)[0]
    x_all, y_all = torch.from_numpy(image[:, None].copy()), torch.from_numpy(label[:, None].copy()).float()
    net = UNet(2, 1, 1, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2)
    loss_fn = DiceCELoss(sigmoid=True)
    optimiser = torch.optim.Adam(net.parameters(), 1e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, epochs)
    generator, start = torch.Generator().manual_seed(0), time.time()
    for epoch in range(epochs):
        order = train_rows[torch.randperm(len(train_rows), generator=generator).numpy()]
        for i in range(0, len(order), 16):
            batch = order[i : i + 16]
            if mode == "nativeshift":
                dr, dc = (int(v) for v in torch.randint(0, 7, (2,), generator=generator))
                window = (slice(None), slice(dr, dr + INPUT_SIZE), slice(dc, dc + INPUT_SIZE))
                x, y = whole[batch][window[0], :, window[1], window[2]], whole_label[batch][:, :, window[1], window[2]]
            else:
                x, y = x_all[batch], y_all[batch]
            if torch.rand(1, generator=generator) < 0.5:
                x, y = x.flip(2), y.flip(2)
            if torch.rand(1, generator=generator) < 0.5:
                x, y = x.flip(3), y.flip(3)
            turns = int(torch.randint(4, (1,), generator=generator))
            x, y = x.rot90(turns, (2, 3)), y.rot90(turns, (2, 3))
            optimiser.zero_grad()
            loss_fn(net(x), y).backward()
            optimiser.step()
        schedule.step()
        if epoch % 5 == 4 or epoch == epochs - 1:
            dice = mean_dice(predict(net, x_all[test]) > 0.5, label[test])
            print(f"{mode} epoch {epoch + 1} ({time.time() - start:.0f} s): Dice vs Label1 {dice:.4f}", flush=True)
    if not mode.startswith("native"):
        return
    probability = predict(net, x_all[test])
    padded = [np.pad(p, (crops_hu.shape[1] - INPUT_SIZE) // 2 + np.array([[0, 1], [0, 1]])) for p in probability]
    on_grid = np.stack([resample(p, s, 0.55, "constant") > 0.5 for p, s in zip(padded, spacing[test])])
    ref_grid = np.stack([resample(m, s, 0.55, "constant") >= 0.5 for m, s in zip(label1[test], spacing[test])])
    print(f"{mode} output on the 0.55 mm grid: Dice vs Label1 there {mean_dice(on_grid, ref_grid):.4f}")
    rng, centre = np.random.default_rng(0), (crops_hu.shape[1] - 1) / 2
    for max_shift in (1, 2, 3):
        centres = centre + rng.integers(-max_shift, max_shift + 1, (len(test), 2))
        shifted = np.stack([extract_patch(normalise_hu(crops_hu[r]), c) for r, c in zip(test, centres)])
        refs = np.stack([extract_patch(label1[r], c, edge=False) for r, c in zip(test, centres)])
        dice = mean_dice(predict(net, torch.from_numpy(shifted[:, None])) > 0.5, refs)
        print(f"{mode} patch centre moved by up to {max_shift} px per axis: Dice vs Label1 {dice:.4f}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
