"""Held-out infection Dice of the networks' output (what `lungai covid evaluate` and the registry record) against
the module's output (what `lungai covid segment` and the Slicer module give: the same output within the shared lung
field's anatomical limits, :func:`lungai.covid.snapshot.segment_labelled_slice`), with and without left-right flips.

Regenerate (from the repository root)::

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/covid/module_path.py \\
        --data ../shared/data/covid_infection_medseg --out bench/covid
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lungai.covid.bundle import held_out_names
from lungai.covid.data import load_medseg_folder
from lungai.covid.evaluation import infection_metrics, mean_metrics
from lungai.covid.pipeline import load
from lungai.covid.snapshot import segment_labelled_slice
from lungai.io import write_table_csv
from lungai.metrics import pixel_metrics

COMMAND = (
    "OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/covid/module_path.py "
    "--data ../shared/data/covid_infection_medseg --out bench/covid"
)


def module_rows(cascade, slices) -> list[dict]:
    """Per-slice infection metrics of the module's 2-D path (a slice without lungs scores as an empty answer)."""
    return [
        {"slice": s.name, **pixel_metrics(segment_labelled_slice(s.image, cascade)["Infection"], s.infection)}
        for s in slices
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="covid_infection_medseg folder")
    parser.add_argument("--weights", help="chsnet checkpoint (default: the bundled chsnet-covid)")
    parser.add_argument("--out", required=True, help="folder for module_path.md and module_path.csv")
    arguments = parser.parse_args()
    loaded = load(arguments.weights, device="cpu")
    names = set(held_out_names(loaded.header))
    slices = [s for s in load_medseg_folder(arguments.data) if s.name in names]
    table = []
    for flips in (False, True):
        loaded.network.tta = flips
        network, _ = infection_metrics(loaded.network, slices)
        module = mean_metrics(module_rows(loaded.network, slices))
        outputs = (("networks' output (evaluate, registry)", network), ("module's output (segment)", module))
        for path, metrics in outputs:
            table.append(
                {
                    "output": path,
                    "left-right flips": "yes" if flips else "no",
                    **{k: round(metrics[k], 4) for k in ("dice", "precision", "recall")},
                }
            )
    out = Path(arguments.out)
    write_table_csv(out / "module_path.csv", table, overwrite=True)
    lines = [
        "# CHS-Net: held-out infection Dice of the networks' output and of the module's output",
        "",
        f"Command: `{COMMAND}`",
        "",
        f"Model: {arguments.weights or 'the bundled chsnet-covid'}; the {len(slices)} doctor-labelled slices it held "
        "out. The module keeps an infection component only where it touches the shared lung field and is denser "
        "than the aerated lung (`lungai/covid/anatomy.py`).",
        "",
        "| output | left-right flips | Dice | precision | recall |",
        "|---|---|---|---|---|",
        *(
            f"| {r['output']} | {r['left-right flips']} | {r['dice']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} |"
            for r in table
        ),
        "",
    ]
    (out / "module_path.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
