"""``lungai demo`` section of NeoplasmNLB: the bundled chest CT scored slice by slice, and the bundled snapshots."""

from __future__ import annotations

from pathlib import Path

from lungai.demo import DemoSection
from lungai.intensity import IQOTH_NCCD_WINDOW
from lungai.io import write_table_csv
from lungai.nlb.data import bundled_sample_dir
from lungai.nlb.evaluation import evaluate_snapshot_folder
from lungai.nlb.pipeline import DEFAULT_MODEL_ID, OVERLAY_PNG, PLOT_PNG, SEGMENTATION, SLICES_CSV, load, run, write
from lungai.progress import CancelToken, ProgressCallback, subrange
from lungai.sample_data import chest_ct


def run_demo(
    out_dir: Path, *, device: str = "auto", progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> DemoSection:
    folder = Path(out_dir) / "neoplasm_nlb"
    loaded = load(device=device)
    model, header, torch_device = loaded.network, loaded.header, loaded.device
    ct = chest_ct()
    result = run(ct, loaded, progress=subrange(progress, 0.0, 0.7), cancel=cancel)
    scores = result.scores
    paths = dict(zip((SLICES_CSV, SEGMENTATION, PLOT_PNG, OVERLAY_PNG), write(result, folder, overwrite=True)))
    metrics = evaluate_snapshot_folder(
        model,
        bundled_sample_dir(),
        folder / "snapshots",
        device=torch_device,
        progress=subrange(progress, 0.7, 1.0),
        cancel=cancel,
        overwrite=True,
    )
    snapshot_table = write_table_csv(
        folder / "snapshots" / "snapshot_metrics.csv",
        [
            {
                "images": metrics["n"],
                "accuracy": round(metrics["accuracy"], 3),
                "precision": round(metrics["precision"], 3),
                "recall": round(metrics["recall"], 3),
                "f1": round(metrics["f1"], 3),
            }
        ],
        overwrite=True,
    )
    summary = scores.summary()
    text = (
        f"Model {DEFAULT_MODEL_ID} (U-Net with {header['config'].get('block_type')} non-local blocks) scored each "
        f"of the {summary['slices']} axial slices of the bundled chest CT: "
        f"{summary['positive_slices']} slice(s) were reported positive (probability at least "
        f"{summary['threshold']:g} and a finding located in the lung field; "
        f"{int((scores.probabilities >= summary['threshold']).sum())} reached the threshold); the most likely is "
        f"slice {summary['most_likely_slice']} (p = {scores.probabilities[summary['most_likely_slice']]:.2f}). "
        "The bundled IQ-OTH/NCCD "
        f"snapshots (held out from training) are classified in the second table. HU are shown to the network "
        f"through the window {IQOTH_NCCD_WINDOW[0]:g} to {IQOTH_NCCD_WINDOW[1]:g} HU measured on those snapshots."
    )
    reading = (
        "Do not read anything clinical into this section. The per-slice probability is a research output: on this "
        "normal scan every slice should stay below the threshold, so any slice above it is a false positive. "
        "A finding is only reported inside the lung field. The network sees CT through the snapshots' soft-tissue "
        "window (-50 to 265 HU), so a ground-glass nodule is invisible to it: in tests with real nodules inserted "
        "into this scan it flagged 80 % of nodule slices with nodules of 2 cm or more but only 6 % of those with "
        "nodules of 5-10 mm (bench/nlb/ct_check.md). A negative slice does not exclude a nodule. The snapshots come "
        "from the fold held out in training; their table shows each one's probability."
    )
    return DemoSection(
        "NeoplasmNLB: neoplasm probability per slice",
        text,
        images=[paths[PLOT_PNG], paths[OVERLAY_PNG]],
        files=[paths[SEGMENTATION], paths[SLICES_CSV], folder / "snapshots" / "metrics.json"],
        tables=[paths[SLICES_CSV], folder / "snapshots" / "predictions.csv", snapshot_table],
        reading=reading,
    )
