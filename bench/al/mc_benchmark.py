"""Batched MC dropout (the folded sampler of lungai.al.sampler: deterministic work once per slice, decoder samples
batched) versus a plain loop of n full forward passes (how MONAI Label scores), same model, same volume: time of
the sampling alone and of the whole ``score_volume`` (preprocess, sampling, maps back on the slice grid,
entropy), in process CPU time (the steady figure on a shared machine: one thread, so CPU time is what an idle core
would take) and wall time, peak memory, agreement with the loop. Speed-ups are against the faster of the plain
loops (whole volume or ``auto`` slices per pass) with the same thread count.

Each configuration runs in a fresh subprocess so its peak resident memory is its own; inside it the scoring is
repeated and the fastest repeat is kept (the machine is shared). Run from the repository root (the 512 x 512 CT
is the bundled one resampled in-plane, bench/e2e/make_ct.py):

    python bench/e2e/make_ct.py --size 512 512 34 --out /tmp/lungai_e2e/ct_512x512x34.nrrd
    python bench/al/mc_benchmark.py --big /tmp/lungai_e2e/ct_512x512x34.nrrd --threads 1 --repeats 2 --out bench/al
    python bench/al/summarize.py bench/al/mc_timing.csv > bench/al/mc_timing.md
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

# (method, max_batch (0: default from the slice size), seed, variant). The second loop run (another seed) measures
# the MC noise floor between two honest runs; "nchw" is the sampler without channels-last tensors.
CONFIGS = [
    ("loop", 34, 0, ""),
    ("loop", 34, 1, ""),
    ("loop", 0, 0, ""),
    ("batched", 0, 0, ""),
    ("batched", 64, 0, ""),
    ("batched", 0, 0, "nchw"),
]


def run_one(ct: str, method: str, max_batch: int, seed: int, variant: str, samples: int, repeats: int) -> dict:
    import numpy as np
    import torch

    from lungai import timing
    from lungai.al.pipeline import load_al_model
    from lungai.al.scoring import score_volume
    from lungai.io import read_volume
    from lungai.sample_data import chest_ct

    if variant == "nchw":
        import lungai.al.sampler

        lungai.al.sampler._CHANNELS_LAST = torch.contiguous_format
    model, _ = load_al_model("al_unet_lungs")
    image = (chest_ct() if ct == "bundled" else read_volume(ct)).array
    network, network_cpu = [], []

    def on_stage(name, start, end, cpu):
        if name == "network":
            network.append(end - start)
            network_cpu.append(cpu)

    timing.STAGE_LISTENERS.append(on_stage)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu_times, score = [], [], None
    for _ in range(repeats):
        started, cpu_started = time.perf_counter(), time.process_time()
        score = score_volume(model, image, n_samples=samples, method=method, max_batch=max_batch or None, seed=seed)
        times.append(time.perf_counter() - started)
        cpu_times.append(time.process_time() - cpu_started)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(_entropy_path(ct, method, max_batch, seed, torch.get_num_threads(), variant), score.entropy)
    return {
        "ct": "bundled" if ct == "bundled" else Path(ct).stem.replace(".nrrd", ""),
        "shape_zyx": "x".join(str(s) for s in image.shape),
        "method": method + (f"-{variant}" if variant else ""),
        "max_batch": max_batch or "auto",
        "seed": seed,
        "threads": torch.get_num_threads(),
        "samples": samples,
        "sampling_cpu_seconds_min": min(network_cpu),
        "score_cpu_seconds_min": min(cpu_times),
        "sampling_seconds_min": min(network),
        "score_seconds_min": min(times),
        "score_seconds_median": float(np.median(times)),
        "repeats": repeats,
        "peak_rss_increase_mb": round((after - before) / 1024, 1),
        "peak_rss_mb": round(after / 1024, 1),
    }


def _entropy_path(ct, method, max_batch, seed, threads, variant) -> str:
    return f"/tmp/al_mc_{Path(ct).stem}_{method}{variant}_{max_batch}_{seed}_{threads}.npy"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="bench/al")
    parser.add_argument("--big", required=True, help="a 512 x 512 CT (bench/e2e/make_ct.py)")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads of each run")
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        ct, method, max_batch, seed, variant = args.child
        row = run_one(ct, method, int(max_batch), int(seed), variant, args.samples, args.repeats)
        print(json.dumps(row))
        return
    import numpy as np

    rows = []
    for ct in ("bundled", args.big):
        for (method, max_batch, seed, variant), threads in itertools.product(CONFIGS, args.threads):
            env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
            command = [sys.executable, __file__, "--big", args.big, "--samples", str(args.samples)]
            command += ["--repeats", str(args.repeats), "--child", ct, method, str(max_batch), str(seed), variant]
            out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
            row = json.loads(out.strip().splitlines()[-1])
            row["load_average_1min"] = round(os.getloadavg()[0], 1)
            row["_entropy"] = _entropy_path(ct, method, max_batch, seed, threads, variant)
            rows.append(row)
            print(row, flush=True)
    for ct in {row["ct"] for row in rows}:
        group = [row for row in rows if row["ct"] == ct]
        reference = group[0]  # loop, whole volume per pass, seed 0, 1 thread
        reference_entropy = np.load(reference["_entropy"])
        for row in group:
            same_threads = [r for r in group if r["method"] == "loop" and r["threads"] == row["threads"]]
            loop = min(same_threads, key=lambda r: r["sampling_cpu_seconds_min"])
            entropy = np.load(row["_entropy"])
            for key in ("sampling_cpu", "score_cpu", "sampling", "score"):
                speedup = loop[f"{key}_seconds_min"] / row[f"{key}_seconds_min"]
                row[f"{key}_speedup_vs_loop"] = round(speedup, 2)
            row["entropy_mean_abs_diff_vs_loop"] = float(np.abs(entropy - reference_entropy).mean())
            row["profile_max_abs_diff_vs_loop"] = float(
                np.abs(entropy.mean(axis=(1, 2)) - reference_entropy.mean(axis=(1, 2))).max()
            )
    for row in rows:
        del row["_entropy"]
        for key in [k for k in row if k.endswith(("_seconds_min", "_seconds_median"))]:
            row[key] = round(row[key], 3)
    with open(Path(args.out) / "mc_timing.csv", "w") as handle:
        handle.write(",".join(rows[0]) + "\n")
        for row in rows:
            handle.write(",".join(str(v) for v in row.values()) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
