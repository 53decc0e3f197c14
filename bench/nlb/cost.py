"""Parameters and CPU latency of the six block variants (the paper's cost claims), one thread.

Regenerate (from the repository root):
    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/nlb/cost.py --out bench/nlb
Latency: the fastest of --repeats forward passes (timeit's rule on a shared machine, where slower repeats
measure other people's jobs) of one 192 x 192 slice (and of a batch of 16), after two warm-up
passes, torch.no_grad, eval mode. The machine is shared, so the load average is recorded with the numbers.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
from pathlib import Path

import torch

from lungai.nlb.blocks import BLOCK_TYPES
from lungai.nlb.framing import INPUT_SIZE
from lungai.nlb.networks import build_nlb_unet
from lungai.timing import forward_times_ms


def best_ms(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    return min(forward_times_ms(model, x, repeats, warmup=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--size", type=int, default=INPUT_SIZE)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for variant in BLOCK_TYPES:
        model = build_nlb_unet(block_type=variant).eval()
        block_params = sum(p.numel() for b in model.blocks for p in b.parameters())
        rows.append(
            {
                "variant": variant,
                "parameters": sum(p.numel() for p in model.parameters()),
                "block_parameters": block_params,
                "ms_per_slice": round(best_ms(model, torch.rand(1, 1, args.size, args.size), args.repeats), 2),
                "ms_per_batch16": round(
                    best_ms(model, torch.rand(16, 1, args.size, args.size), max(5, args.repeats // 4)), 1
                ),
            }
        )
        print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "cost.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    load = os.getloadavg()
    lines = [
        "# NeoplasmNLB: parameters and CPU latency per block variant",
        "",
        "Command: `OMP_NUM_THREADS=1 PYTHONPATH=$PWD " + " ".join(["python", "bench/nlb/cost.py"] + sys.argv[1:]) + "`",
        "",
        f"NLBUNet widths 8-16-32-64-128, blocks at 1/4, 1/8, 1/16, grid 4 x 4, input {args.size} x {args.size}; "
        f"one thread on {platform.processor() or platform.machine()}, torch {torch.__version__}; load average "
        f"during the run {load[0]:.1f} (shared machine: compare variants with each other, not with other "
        f"machines).",
        "",
        "| block | parameters | of which in blocks | ms per slice (best) | ms per batch of 16 (best) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['variant']} | {r['parameters']:,} | {r['block_parameters']:,} | {r['ms_per_slice']} | "
        f"{r['ms_per_batch16']} |"
        for r in rows
    ]
    lines += [
        "",
        "The localized and symmetry modifications add no parameters: they reweight the attention of the basic "
        "block. Plain self-attention has the same projections but attends between all pixels instead of "
        "4 x 4 = 16 grid tokens.",
        "",
    ]
    (out / "cost.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
