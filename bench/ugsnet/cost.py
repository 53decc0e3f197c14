"""Cost of UGS-Net per module against MONAI's AttentionUnet of the same widths, measured in one run (issue 15).

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/ugsnet/cost.py --out bench/ugsnet --repeats 3

writes cost.md and cost.csv. Batch 32 of 64 x 64 crops, one thread, best of ``--repeats`` after one
warm-up. "forward": eval mode under ``torch.inference_mode``; "training step": train mode, forward, loss
(UGS-Net: its Eq. 4 loss on 4 synthetic readers; AttentionUnet: BCE), backward and one SGD step.
Per module: the module alone on the inputs it receives inside the network, forward (inference mode) and
forward + backward (inputs requiring gradients, a fixed random output gradient); the rest of a step (loss,
optimiser, concatenations outside the modules) is the whole minus the sum of the modules. With full attention
(pool 1) a step takes minutes: one timed run without warm-up, and only the attention modules are timed (the other
modules compute the same as with pooling).
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from monai.networks.nets import AttentionUnet
from torch.nn import functional as F

from lungai.ugsnet.losses import UGSNetLoss
from lungai.ugsnet.networks import DEMO_FEATURES, PAPER_FEATURES, UGSNet

BATCH, SIZE = 32, 64
WIDTHS = {"paper": PAPER_FEATURES, "bundled": DEMO_FEATURES}
TARGET = 1.3


def best_seconds(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    times = []
    for index in range(warmup + repeats):
        started = time.perf_counter()
        run()
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return min(times)


def synthetic_batch(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Image, 4 reader masks (3 real), their union and intersection, Label1: the shapes UGS-Net trains on."""
    image = torch.rand(BATCH, 1, SIZE, SIZE, generator=generator)
    masks = (torch.rand(BATCH, 4, SIZE, SIZE, generator=generator) > 0.7).float()
    masks[:, 3] = 0
    n_readers = torch.full((BATCH,), 3)
    return {
        "image": image,
        "masks": masks,
        "n_readers": n_readers,
        "union": masks[:, :3].amax(1, keepdim=True),
        "intersection": masks[:, :3].amin(1, keepdim=True),
        "label1": masks[:, :1],
    }


def whole_model_seconds(
    model: torch.nn.Module, batch: dict, repeats: int, ugsnet: bool, warmup: int = 1
) -> tuple[float, float]:
    """(forward, training step) seconds of the whole network."""
    x = batch["image"]
    model.eval()
    with torch.inference_mode():
        forward = best_seconds(lambda: model(x), repeats, warmup)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9)
    loss_fn = UGSNetLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_fn(out, batch)[0] if ugsnet else F.binary_cross_entropy_with_logits(out, batch["label1"])
        loss.backward()
        optimizer.step()

    return forward, best_seconds(step, repeats, warmup)


def module_seconds(run: Callable[..., object], inputs: tuple, repeats: int) -> tuple[float, float]:
    """(forward, forward + backward) seconds of ``run(*inputs)`` alone."""
    with torch.inference_mode():
        forward = best_seconds(lambda: run(*inputs), repeats, warmup=0)
    leaves = tuple(t.detach().requires_grad_(True) for t in inputs)
    outputs = run(*leaves)
    outputs = [o for o in (outputs if isinstance(outputs, (tuple, list)) else [outputs]) if o.requires_grad]
    grads = [torch.randn_like(o) for o in outputs]

    def forward_backward():
        outs = run(*leaves)
        outs = [o for o in (outs if isinstance(outs, (tuple, list)) else [outs]) if o.requires_grad]
        torch.autograd.backward(outs, grads)

    return forward, best_seconds(forward_backward, repeats, warmup=0)


def ugsnet_modules(model: UGSNet, x: torch.Tensor) -> list[tuple[str, Callable[..., object], tuple]]:
    """(row name, callable, its inputs inside the network) for every part of UGS-Net's forward."""
    model.train()
    with torch.no_grad():
        r = model.backbone(x)
        feats, _ = model.uam(r)
        blocks = model.iucm.blocks
        attended = {z: blocks[z].attention(feats[z]) for z in blocks}
        filtered = {z: blocks[z].filter(attended[z]) for z in blocks}
        parts = []
        for z in ("uni", "lc", "hc"):
            parts += model.iucm.weighting(r, feats[z], filtered[z])[:2]
    rows = [("backbone (Attention U-Net to R)", model.backbone, (x,))]

    def uam_outputs(t: torch.Tensor) -> list[torch.Tensor]:
        branch_features, logits = model.uam(t)
        return [*branch_features.values(), *logits.values()]

    rows.append(("UAM branches and heads", uam_outputs, (r,)))
    rows += [(f"self-attention {z}", blocks[z].attention, (feats[z],)) for z in ("uni", "lc", "hc")]
    rows += [(f"Gabor bank {z}", blocks[z].filter, (attended[z],)) for z in ("uni", "lc")]
    rows.append(("Otsu gate hc", blocks["hc"].filter, (attended["hc"],)))
    rows += [(f"s_z {z}", model.iucm.weighting, (r, feats[z], filtered[z])) for z in ("uni", "lc", "hc")]
    rows.append(("final conv (concat + fusion)", lambda *t: model.fusion(torch.cat(t, 1)), (r, *parts)))
    return rows


def measure(repeats: int, widths: list[str], pools: list[int], report: Callable[[list[dict]], None]) -> list[dict]:
    """Rows of every (widths, model, part); ``report(rows)`` after each model, so a long run shows progress."""
    generator = torch.Generator().manual_seed(0)
    batch = synthetic_batch(generator)
    rows = []
    for width_name in widths:
        features = WIDTHS[width_name]
        torch.manual_seed(0)
        reference = AttentionUnet(2, 1, 1, features, (2,) * (len(features) - 1))
        forward, step = whole_model_seconds(reference, batch, repeats, ugsnet=False)
        ref_row = dict(widths=width_name, model="MONAI AttentionUnet", part="whole", forward_s=forward, step_s=step)
        rows.append(ref_row)
        print(ref_row, flush=True)
        for pool in pools:
            torch.manual_seed(0)
            model = UGSNet(1, features, attention_pool=pool)
            name = f"UGS-Net, attention pool {pool}" + (" (default: full)" if pool == 1 else "")
            # a full-attention step takes minutes: one timed run, and of the modules only the attention (the
            # others are the same computation as with pooling)
            full = pool == 1 and len(pools) > 1
            forward, step = whole_model_seconds(model, batch, 1 if full else repeats, True, 0 if full else 1)
            rows.append(dict(widths=width_name, model=name, part="whole", forward_s=forward, step_s=step))
            print(rows[-1], flush=True)
            for part, run, inputs in ugsnet_modules(model, batch["image"]):
                if full and not part.startswith("self-attention"):
                    continue
                forward, step = module_seconds(run, inputs, 1 if full else repeats)
                rows.append(dict(widths=width_name, model=name, part=part, forward_s=forward, step_s=step))
                print(rows[-1], flush=True)
            report(with_ratios(rows))
    return with_ratios(rows)


def with_ratios(rows: list[dict]) -> list[dict]:
    for row in rows:
        ref = next(r for r in rows if r["widths"] == row["widths"] and r["model"] == "MONAI AttentionUnet")
        row["forward_vs_ref"] = row["forward_s"] / ref["forward_s"]
        row["step_vs_ref"] = row["step_s"] / ref["step_s"]
    return rows


def write_outputs(rows: list[dict], out: Path, command: str, load_before: tuple, load_after: tuple) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fields = ["widths", "model", "part", "forward_s", "step_s", "forward_vs_ref", "step_vs_ref"]
    with open(out / "cost.csv", "w", newline="") as handle:
        handle.write(f"# {command}\n")
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    lines = [
        "# UGS-Net cost per module against MONAI AttentionUnet (issue 15)",
        "",
        f"Command: `{command}`",
        "",
        f"Batch {BATCH} of {SIZE} x {SIZE} crops, {torch.get_num_threads()} thread(s), torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}; machine load average (1, 5, 15 min) "
        f"{', '.join(f'{v:.1f}' for v in load_before)} at the start and {', '.join(f'{v:.1f}' for v in load_after)} "
        "at the end (2 cores shared by several sessions): read the ratios, measured in the same run, not the "
        "seconds. Target: UGS-Net whole forward and training step at most 1.3x the AttentionUnet.",
        "",
    ]
    for width_name in dict.fromkeys(r["widths"] for r in rows):
        features = "-".join(str(f) for f in WIDTHS[width_name])
        lines += [
            f"## {width_name} widths ({features})",
            "",
            "| model | part | forward s | training step s | forward / AttentionUnet | step / AttentionUnet |",
            "|---|---|---|---|---|---|",
        ]
        for row in (r for r in rows if r["widths"] == width_name):
            mark = ""
            if row["part"] == "whole" and row["model"] != "MONAI AttentionUnet":
                met = row["forward_vs_ref"] <= TARGET and row["step_vs_ref"] <= TARGET
                mark = " (target met)" if met else " (target missed)"
            lines.append(
                f"| {row['model']} | {row['part']}{mark} | {row['forward_s']:.3f} | {row['step_s']:.3f} | "
                f"{row['forward_vs_ref']:.2f} | {row['step_vs_ref']:.2f} |"
            )
        lines.append("")
        lines += shares(rows, width_name)
    (out / "cost.md").write_text("\n".join(lines) + "\n")


def shares(rows: list[dict], width_name: str) -> list[str]:
    """Per UGS-Net model: the share of the self-attention in the whole, and the modules' sum against the whole."""
    lines = []
    for model in dict.fromkeys(r["model"] for r in rows if r["widths"] == width_name and r["model"].startswith("UGS")):
        own = [r for r in rows if r["widths"] == width_name and r["model"] == model]
        whole = next(r for r in own if r["part"] == "whole")
        parts = [r for r in own if r["part"] != "whole"]
        attention = [r for r in parts if r["part"].startswith("self-attention")]
        text = (
            f"- {model}: the three self-attention blocks alone take "
            f"{sum(r['forward_s'] for r in attention) / whole['forward_s']:.0%} of the forward time and "
            f"{sum(r['step_s'] for r in attention) / whole['step_s']:.0%} of the training step"
        )
        if len(parts) > len(attention):
            text += (
                f"; all modules alone sum to {sum(r['forward_s'] for r in parts) / whole['forward_s']:.0%} / "
                f"{sum(r['step_s'] for r in parts) / whole['step_s']:.0%} of the whole forward / step"
            )
        lines.append(text + ".")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/ugsnet")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--widths", nargs="+", default=["bundled", "paper"], choices=sorted(WIDTHS))
    parser.add_argument("--pools", nargs="+", type=int, default=[8, 1], help="attention key/value pooling")
    args = parser.parse_args()
    command = " ".join(["OMP_NUM_THREADS=1 PYTHONPATH=. python bench/ugsnet/cost.py", *sys.argv[1:]])
    load_before = os.getloadavg()

    def report(rows: list[dict]) -> None:
        write_outputs(rows, Path(args.out), command, load_before, os.getloadavg())

    measure(args.repeats, args.widths, args.pools, report)


if __name__ == "__main__":
    main()
