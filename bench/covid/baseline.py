"""The plain baseline of issue 13 beside CHS-Net: MONAI's ``UNet`` (channels 16-256, two residual units) at 256 px on
the doctor-labelled training slices only, BCE + Dice, left-right flips and the rest of the CHS-Net augmentation,
Adam with the shared trainer's cosine schedule, scored like CHS-Net on the same held-out slices.

Same data as the bundled CHS-Net's fine-tuning (the training fold of :func:`lungai.covid.bundle.doctor_split`, 25
slices), scored on its 25 held-out slices; no pseudo labels, whole slices (no lung stage). The issue's baseline had
all 50 slices and 10 minutes on 2 cores of its machine. ``--epochs`` takes several budgets, one run each: 120 epochs
(about the issue's 10 minutes on this machine, one thread) and 265 (about the bundled CHS-Net's training seconds).

Regenerate (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/covid/baseline.py --data ../shared/data/covid_infection_medseg \
        --epochs 120 265 --out bench/covid
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from lungai.augmentation import AugmentedDataset
from lungai.covid.bundle import doctor_split
from lungai.covid.cascade import Cascade
from lungai.covid.data import LabelledSlice, load_medseg_folder
from lungai.covid.evaluation import infection_metrics
from lungai.covid.grid import GridBox
from lungai.covid.training import AUGMENTATION, SegmentationTask, SliceArrays
from lungai.io import write_table_csv
from lungai.training import TrainConfig, seed_everything, train

CHANNELS = (16, 32, 64, 128, 256)


def whole_slices(slices: list[LabelledSlice], size: int) -> SliceArrays:
    """Each slice square-padded and resized to ``size`` with its infection label (what the direct model sees)."""
    boxes = [GridBox.whole(s.image.shape) for s in slices]
    images = np.stack([b.extract(s.image, size) for b, s in zip(boxes, slices)])
    targets = np.stack([b.extract(s.infection.astype(np.float32), size, order=0) for b, s in zip(boxes, slices)])
    return SliceArrays(images, {"infection": targets})


def monai_unet() -> torch.nn.Module:
    from monai.networks.nets import UNet

    return UNet(spatial_dims=2, in_channels=1, out_channels=1, channels=CHANNELS, strides=(2,) * 4, num_res_units=2)


def run(train_slices: list[LabelledSlice], held_out: list[LabelledSlice], epochs: int, args) -> dict:
    """Train one baseline for ``epochs`` and score it on ``held_out``, without and with flips."""
    seed_everything(args.seed)
    network = monai_unet()
    load = os.getloadavg()[0]
    started = time.perf_counter()
    train(
        network,
        SegmentationTask("infection"),
        AugmentedDataset(whole_slices(train_slices, args.size), ("infection",), AUGMENTATION, seed=args.seed),
        None,
        TrainConfig(
            epochs=epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            scheduler="cosine",
            warmup_epochs=1,
            min_lr=args.lr / 20,
            seed=args.seed,
            device="cpu",
        ),
        model_name="monai_unet",
        model_config={"channels": list(CHANNELS)},
    )
    seconds = time.perf_counter() - started
    metrics, _ = infection_metrics(Cascade(network.eval(), lung=None, lung_input=None, size=args.size), held_out)
    flipped = Cascade(network, lung=None, lung_input=None, size=args.size, tta=True)
    with_flips, _ = infection_metrics(flipped, held_out)
    return {
        "model": "MONAI UNet (16-256, 2 residual units)",
        "grid": args.size,
        "training_slices": len(train_slices),
        "epochs": epochs,
        "parameters": sum(p.numel() for p in network.parameters()),
        "train_s": round(seconds),
        "threads": torch.get_num_threads(),
        "load_average_at_start": round(load, 1),
        **{k: round(v, 4) for k, v in metrics.items()},
        "dice_with_flips": round(with_flips["dice"], 4),
        "held_out_slices": len(held_out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="covid_infection_medseg folder")
    parser.add_argument("--epochs", type=int, nargs="+", default=[120, 265])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="folder for baseline.csv")
    args = parser.parse_args()
    train_slices, held_out = doctor_split(load_medseg_folder(args.data))
    rows = []
    for epochs in args.epochs:
        rows.append(run(train_slices, held_out, epochs, args))
        print(rows[-1], flush=True)
    write_table_csv(Path(args.out) / "baseline.csv", rows)


if __name__ == "__main__":
    main()
