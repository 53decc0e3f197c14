"""Whole-CT cost of every module's command: wall time, peak memory and the per-stage split, on the bundled chest CT
(128 x 128 x 34) and on the same scan resampled to 512 x 512 x 300, with a plain MONAI U-Net on the same network
inputs as the reference for the network stage. Run from the repository root:

    python bench/e2e/make_ct.py --size 512 512 300 --out /tmp/lungai_e2e/ct_512x512x300.nrrd
    OMP_NUM_THREADS=2 python bench/e2e/e2e_benchmark.py --big /tmp/lungai_e2e/ct_512x512x300.nrrd --out bench/e2e

Each command runs in its own process (bench/e2e/probe.py: the stage split; ``os.wait4``: its peak resident memory
and CPU time) with the thread count of ``OMP_NUM_THREADS``. The table splits CPU seconds by stage (with one thread
that is the idle-core time, steady on a shared machine); the CSV also has the wall-clock split. A command that fails
(the modules' options change as branches land) is recorded with its error and the others still run.
Results: ``e2e.csv`` and the markdown table ``e2e.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAGES = ("imports", "load model", "read", "preprocess", "network", "between", "postprocess", "write")
# issue 14's targets on 2 cores for the 512 x 512 x 300 CT (seconds); every command: peak memory under 4 GB
TARGET_SECONDS = {"covid segment": 60, "nlb classify": 30, "al score": 120}
ORDER = ("ugsnet segment", "covid segment", "nlb classify", "al score")
TARGET_MEMORY_MB = 4096
AL_SAMPLES = 20


def commands(ct: str, out: Path, points: Path) -> dict[str, list[str]]:
    """The four commands (keys as in :data:`ORDER`)."""
    common = ["--volume", ct, "--out", str(out), "--overwrite"]
    return {
        "ugsnet segment": ["ugsnet", "segment", *common, "--points", str(points)],
        "covid segment": ["covid", "segment", *common],
        "nlb classify": ["nlb", "classify", *common],
        "al score": ["al", "score", *common, "--samples", str(AL_SAMPLES)],
    }


def lung_point_csv(path: Path) -> Path:
    """One RAS point in the right lung of the bundled CT (the resampled CT covers the same space)."""
    import numpy as np

    from lungai.sample_data import chest_ct, chest_lungs

    labelmap = chest_lungs()[0].array
    k, j, i = np.argwhere(labelmap == 1)[len(np.argwhere(labelmap == 1)) // 2]
    r, a, s, _ = chest_ct().ijk_to_ras() @ np.array([i, j, k, 1.0])
    path.write_text(f"r,a,s\n{r:.2f},{a:.2f},{s:.2f}\n")
    return path


def run_probed(argv: list[str], work: Path) -> dict:
    """One command in a child process: probe's stage split, wall time and peak memory of that child."""
    stages_json = work / "stages.json"
    stages_json.unlink(missing_ok=True)
    command = [sys.executable, str(HERE / "probe.py"), "--json", str(stages_json), "--"]
    command += ["--progress", "none", "--device", "cpu", *argv]
    started = time.perf_counter()
    with open(work / "stderr.txt", "w") as stderr:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    row = {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}
    row["exit_code"] = child.returncode
    if stages_json.exists():
        probe = json.loads(stages_json.read_text())
        row.update(startup_s=wall - probe["command_s"], shapes=probe["network_input_shapes"])
        row["startup_cpu_s"] = row["cpu_s"] - probe["command_cpu_s"]
        row.update({f"{s}_s": probe["stages_s"].get(s, 0.0) for s in STAGES})
        row.update({f"{s}_cpu_s": probe["stages_cpu_s"].get(s, 0.0) for s in STAGES})
        row["network_calls"] = probe["network_calls"]
        row["peak_memory_stage"] = probe.get("peak_memory_stage", "")
    if child.returncode != 0:
        row["error"] = (work / "stderr.txt").read_text().strip().splitlines()[-1:] or ["(no message)"]
        row["error"] = row["error"][0][:200]
    return row


def reference_shapes(module: str, row: dict, slices: int) -> dict[str, int]:
    """Network inputs a plain U-Net would see: the module's own outermost network calls, except for AL, whose
    split sampler has no whole-network call: there, ``AL_SAMPLES`` full passes of every slice (the plain loop)."""
    if module != "al score":
        return row.get("shapes", {})
    from lungai.al.pipeline import load

    size = load(device="cpu").network.input_size
    return {f"1x1x{size}x{size}": AL_SAMPLES * slices}


def monai_unet_seconds(shapes: dict[str, int], max_slices: int = 48) -> tuple[float, float]:
    """Forward (wall, CPU) time of MONAI's UNet (2-D, channels 16-256, 2 residual units) over the given inputs.
    Each input shape is timed on up to ``max_slices`` slices and scaled linearly to its full count (the network
    stage is linear in the slice count)."""
    import torch
    import torch.nn.functional as F
    from monai.networks.nets import UNet

    total = [0.0, 0.0]
    for key, count in shapes.items():
        dims = [int(d) for d in key.split("x")]
        if len(dims) != 4:
            continue
        batch, channels, height, width = dims
        net = UNet(2, channels, 2, (16, 32, 64, 128, 256), (2, 2, 2, 2), num_res_units=2).eval()
        slices = batch * count
        timed = min(slices, max_slices)
        x = torch.rand(min(batch, timed), channels, height, width)
        x = F.pad(x, (0, -width % 16, 0, -height % 16))
        with torch.inference_mode():
            net(x[:1])
            started, cpu_started = time.perf_counter(), time.process_time()
            done = 0
            while done < timed:
                net(x[: min(len(x), timed - done)])
                done += min(len(x), timed - done)
        total[0] += (time.perf_counter() - started) * slices / timed
        total[1] += (time.process_time() - cpu_started) * slices / timed
    return total[0], total[1]


def markdown(rows: list[dict]) -> str:
    """The table: wall and CPU time, peak memory, and the stage split in CPU seconds (module docstring)."""
    head = ["command", "CT (x y z)", "threads", "load", "wall s", "CPU s", "peak MB", "start-up"]
    head += list(STAGES) + ["MONAI U-Net network", "target (512x512x300)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["command"], r["ct"], str(int(r["threads"])), r["load"]]
        if r.get("error"):
            cells.append(f"failed: {r['error']}")
            lines.append("| " + " | ".join(cells + [""] * (len(head) - len(cells))) + " |")
            continue
        cells += [f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}", f"{r['peak_rss_mb']:.0f}", f"{r['startup_cpu_s']:.1f}"]
        cells += [f"{r[f'{s}_cpu_s']:.1f}" for s in STAGES]
        cells += [f"{r['monai_unet_network_cpu_s']:.1f}", r["target"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def target(module: str, ct: str, row: dict) -> str:
    """Verdict for the big CT. Time is judged on the wall time and, because the machine is shared, on the CPU time:
    with one thread CPU seconds are what the command takes on an idle core. With more threads the CPU seconds add up
    the cores' work, so the wall time alone is judged."""
    if not ct.startswith("512x512x300"):
        return ""
    memory = f"memory {'met' if row['peak_rss_mb'] < TARGET_MEMORY_MB else 'MISSED'}"
    if module not in TARGET_SECONDS:
        return memory
    limit = TARGET_SECONDS[module]
    judged = {"wall": row["wall_s"]} | ({"CPU": row["cpu_s"]} if int(row["threads"]) == 1 else {})
    times = ", ".join(f"{name} {'met' if seconds <= limit else 'MISSED'}" for name, seconds in judged.items())
    return f"<= {limit} s: {times}; {memory}"


def _read_rows(path: Path) -> list[dict]:
    """Rows of an earlier e2e.csv, numbers as numbers."""

    def value(text: str):
        try:
            return float(text)
        except ValueError:
            return text

    with open(path, newline="") as handle:
        return [{k: value(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", required=True, help="the 512 x 512 x 300 CT (bench/e2e/make_ct.py)")
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--modules", nargs="+", help="rerun only these (their rows replace those in --out's e2e.csv)")
    args = parser.parse_args()
    import torch

    from lungai.sample_data import chest_ct_path

    threads = torch.get_num_threads()
    work = Path(tempfile.mkdtemp(prefix="lungai_e2e_"))
    points = lung_point_csv(work / "points.csv")
    rows = []
    for ct_path in (str(chest_ct_path()), args.big):
        from lungai.io import read_volume

        shape = read_volume(ct_path).shape
        ct_label = "x".join(str(s) for s in shape[::-1]) + ("" if ct_path == args.big else " (bundled)")
        for module, argv in commands(ct_path, work / "out", points).items():
            if args.modules and module not in args.modules:
                continue
            load_before = os.getloadavg()[0]
            row = run_probed(argv, work)
            row.update(command=module, ct=ct_label, threads=threads)
            row["load"] = f"{load_before:.1f}-{os.getloadavg()[0]:.1f}"
            if not row.get("error"):
                reference = monai_unet_seconds(reference_shapes(module, row, shape[0]))
                row["monai_unet_network_s"], row["monai_unet_network_cpu_s"] = reference
                row["target"] = target(module, ct_label, row)
            print(json.dumps({k: v for k, v in row.items() if k != "shapes"}), flush=True)
            rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.modules and (out / "e2e.csv").exists():  # a partial rerun replaces only its own rows
        done = {(row["command"], row["ct"]) for row in rows}
        kept = [row for row in _read_rows(out / "e2e.csv") if (row["command"], row["ct"]) not in done]
        rows = sorted(kept + rows, key=lambda r: (not r["ct"].endswith("(bundled)"), ORDER.index(r["command"])))
    columns = ["command", "ct", "threads", "load", "exit_code", "error", "wall_s", "cpu_s", "peak_rss_mb", "startup_s"]
    columns += ["startup_cpu_s"] + [f"{s}_s" for s in STAGES] + [f"{s}_cpu_s" for s in STAGES]
    columns += ["network_calls", "monai_unet_network_s", "monai_unet_network_cpu_s", "peak_memory_stage", "target"]
    columns += ["shapes"]
    with open(out / "e2e.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()})
    (out / "e2e.md").write_text(markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
