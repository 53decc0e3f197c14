"""UGS-Net part of ``lungai demo``: the bundled LIDC-IDRI crops through the bundled weights.

Writes MCM overlays (red HC, blue LC, green final, beside the readers' own MCM), a per-crop table (Dice, IoU,
NSD against Label1, union, intersection), the HU density of predicted versus real HC and LC, and one crop
segmented through the CT-volume path (``nodules.seg.nrrd`` + table), all from bundled data.
"""

from __future__ import annotations

import csv
from pathlib import Path

from lungai.demo import DemoSection
from lungai.io import write_segmentation, write_table_csv
from lungai.progress import report, subrange
from lungai.segments import pack_masks
from lungai.ugsnet import DESCRIPTOR
from lungai.ugsnet.data import prepare_crops
from lungai.ugsnet.evaluation import evaluate_crops
from lungai.ugsnet.pipeline import load, nodule_segments, nodule_table_rows, segment_nodules
from lungai.ugsnet.sample import crop_volume, load_sample

VOLUME_CROP, VOLUME_SLICES = 5, 3
SUMMARY_COLUMNS = {
    "nodule": "nodule",
    "volume_final_mm3": "final mm3",
    "volume_high_confidence_mm3": "HC mm3",
    "volume_union_mm3": "union mm3",
    "low_confidence_fraction": "LC share",
    "longest_axial_diameter_mm": "diameter mm",
    "mean_hu_high_confidence": "HU HC",
    "mean_hu_low_confidence": "HU LC",
    "slices": "slices",
}


def _summary_row(row: dict) -> dict:
    """The nodule table's row with short column names for the page (no warnings column)."""
    return {short: row[key] for key, short in SUMMARY_COLUMNS.items() if key in row}


def run_demo(out_dir: Path, *, device: str = "auto", progress=None, cancel=None) -> DemoSection:
    folder = Path(out_dir) / "ugsnet"
    folder.mkdir(parents=True, exist_ok=True)
    loaded = load(device=device)
    model, device = loaded.network, loaded.device
    arrays = load_sample()
    crops = prepare_crops(arrays, min_readers=2)
    result = evaluate_crops(
        model, crops, folder, device=device, progress=subrange(progress, 0.0, 0.7), cancel=cancel, overlays=16
    )
    with open(folder / "per_crop.csv") as handle:
        rows = list(csv.DictReader(handle))
    table = write_table_csv(
        folder / "crops.csv",
        [
            {
                "crop": r["source_index"],
                "readers": r["n_readers"],
                **{
                    k: f"{float(r[k]):.3f}"
                    for k in ("dice_label1", "iou_label1", "nsd_label1", "dice_union", "dice_intersection")
                },
            }
            for r in rows
        ],
        overwrite=True,
    )
    volume, point = crop_volume(arrays, VOLUME_CROP, slices=VOLUME_SLICES)
    results = segment_nodules(
        volume, [point], model, device=device, progress=subrange(progress, 0.7, 0.95), cancel=cancel
    )
    masks, specs = nodule_segments(results, volume.shape)
    layers, packed = pack_masks(masks, specs)
    seg = write_segmentation(folder / "nodules.seg.nrrd", volume.like(layers), packed, overwrite=True)
    rows = nodule_table_rows(volume, results)
    write_table_csv(folder / "nodules.csv", rows, overwrite=True)
    nodules = write_table_csv(folder / "nodule_summary.csv", [_summary_row(r) for r in rows], overwrite=True)
    scores, hu = result["scores_of_final"], result["hu"]
    text = (
        f"Bundled weights '{DESCRIPTOR.default_model_id}' on the {len(crops)} bundled LIDC-IDRI crops "
        "(held-out patients): "
        f"Dice {scores['dice_label1']:.3f}, IoU {scores['iou_label1']:.3f}, NSD {scores['nsd_label1']:.3f} against "
        f"Label1. Mean HU: predicted HC {hu['mean_hu_predicted_hc']:.0f} vs real {hu['mean_hu_real_hc']:.0f}, "
        f"predicted LC {hu['mean_hu_predicted_lc']:.0f} vs real {hu['mean_hu_real_lc']:.0f}. "
        "Overlays: red high confidence, blue low confidence, green final (left: UGS-Net, right: radiologists). "
        f"The nodule table shows the CT-volume path the Slicer module runs, on crop {VOLUME_CROP} turned into a "
        f"{VOLUME_SLICES}-slice volume by repeating the 2-D crop (the bundled data holds crops, not whole scans): "
        "'Nodule 1' is that one nodule, its identical mask spans the 3 slices and touches both ends, so its "
        "volumes illustrate the output format and are not a measurement (nodules.csv has the full columns)."
    )
    reading = (
        "Read the red core as the part most radiologists would include and the blue rim as where they would "
        "disagree, i.e. how certain the boundary is; the diameters and volumes depend on that boundary. It says "
        "nothing about malignancy. The scores above hold for held-out LIDC-IDRI crops like these, with the nodule "
        "already located by a human and centred in the crop (a point 2 pixels off the centre scores about 0.79 "
        "instead of 0.87, bench/ugsnet/input_grid.md): place the point on the nodule's centre. They are not a "
        "guarantee on other scanners or for finding nodules."
    )
    report(progress, 1.0, "UGS-Net demo done")
    return DemoSection(
        "UGS-Net: nodules with the Multi-Confidence Mask",
        text,
        images=[folder / "mcm_overlays.png", folder / "hu_density.png"],
        files=[seg, folder / "metrics.json"],
        tables=[table, nodules],
        reading=reading,
    )
