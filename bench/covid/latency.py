"""CPU latency, memory and parameter counts of the CHS-Net stages (seed 003, Table 3: 4.2 M).

For each configuration a fresh subprocess builds one RAIU-Net stage, runs 2 warm-up and 7 timed
forward passes on a 1 x 1 x S x S slice under ``torch.no_grad`` with one CPU thread, and reports
the median time and the peak resident memory (``ru_maxrss``) above the level after building the
model. Also times the whole bundled pipeline on the 34-slice chest CT. Results depend on the
machine and its load (2 shared cores here).

Command (from the repository root):
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/covid/latency.py --out bench/covid
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [
    # name, widths, size, in_channels
    ("paper widths, one stage (lungs, or infection in mask mode)", [16, 32, 64, 128, 256], 256, 1),
    ("paper widths, infection stage in channel mode", [16, 32, 64, 128, 256], 256, 2),
    ("bundled widths, one stage at 256", [8, 16, 32, 64, 128], 256, 1),
    ("bundled widths, one stage at the bundled grid 96", [8, 16, 32, 64, 128], 96, 1),
]


def measure_one(widths: list[int], size: int, in_channels: int) -> dict:
    import torch

    from lungai.covid.raiunet import RAIUNet
    from lungai.timing import count_parameters, forward_times_ms

    torch.set_num_threads(1)
    model = RAIUNet(in_channels, 1, widths).eval()
    x = torch.rand(1, in_channels, size, size)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = forward_times_ms(model, x, repeats=7, warmup=2)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "parameters": count_parameters(model),
        "median_ms": round(statistics.median(times), 1),
        "peak_extra_mb": round((peak - base) / 1024, 1),
    }


def pipeline_seconds() -> dict:
    import torch

    from lungai.covid.pipeline import load, segment_volume
    from lungai.sample_data import chest_ct

    torch.set_num_threads(1)
    cascade = load(device="cpu").network
    ct = chest_ct()
    started = time.perf_counter()
    segment_volume(ct, cascade)
    seconds = time.perf_counter() - started
    return {
        "slices": ct.shape[0],
        "seconds": round(seconds, 2),
        "ms_per_slice": round(1000 * seconds / ct.shape[0], 1),
        "grid": cascade.size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/covid")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(**json.loads(args.one))))
        return
    from lungai.covid.raiunet import CHSNet
    from lungai.timing import count_parameters

    rows = []
    for name, widths, size, channels in CONFIGS:
        spec = json.dumps({"widths": widths, "size": size, "in_channels": channels})
        output = subprocess.run([sys.executable, __file__, "--one", spec], check=True, capture_output=True, text=True)
        rows.append({"configuration": name, "grid": size, **json.loads(output.stdout.strip().splitlines()[-1])})
        print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "latency.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    chs_paper = count_parameters(
        CHSNet(lung=dict(widths=[16, 32, 64, 128, 256]), infection=dict(widths=[16, 32, 64, 128, 256]))
    )
    chs_bundled = count_parameters(
        CHSNet(lung=dict(widths=[8, 16, 32, 64, 128]), infection=dict(widths=[8, 16, 32, 64, 128]))
    )
    try:
        pipeline = pipeline_seconds()
        pipeline_text = (
            f"Whole bundled pipeline on the {pipeline['slices']}-slice chest CT ({pipeline['grid']} x "
            f"{pipeline['grid']} grid, both stages, resampling, side split): {pipeline['seconds']} s, "
            f"{pipeline['ms_per_slice']} ms per slice."
        )
    except Exception as error:  # noqa: BLE001 - the bundled model may not exist yet
        pipeline_text = f"Whole pipeline not timed: {error}"
    lines = [
        f"| {r['configuration']} | {r['grid']} | {r['parameters']:,} | {r['median_ms']} | {r['peak_extra_mb']} |"
        for r in rows
    ]
    (out / "latency.md").write_text(
        "# CHS-Net latency, memory and parameters\n\n"
        f"CPU: {platform.processor() or platform.machine()}, one thread, batch 1, median of 7 forward passes after "
        "2 warm-ups, `torch.no_grad`; memory = peak resident set above the level after building the model. "
        "The machine's 2 cores were shared with other jobs, so times are upper bounds.\n\n"
        "| configuration | grid | parameters | ms per slice | peak extra MB |\n|---|---|---|---|---|\n"
        + "\n".join(lines)
        + f"\n\nCHS-Net (two RAIU-Nets, mask mode): {chs_paper:,} parameters at the default widths 16-32-64-128-256 "
        f"(paper, Table 3: 4.2 M); {chs_bundled:,} at the bundled widths 8-16-32-64-128. The stage-2 network in "
        "'channel' mode adds 140 parameters (its second input channel).\n\n"
        + pipeline_text
        + "\n\nCommand:\n\n    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/covid/latency.py --out bench/covid\n"
    )


if __name__ == "__main__":
    main()
