"""Short recipe-diagnosis runs (issue 13): train one model on the patients of folds != K, score fold K.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/ugsnet/recipe_probe.py --data ../shared/data/lidc_multireader.npz \
        --kind monai_unet --features 16 32 64 128 256 --epochs 20 --fusion dicebce --tag NAME

Prints per-epoch seconds and the held-out Dice vs Label1 (threshold 0.5, with and without flip averaging), and
appends one JSON line to bench/ugsnet/probe/probe.jsonl.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lungai import metrics
from lungai.tta import flip_average
from lungai.ugsnet.data import load_npz, prepare_crops
from lungai.ugsnet.inference import predict_probabilities
from lungai.ugsnet.preprocess import normalise_hu
from lungai.ugsnet.training import BUDGET_TRAIN, split_by_patient, train_model


def tta_final(model, images_hu: np.ndarray) -> np.ndarray:
    model.eval()
    x = torch.from_numpy(normalise_hu(images_hu)[:, None])
    out = []
    for start in range(0, len(x), 64):
        out.append(flip_average(model, x[start : start + 64])["final"][:, 0].numpy())
    return np.concatenate(out)


def mean_dice(prob: np.ndarray, ref: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean([metrics.dice(p > threshold, r) for p, r in zip(prob, ref)]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--kind", default="ugsnet")
    parser.add_argument("--features", type=int, nargs=5, default=[8, 16, 32, 64, 128])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--fusion", default="bce")
    parser.add_argument("--pool", type=int, default=8)
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--tag", default="")
    parser.add_argument("--train-min-readers", type=int, default=2)
    parser.add_argument("--augmentation", default="dihedral")
    parser.add_argument("--final-target", default="annotations")
    parser.add_argument("--curve", action="store_true", help="score the test fold after every epoch (diagnosis only)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    crops = prepare_crops(load_npz(args.data), min_readers=min(1, args.train_min_readers))
    train_rows, all_test_rows = split_by_patient(crops, args.fold)
    train_rows = train_rows[crops.n_readers[train_rows] >= args.train_min_readers]
    test_rows = all_test_rows[crops.n_readers[all_test_rows] >= 2]
    config = replace(
        BUDGET_TRAIN,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        device="cpu",
        max_steps_per_epoch=args.max_steps,
    )
    started = time.perf_counter()
    model, result = train_model(
        args.kind,
        crops,
        train_rows,
        features=args.features,
        config=config,
        fusion=args.fusion,
        attention_pool=args.pool,
        val_rows=test_rows if args.curve else None,
        augmentation=args.augmentation,
        final_target=args.final_target,
    )
    train_seconds = time.perf_counter() - started
    test = crops.subset(test_rows)
    prob = predict_probabilities(model, test.image_hu)["final"]
    prob_tta = tta_final(model, test.image_hu)
    test_all = crops.subset(all_test_rows)
    prob_all = predict_probabilities(model, test_all.image_hu)["final"]
    row = {
        "tag": args.tag,
        **{k: v for k, v in vars(args).items() if k not in ("data", "tag")},
        "train_crops": int(len(train_rows)),
        "test_crops": int(len(test_rows)),
        "train_seconds": round(train_seconds, 1),
        "epoch_seconds": [round(h["seconds"], 1) for h in result.history],
        "train_loss": [round(h["train_loss"], 4) for h in result.history],
        "curve_dice": [round(h.get("val_dice", float("nan")), 4) for h in result.history],
        "dice": {str(t): round(mean_dice(prob, test.label1, t), 4) for t in (0.3, 0.4, 0.5, 0.6)},
        "test_crops_any_readers": int(len(all_test_rows)),
        "dice_any_readers": round(mean_dice(prob_all, test_all.label1), 4),
        "dice_tta": {str(t): round(mean_dice(prob_tta, test.label1, t), 4) for t in (0.3, 0.4, 0.5, 0.6)},
    }
    print(json.dumps(row), flush=True)
    out = Path(__file__).parent / "probe" / "probe.jsonl"
    out.parent.mkdir(exist_ok=True)
    with open(out, "a") as handle:
        handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
