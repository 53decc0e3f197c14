"""Batched MC dropout (deterministic encoder once, decoder samples batched) versus a plain loop of n full
forward passes (how MONAI Label scores), on the same model and volume: time, peak memory, agreement.

Each configuration runs in a fresh subprocess (one thread) so its peak resident memory is its own; inside it the
scoring is repeated and the fastest repeat is kept (the machine is shared). Run from the repository root:

    OMP_NUM_THREADS=1 python bench/al/mc_benchmark.py --out bench/al
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

# (method, max_batch, seed); the second loop run (another seed) measures the MC noise floor between two runs
CONFIGS = [("loop", 34, 0), ("loop", 34, 1), ("batched", 64, 0), ("batched", 20, 0), ("batched", 256, 0)]


def run_one(method: str, max_batch: int, seed: int, samples: int, repeats: int, model_id: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from lungai.al.pipeline import load
    from lungai.al.scoring import score_volume
    from lungai.sample_data import chest_ct

    model = load(model_id=model_id, device="cpu").network
    image = chest_ct().array
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, score = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        score = score_volume(model, image, n_samples=samples, method=method, max_batch=max_batch, seed=seed)
        times.append(time.perf_counter() - started)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(f"/tmp/al_mc_{method}_{max_batch}_{seed}.npy", score.entropy)
    return {
        "method": method,
        "max_batch": max_batch,
        "seed": seed,
        "samples": samples,
        "slices": int(image.shape[0]),
        "seconds_min": min(times),
        "seconds_median": float(np.median(times)),
        "repeats": repeats,
        "peak_rss_increase_mb": round((after - before) / 1024, 1),
        "peak_rss_mb": round(after / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/al")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="al_unet_lungs")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(
            json.dumps(
                run_one(args.child[0], int(args.child[1]), int(args.child[2]), args.samples, args.repeats, args.model)
            )
        )
        return
    import numpy as np

    rows = []
    for method, max_batch, seed in CONFIGS:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                method,
                str(max_batch),
                str(seed),
                "--samples",
                str(args.samples),
                "--repeats",
                str(args.repeats),
                "--model",
                args.model,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    reference = np.load("/tmp/al_mc_loop_34_0.npy")
    loop_time = rows[0]["seconds_min"]
    for row in rows:
        entropy = np.load(f"/tmp/al_mc_{row['method']}_{row['max_batch']}_{row['seed']}.npy")
        row["speedup_vs_loop"] = round(loop_time / row["seconds_min"], 2)
        row["entropy_mean_abs_diff_vs_loop"] = float(np.abs(entropy - reference).mean())
        row["profile_max_abs_diff_vs_loop"] = float(
            np.abs(entropy.mean(axis=(1, 2)) - reference.mean(axis=(1, 2))).max()
        )
        row["seconds_min"] = round(row["seconds_min"], 3)
        row["seconds_median"] = round(row["seconds_median"], 3)
    out_dir = Path(args.out)
    with open(out_dir / "mc_timing.csv", "w") as handle:
        handle.write(",".join(rows[0]) + "\n")
        for row in rows:
            handle.write(",".join(str(v) for v in row.values()) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
