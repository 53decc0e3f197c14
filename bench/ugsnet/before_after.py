"""UGS-Net before and after the issue-15 changes, same weights, interleaved in one process, against MONAI.

    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/ugsnet/before_after.py

"Before" is lungai/ugsnet/{blocks,networks}.py of commit ca78dc4, read from git into a temporary folder (not kept in
the package); "after" is the current code with the same (pooled, unscaled) attention, loaded with the same state
dict. Prints the largest output difference and the best of 3 timings (after one warm-up) of forward (inference mode)
and training step (forward, loss, backward, SGD step) for batch 32 of 64 x 64 crops, with their ratios to MONAI's
AttentionUnet of the same widths.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from monai.networks.nets import AttentionUnet
from torch.nn import functional as F

from lungai.ugsnet.losses import UGSNetLoss
from lungai.ugsnet.networks import DEMO_FEATURES, PAPER_FEATURES, UGSNet

sys.path.insert(0, str(Path(__file__).parent))
from cost import synthetic_batch  # noqa: E402

BEFORE = "ca78dc4"


def before_module(folder: Path):
    """The networks module of ``BEFORE``, importable from ``folder`` without registering architectures."""
    show = ["git", "show", f"{BEFORE}:lungai/ugsnet/"]
    blocks = subprocess.run([show[0], show[1], show[2] + "blocks.py"], capture_output=True, text=True, check=True)
    networks = subprocess.run([show[0], show[1], show[2] + "networks.py"], capture_output=True, text=True, check=True)
    (folder / "before_blocks.py").write_text(blocks.stdout)
    source = networks.stdout.replace("from lungai.ugsnet.blocks import", "from before_blocks import")
    source = "\n".join(
        line for line in source.splitlines() if not line.startswith(("@register_architecture", "from lungai.arch"))
    )
    (folder / "before_networks.py").write_text(source)
    sys.path.insert(0, str(folder))
    import before_networks

    return before_networks


def best_times(models: dict, batch: dict, loss_fn: UGSNetLoss) -> dict:
    """{(model, "forward" | "step"): best of 3 seconds after one warm-up}, the models taking turns."""
    x = batch["image"]
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=1e-5, momentum=0.9) for k, m in models.items()}

    def forward(key: str) -> None:
        with torch.inference_mode():
            models[key].eval()(x)

    def step(key: str) -> None:
        model, optimizer = models[key].train(), optimizers[key]
        optimizer.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.binary_cross_entropy_with_logits(out, batch["label1"]) if key == "monai" else loss_fn(out, batch)[0]
        loss.backward()
        optimizer.step()

    best = {}
    for repeat in range(4):
        for key in models:
            for what, run in (("forward", forward), ("step", step)):
                started = time.perf_counter()
                run(key)
                if repeat:
                    seconds = time.perf_counter() - started
                    best[key, what] = min(best.get((key, what), seconds), seconds)
    return best


def main() -> None:
    batch = synthetic_batch(torch.Generator().manual_seed(0))
    x = batch["image"]
    loss_fn = UGSNetLoss()
    print(f"load average {os.getloadavg()}, {torch.get_num_threads()} thread(s)")
    with tempfile.TemporaryDirectory() as folder:
        before = before_module(Path(folder))
        for name, features in (("bundled", DEMO_FEATURES), ("paper", PAPER_FEATURES)):
            torch.manual_seed(0)
            models = {"before": before.UGSNet(1, features, attention_pool=8)}
            models["after"] = UGSNet(1, features, attention_pool=8, attention_scaled=False)
            models["after"].load_state_dict(models["before"].state_dict())
            models["monai"] = AttentionUnet(2, 1, 1, features, (2,) * (len(features) - 1))
            with torch.inference_mode():
                outputs = [models[k].eval()(x)["final"] for k in ("before", "after")]
            print(f"{name}: max |before - after| of X_S logits {(outputs[0] - outputs[1]).abs().max():.2e}")

            best = best_times(models, batch, loss_fn)
            for key in ("before", "after"):
                forward, step = best[key, "forward"], best[key, "step"]
                print(
                    f"{name} {key}: forward {forward:.3f} s ({forward / best['monai', 'forward']:.2f}x MONAI), "
                    f"step {step:.3f} s ({step / best['monai', 'step']:.2f}x MONAI)"
                )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
