"""Batched MC dropout (the folded sampler of lungai.al.sampler: deterministic work once per slice, decoder samples
batched) versus a plain loop of n full forward passes (how MONAI Label scores), same model, same volume: time of
the sampling alone and of the whole ``score_volume`` (preprocess, sampling, maps back on the slice grid,
entropy), in process CPU time (the steady figure on a shared machine: one thread, so CPU time is what an idle core
would take) and wall time, peak memory, agreement with the loop. Speed-ups are against the faster of the plain
loops (whole volume or ``auto`` slices per pass) with the same thread count.

Times: one process per CT runs every configuration in turn, ``--repeats`` rounds, and keeps each one's fastest
round (the shared machine's load then changes alike for all; the seed-1 loop times are the seed-0 loop's).
Memory and entropy maps: each configuration once more in a fresh process, so its peak resident memory is its own.
Run from the repository root (the 512 x 512 CT is the bundled one resampled in-plane, bench/e2e/make_ct.py):

    python bench/e2e/make_ct.py --size 512 512 34 --out /tmp/lungai_e2e/ct_512x512x34.nrrd
    python bench/al/mc_benchmark.py --big /tmp/lungai_e2e/ct_512x512x34.nrrd --threads 1 --repeats 3 --out bench/al
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


def _setup(ct: str):
    """Model, image and a ``timed(method, max_batch, seed, variant)`` scoring call -> (score, timings)."""
    import torch

    import lungai.al.sampler
    from lungai import timing
    from lungai.al.pipeline import load
    from lungai.al.scoring import score_volume
    from lungai.io import read_volume
    from lungai.sample_data import chest_ct

    model = load(model_id="al_unet_lungs", device="cpu").network
    image = (chest_ct() if ct == "bundled" else read_volume(ct)).array
    network = []
    timing.STAGE_LISTENERS.append(lambda name, start, end, cpu: network.append((end - start, cpu)))

    def timed(method, max_batch, seed, variant, samples):
        lungai.al.sampler._CHANNELS_LAST = torch.contiguous_format if variant == "nchw" else torch.channels_last
        network.clear()
        started, cpu_started = time.perf_counter(), time.process_time()
        score = score_volume(model, image, n_samples=samples, method=method, max_batch=max_batch or None, seed=seed)
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        sampling = network[1]  # stages in order: preprocess, network, postprocess
        return score, {"sampling_cpu": sampling[1], "score_cpu": cpu, "sampling": sampling[0], "score": wall}

    return image, timed


def run_timing(ct: str, samples: int, repeats: int) -> dict:
    """Every configuration (seed 0) in turn, ``repeats`` rounds, in one process: the load changes alike for all.
    Returns the fastest round of each, keyed by ``method/max_batch/variant``."""
    _, timed = _setup(ct)
    best: dict[str, dict[str, float]] = {}
    for _ in range(repeats):
        for method, max_batch, seed, variant in CONFIGS:
            if seed != 0:
                continue
            key = f"{method}/{max_batch}/{variant}"
            times = timed(method, max_batch, seed, variant, samples)[1]
            best[key] = {k: min(v, best.get(key, times)[k]) for k, v in times.items()}
    return best


def run_one(ct: str, method: str, max_batch: int, seed: int, variant: str, samples: int) -> dict:
    """One scoring in a fresh process: its peak memory and entropy map (times come from :func:`run_timing`)."""
    import numpy as np
    import torch

    image, timed = _setup(ct)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    score, _ = timed(method, max_batch, seed, variant, samples)
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
    parser.add_argument("--timing-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        ct, method, max_batch, seed, variant = args.child
        print(json.dumps(run_one(ct, method, int(max_batch), int(seed), variant, args.samples)))
        return
    if args.timing_child:
        print(json.dumps(run_timing(args.timing_child, args.samples, args.repeats)))
        return
    import numpy as np

    def child(env, *arguments):
        command = [sys.executable, __file__, "--big", args.big, "--samples", str(args.samples)]
        command += ["--repeats", str(args.repeats), *arguments]
        return json.loads(subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout)

    rows = []
    for ct, threads in itertools.product(("bundled", args.big), args.threads):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        load_before = os.getloadavg()[0]
        times = child(env, "--timing-child", ct)
        load = f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"
        for method, max_batch, seed, variant in CONFIGS:
            row = child(env, "--child", ct, method, str(max_batch), str(seed), variant)
            for key, value in times[f"{method}/{max_batch}/{variant}"].items():
                row[f"{key}_seconds_min"] = value
            row.update(repeats=args.repeats, load_average_1min=load)
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
        for key in [k for k in row if k.endswith("_seconds_min")]:
            row[key] = round(row[key], 3)
    with open(Path(args.out) / "mc_timing.csv", "w") as handle:
        handle.write(",".join(rows[0]) + "\n")
        for row in rows:
            handle.write(",".join(str(v) for v in row.values()) + "\n")
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
