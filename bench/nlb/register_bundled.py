"""Bundle one cross-validation run's weights as the NeoplasmNLB demo model and register them.

The bundled model is the fold-0 run of the chosen variant in ``cross_validate.py`` (trained on fold 1, so its
registered metrics are held-out numbers on fold 0). The ``lungai nlb train`` command recorded in the registry
entry runs the same training (same folds, seed, data, budget and functions).

    PYTHONPATH=$PWD python bench/nlb/register_bundled.py --run /tmp/nlb_cv/symmetry_localized_fold0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lungai.checkpoint import load_checkpoint
from lungai.nlb.bundle import register_checkpoint
from lungai.nlb.inference import DEFAULT_MODEL_ID


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a cross_validate.py run folder (last.pt, result.json)")
    parser.add_argument("--id", default=DEFAULT_MODEL_ID)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--max-crops", type=int, default=200)
    args = parser.parse_args()
    run = Path(args.run)
    result = json.loads((run / "result.json").read_text())
    variant = load_checkpoint(run / "last.pt").header["config"]["block_type"]
    command = (f"OMP_NUM_THREADS=1 lungai --device cpu nlb train --iqoth ../shared/data/iqoth_nccd --lidc "
               f"../shared/data/lidc_multireader.npz --out /tmp/nlb_{variant} --block {variant} --epochs {args.epochs} "
               f"--max-crops {args.max_crops} --held-out-fold 0 --register {args.id}")
    metrics = {"held_out_fold": 0, "held_out_snapshots": result["test_snapshots"], "held_out_crops": result["test_crops"],
               **{f"held_out_{k}": round(result[k], 4) for k in ("precision", "recall", "f1", "accuracy", "iou", "dice")}}
    description = (f"U-Net (8-16-32-64-128) with {variant} non-local blocks at 1/4, 1/8, 1/16 (seed 002): neoplasm "
                   "probability per CT slice (128 x 128; HU through the window -600..400) and its segmentation. "
                   "Fold-0 run of bench/nlb/cross_validate.py; metrics on the held-out fold 0 (IQ-OTH/NCCD has no "
                   "patient ids, so they are optimistic for new patients).")
    entry = register_checkpoint(run / "last.pt", args.id, command=command, metrics=metrics, description=description,
                                timings={"train_seconds_shared_cpu": result["train_seconds"]})
    print(json.dumps({"id": entry.id, "file": str(entry.path), "sha256": entry.sha256, "metrics": entry.metrics,
                      "timings": entry.timings}, indent=2))


if __name__ == "__main__":
    main()
