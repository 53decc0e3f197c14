"""What a CHS-Net stage costs on one CPU thread, per grid and width: the measured reason for the bundled grid.

For each configuration a fresh subprocess builds one RAIU-Net stage with one torch thread and
measures (a) the median of 5 forward passes of one slice under ``torch.no_grad`` after 2 warm-ups
and (b) the median of 3 training steps (forward, BCE + Dice loss, backward, Adam step) on a batch
of 4 slices after one warm-up, divided by 4: seconds per slice-step. A plain U-Net (the ablation's
BU, same widths) at 256 is measured in the same run as the reference, so the ratios survive the
machine's load. ``slice-steps in 45 min`` is what the infection stage of the 60-minute bundled
budget can afford after the lung stage, at the measured speed. Also times the whole bundled
pipeline on the 34-slice chest CT.

Command (from the repository root):
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/covid/cost.py --out bench/covid
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [
    # name, widths (None: CPU widths; "paper": the paper's), size, variant
    ("plain U-Net (BU), our widths (reference)", None, 256, "BU"),
    ("RAIU-Net, paper widths 49-74-110-165-248", "paper", 256, "RAIU-Net"),
    ("RAIU-Net, our widths 16-24-36-54-81", None, 256, "RAIU-Net"),
    ("RAIU-Net, our widths 16-24-36-54-81", None, 192, "RAIU-Net"),
    ("RAIU-Net, our widths 16-24-36-54-81", None, 128, "RAIU-Net"),
]
INFECTION_BUDGET_S = 45 * 60


def measure_one(widths: str | None, size: int, variant: str) -> dict:
    import torch

    from lungai.covid.losses import bce_dice_loss
    from lungai.covid.raiunet import PAPER_WIDTHS, RAIUNet
    from lungai.covid.training import CPU_WIDTHS, VARIANTS
    from lungai.timing import count_parameters, forward_times_ms

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = RAIUNet(1, 1, PAPER_WIDTHS if widths == "paper" else CPU_WIDTHS, **VARIANTS[variant])
    forward = forward_times_ms(model.eval(), torch.rand(1, 1, size, size), repeats=5, warmup=2)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    batch, target = torch.rand(4, 1, size, size), (torch.rand(4, 1, size, size) > 0.7).float()
    steps = []
    for _ in range(4):
        started = time.perf_counter()
        optimizer.zero_grad()
        bce_dice_loss(model(batch), target).backward()
        optimizer.step()
        steps.append(time.perf_counter() - started)
    step = statistics.median(steps[1:]) / 4
    return {
        "parameters": count_parameters(model),
        "forward_ms_per_slice": round(statistics.median(forward), 1),
        "train_s_per_slice_step": round(step, 3),
        "slice_steps_in_45_min": int(INFECTION_BUDGET_S / step),
    }


def pipeline_seconds() -> dict:
    import torch

    from lungai.covid.model import load_cascade
    from lungai.covid.pipeline import segment_volume
    from lungai.sample_data import chest_ct

    torch.set_num_threads(1)
    cascade, _ = load_cascade(None, "cpu")
    ct = chest_ct()
    started = time.perf_counter()
    segment_volume(ct, cascade)
    seconds = time.perf_counter() - started
    return {"slices": ct.shape[0], "seconds": round(seconds, 2), "grid": cascade.size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/covid")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(**json.loads(args.one))))
        return
    load_before = os.getloadavg()[0]
    rows = []
    for name, widths, size, variant in CONFIGS:
        spec = json.dumps({"widths": widths, "size": size, "variant": variant})
        output = subprocess.run([sys.executable, __file__, "--one", spec], check=True, capture_output=True, text=True)
        rows.append({"configuration": name, "grid": size, **json.loads(output.stdout.strip().splitlines()[-1])})
        print(rows[-1], flush=True)
    reference = rows[0]["train_s_per_slice_step"]
    for row in rows:
        row["train_cost_vs_reference"] = round(row["train_s_per_slice_step"] / reference, 1)
    load_after = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "cost.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    try:
        pipeline = pipeline_seconds()
        pipeline_text = (
            f"Whole bundled pipeline on the {pipeline['slices']}-slice chest CT (infection grid {pipeline['grid']}, "
            f"both stages, resampling, side split): {pipeline['seconds']} s."
        )
    except Exception as error:  # noqa: BLE001 - the bundled model may not exist yet
        pipeline_text = f"Whole pipeline not timed: {error}"
    lines = [
        f"| {r['configuration']} | {r['grid']} | {r['parameters']:,} | {r['forward_ms_per_slice']} | "
        f"{r['train_s_per_slice_step']} | {r['train_cost_vs_reference']} | {r['slice_steps_in_45_min']:,} |"
        for r in rows
    ]
    (out / "cost.md").write_text(
        "# CHS-Net cost per grid and width on one CPU thread\n\n"
        "Command: `OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/covid/cost.py --out bench/covid`\n\n"
        f"CPU: {platform.processor() or platform.machine()}, one thread; the machine's 2 cores were shared with "
        f"other jobs (load average {load_before:.1f} at the start, {load_after:.1f} at the end), so absolute times "
        "are upper bounds; the ratio column compares with the plain U-Net measured in the same run.\n\n"
        "| configuration | grid | parameters | forward ms per slice | training s per slice-step | cost vs plain "
        "U-Net | slice-steps in 45 min |\n|---|---|---|---|---|---|---|\n"
        + "\n".join(lines)
        + "\n\n"
        + pipeline_text
        + "\n"
    )


if __name__ == "__main__":
    main()
