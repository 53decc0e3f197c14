"""``lungai demo`` section of COVID Hierarchical: the bundled CHS-Net on bundled data.

The slicerio chest CT (lungs split by side, infection, burden table) and the two bundled MedSeg
slices (prediction against the doctors' infection outlines).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungai.covid import DESCRIPTOR
from lungai.covid.data import TEST_SLICES, load_medseg_folder
from lungai.covid.pipeline import INFECTION, LEFT_LUNG, RIGHT_LUNG, load, segment_volume, write_outputs
from lungai.covid.snapshot import segment_labelled_slice
from lungai.demo import DemoSection
from lungai.ensemble import ProbabilityMean
from lungai.errors import CheckpointError, LungAIError
from lungai.io import write_table_csv
from lungai.metrics import dice, pixel_metrics
from lungai.plotting import radiological_view, save_overlay_png
from lungai.progress import CancelToken, ProgressCallback, subrange
from lungai.registry import resources_dir
from lungai.sample_data import ATTRIBUTION, chest_ct, chest_lungs

TITLE = "COVID Hierarchical: CHS-Net lungs, infection and burden"


def run_demo(
    out_dir: Path, *, device: str = "auto", progress: ProgressCallback | None = None, cancel: CancelToken | None = None
) -> DemoSection:
    folder = Path(out_dir) / "covid"
    try:
        loaded = load(device=device)
    except (CheckpointError, LungAIError) as error:
        return DemoSection(
            TITLE, f"Not run: the bundled model '{DESCRIPTOR.default_model_id}' is unavailable ({error})."
        )
    cascade = loaded.network
    ct = chest_ct()
    result = segment_volume(ct, cascade, subrange(progress, 0.0, 0.8), cancel)
    files = write_outputs(result, ct, folder, overwrite=True)
    lungs = result.masks[RIGHT_LUNG.name] | result.masks[LEFT_LUNG.name]
    infection = result.masks[INFECTION.name]
    reference = chest_lungs()[0].array > 0
    held_out = slice(TEST_SLICES.start, TEST_SLICES.stop)
    largest = int(np.argmax(lungs.sum(axis=(1, 2))))
    most_infected = int(np.argmax(infection.sum(axis=(1, 2))))
    images = []
    shown = (largest, most_infected) if infection[most_infected].any() else (largest,)
    for index in dict.fromkeys(shown):
        view = lambda array, index=index: radiological_view(array, ct.direction, "axial", index)  # noqa: E731
        images.append(
            save_overlay_png(
                folder / f"chest_ct_axial_{index}.png",
                view(ct.array),
                [(view(result.masks[s.name]), s.color) for s in (RIGHT_LUNG, LEFT_LUNG, INFECTION)],
                title=f"CTChest4 slice {index}: right lung green, left lung blue, infection red",
            )
        )
    samples = load_medseg_folder(resources_dir() / "SampleData" / "covid")
    rows = []
    for sample in samples:
        masks = segment_labelled_slice(sample.image, cascade, subrange(progress, 0.8, 1.0), cancel)
        predicted = masks[INFECTION.name]
        rows.append({"slice": sample.name, **pixel_metrics(predicted, sample.infection)})
        images.append(
            save_overlay_png(
                folder / f"medseg_{sample.name}.png",
                sample.image,
                [
                    (masks[RIGHT_LUNG.name] | masks[LEFT_LUNG.name], RIGHT_LUNG.color),
                    (predicted, INFECTION.color),
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
    both = result.table[2]
    held_out_dice = dice(lungs[held_out], reference[held_out])
    held_out_volume = 100 * (lungs[held_out].sum() / reference[held_out].sum() - 1)
    infected_ml, infected_share = both["Infection volume (mL)"], both["Infected (%)"]
    false_infection = (
        f"The {infected_ml:.1f} mL ({infected_share:.2f} % of the lungs) marked as infection are false positives "
        "(second picture: the slice with the most)."
        if infected_ml > 0
        else "No voxel is marked as infection, as it should be on this normal scan."
    )
    members = len(cascade.infection.members) if isinstance(cascade.infection, ProbabilityMean) else 1
    infection = f"{members} infection RAIU-Nets averaged" if members > 1 else "an infection one"
    stages = f"a lung RAIU-Net, then {infection}"
    text = (
        f"{ATTRIBUTION} CHS-Net ({stages}, {cascade.size} x {cascade.size} grid, lung_input="
        f"{cascade.lung_input}) finds the lungs, splits them by side and looks for COVID-19 infection inside them; "
        "the shared HU lung field keeps every segment inside the body, out of the airways and the infection in "
        "the lungs. This CT shows no COVID-19. On the slices the lung stage never saw (k = "
        f"{TEST_SLICES.start}-{TEST_SLICES.stop - 1}) the lungs reach Dice {held_out_dice:.3f} against the scan's "
        f"reference lung segmentation (volume {held_out_volume:+.1f} %). "
        f"{false_infection} Below, two bundled MedSeg slices through the 2-D path (non-commercial research use; "
        "both among the 25 doctor-labelled slices the bundled model held out from its training; the held-out "
        "figures over all 25 are in the model registry and bench/covid)."
    )
    held_out_infection = loaded.header.get("metrics", {}).get("held_out_infection_dice")
    measured = (
        f"infection Dice {held_out_infection:.2f} on held-out doctor-labelled slices, as its checkpoint records"
        if isinstance(held_out_infection, (int, float))
        else "its checkpoint records no held-out infection Dice"
    )
    reading = (
        "Trust the lung outlines and lung volumes as a rough guide. Do not read the infection burden as a "
        f"measurement: the small research model ({measured}; trained on COVID-19 slices "
        "only) both misses and over-marks infection, as the MedSeg pictures show; any infection it reports needs "
        "a radiologist's look at the slices."
    )
    return DemoSection(TITLE, text, images=images, files=files, tables=[files[1], table], reading=reading)
