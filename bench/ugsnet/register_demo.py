"""Register the fold-0 UGS-Net of the 10-epoch comparison run (``run_comparison.py``), evaluated on held-out fold 0.

Superseded for the bundled weights: ``ugsnet-lidc-w8`` now comes from ``bench/ugsnet/recipe_runs.sh`` (issue 13
recipe, see its registry entry's command); running this script would put the earlier 10-epoch model back.

    python bench/ugsnet/register_demo.py --data ../shared/data/lidc_multireader.npz --runs bench/ugsnet/runs

The checkpoint ``runs/ugsnet_fold0/last.pt`` is what ``run_comparison.py`` trained (widths 8-16-32-64-128,
10 epochs, Adam 1e-3 cosine, batch 16, seed 0, patients of folds 1-4); the same model is trained by
``lungai ugsnet train --data ../shared/data/lidc_multireader.npz --fold 0 --epochs 10 --out OUT --register
ugsnet-lidc-w8``. Metrics are on the 296 held-out crops (>= 2 readers) of fold 0.
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from lungai.checkpoint import load_model
from lungai.timing import count_parameters, forward_times_ms
from lungai.ugsnet import DESCRIPTOR
from lungai.ugsnet.data import load_npz, prepare_crops
from lungai.ugsnet.evaluation import evaluate_crops
from lungai.ugsnet.pipeline import publish_weights
from lungai.ugsnet.training import BUDGET_TRAIN, split_by_patient

COMMAND = (
    "OMP_NUM_THREADS=1 python bench/ugsnet/run_comparison.py --data ../shared/data/lidc_multireader.npz "
    "--folds 0 1 --epochs 10 --out bench/ugsnet/runs && LUNGAI_USER_MODELS=Resources/Models "
    "python bench/ugsnet/register_demo.py --data ../shared/data/lidc_multireader.npz --runs bench/ugsnet/runs  "
    "(equivalently: LUNGAI_USER_MODELS=Resources/Models lungai ugsnet train "
    "--data ../shared/data/lidc_multireader.npz --fold 0 --epochs 10 --out OUT --register ugsnet-lidc-w8)"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--runs", default="bench/ugsnet/runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    checkpoint = Path(args.runs) / "ugsnet_fold0" / "last.pt"
    model, header = load_model(checkpoint, expected_model="ugsnet")
    crops = prepare_crops(load_npz(args.data))
    _, test_rows = split_by_patient(crops, 0)
    with tempfile.TemporaryDirectory() as tmp:
        test = evaluate_crops(model, crops.subset(test_rows), Path(tmp))
    timings = json.loads((Path(args.runs) / "timings.json").read_text()).get("ugsnet_fold0", {})
    x = torch.zeros(1, 1, 64, 64)
    milliseconds = statistics.mean(forward_times_ms(model, x, repeats=20, warmup=1))
    entry = publish_weights(  # into the bundled registry when run with LUNGAI_USER_MODELS=Resources/Models
        DESCRIPTOR.default_model_id,
        checkpoint,
        "ugsnet",
        test,
        BUDGET_TRAIN.epochs,
        command=COMMAND,
        timings={
            "train_seconds_2_cpu_cores_shared": timings.get("train_seconds"),
            "cpu_ms_per_64x64_crop_1_thread": round(milliseconds, 1),
            "parameters": count_parameters(model),
        },
    )
    print(json.dumps(entry.metrics, indent=2), entry.timings)


if __name__ == "__main__":
    main()
