"""Train the four models of seed 001's Table I at one CPU budget on patient folds and save test predictions.

    OMP_NUM_THREADS=1 python bench/ugsnet/run_comparison.py --data ../shared/data/lidc_multireader.npz \
        --folds 0 1 --epochs 10 --out bench/ugsnet/runs

For each fold k and model it trains on the other four folds (lungai.training, no validation split: the last
epoch is kept) and writes ``runs/<model>_fold<k>/last.pt`` and ``runs/pred_<model>_fold<k>.npz`` (sigmoid maps
of every head on the test crops, their row numbers). ``analyse.py`` turns these into the tables and figures.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lungai.ugsnet.data import load_npz, prepare_crops
from lungai.ugsnet.inference import predict_probabilities
from lungai.ugsnet.training import BUDGET_TRAIN, split_by_patient, train_model

ORDER = ("ugsnet", "unet", "attention_unet", "ugsnet_v1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--models", nargs="+", default=list(ORDER))
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--features", type=int, nargs=5, default=[8, 16, 32, 64, 128])
    parser.add_argument("--out", default="bench/ugsnet/runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    crops = prepare_crops(load_npz(args.data))
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    for fold in args.folds:
        train_rows, test_rows = split_by_patient(crops, fold)
        for kind in args.models:
            run = out / f"{kind}_fold{fold}"
            config = replace(BUDGET_TRAIN, epochs=args.epochs, device="cpu", out_dir=str(run))
            started = time.perf_counter()
            model, result = train_model(
                kind,
                crops,
                train_rows,
                features=args.features,
                config=config,
                training_data=f"{Path(args.data).name} (>=2 readers), folds != {fold}",
            )
            train_seconds = time.perf_counter() - started
            started = time.perf_counter()
            probabilities = predict_probabilities(model, crops.image_hu[test_rows])
            infer_seconds = time.perf_counter() - started
            np.savez_compressed(
                out / f"pred_{kind}_fold{fold}.npz",
                rows=test_rows,
                source_index=crops.index[test_rows],
                **{k: v.astype(np.float16) for k, v in probabilities.items()},
            )
            timings[f"{kind}_fold{fold}"] = {
                "train_seconds": round(train_seconds, 1),
                "epochs": args.epochs,
                "train_crops": int(len(train_rows)),
                "test_crops": int(len(test_rows)),
                "infer_ms_per_crop": round(1000 * infer_seconds / len(test_rows), 2),
                "parameters": int(sum(p.numel() for p in model.parameters())),
                "final_train_loss": result.history[-1]["train_loss"],
                "features": args.features,
            }
            timings_path.write_text(json.dumps(timings, indent=2))
            print(kind, fold, timings[f"{kind}_fold{fold}"], flush=True)


if __name__ == "__main__":
    main()
