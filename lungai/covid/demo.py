"""``lungai demo`` section of COVID Hierarchical: the bundled CHS-Net on bundled data.

The slicerio chest CT (lungs split by side, infection, burden table) and the two bundled MedSeg
slices (prediction against the doctors' infection outlines).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungai.covid import DESCRIPTOR
from lungai.covid.cascade import THRESHOLD
from lungai.covid.data import load_medseg_folder
from lungai.covid.evaluation import infection_metrics
from lungai.covid.pipeline import INFECTION, LEFT_LUNG, RIGHT_LUNG, load, segment_volume, write_outputs
from lungai.demo import DemoSection
from lungai.errors import CheckpointError, LungAIError
from lungai.io import write_table_csv
from lungai.plotting import radiological_view, save_overlay_png
from lungai.progress import CancelToken, ProgressCallback, subrange
from lungai.registry import resources_dir
from lungai.sample_data import ATTRIBUTION, chest_ct

TITLE = "COVID Hierarchical: CHS-Net lungs, infection and burden"


def run_demo(
    out_dir: Path, *, device: str = "auto", progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> DemoSection:
    folder = Path(out_dir) / "covid"
    try:
        cascade = load(device=device).network
    except (CheckpointError, LungAIError) as error:
        return DemoSection(
            TITLE, f"Not run: the bundled model '{DESCRIPTOR.default_model_id}' is unavailable ({error})."
        )
    ct = chest_ct()
    result = segment_volume(ct, cascade, subrange(progress, 0.0, 0.8), cancel)
    files = write_outputs(result, ct, folder, overwrite=True)
    middle = int(
        np.argmax(result.masks[RIGHT_LUNG.name].sum(axis=(1, 2)) + result.masks[LEFT_LUNG.name].sum(axis=(1, 2)))
    )
    view = lambda array: radiological_view(array, ct.direction, "axial", middle)  # noqa: E731
    images = [
        save_overlay_png(
            folder / "chest_ct_axial.png",
            view(ct.array),
            [(view(result.masks[s.name]), s.color) for s in (RIGHT_LUNG, LEFT_LUNG, INFECTION)],
            title=f"CTChest4 slice {middle}: right lung green, left lung blue, infection red",
        )
    ]
    samples = load_medseg_folder(resources_dir() / "SampleData" / "covid")
    metrics, rows = infection_metrics(cascade, samples, subrange(progress, 0.8, 1.0), cancel)
    for sample, outcome in zip(samples, cascade.segment([s.image for s in samples])):
        images.append(
            save_overlay_png(
                folder / f"medseg_{sample.name}.png",
                sample.image,
                [
                    (outcome.lung > THRESHOLD, RIGHT_LUNG.color),
                    (outcome.infection > THRESHOLD, INFECTION.color),
                    (sample.infection, (1.0, 1.0, 0.0)),
                ],
                window=None,
                title=f"MedSeg {sample.name}: predicted lungs green, infection red, doctors' infection yellow",
            )
        )
    table = write_table_csv(
        folder / "medseg_samples.csv",
        [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
        overwrite=True,
    )
    text = (
        f"{ATTRIBUTION} CHS-Net (two RAIU-Nets, {cascade.size} x {cascade.size} grid, lung_input="
        f"{cascade.lung_input}) finds the lungs, splits them by side and looks for COVID-19 infection inside them; "
        "the table gives lung and infection volumes and the infected share of each lung (this CT is not a COVID-19 "
        "case: little or no infection is expected). Below, two bundled MedSeg slices (non-commercial research use; "
        "part of the training data, so they illustrate and do not measure; held-out numbers are in "
        "bench/covid/ablation.md)."
    )
    return DemoSection(TITLE, text, images=images, files=files, tables=[files[1], table])
