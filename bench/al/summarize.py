"""Markdown tables from the committed CSVs of bench/al (results are never edited by hand).

python bench/al/summarize.py bench/al/simulation/simulation.csv > bench/al/simulation/simulation.md
python bench/al/summarize.py bench/al/mc_timing.csv > bench/al/mc_timing.md
"""

import csv
import sys

COMMANDS = {  # written at the top of each table (bench/al/README.md explains them)
    "simulation.csv": "OMP_NUM_THREADS=1 lungai al simulate --pool-size 10 --val-size 1 --test-size 4 --iterations 3 "
    "--steps 300 --samples 20 --loss dice+bce --out bench/al/simulation --overwrite && "
    "python bench/al/summarize.py bench/al/simulation/simulation.csv > bench/al/simulation/simulation.md",
    "mc_timing.csv": "python bench/e2e/make_ct.py --size 512 512 34 --out /tmp/lungai_e2e/ct_512x512x34.nrrd && "
    "python bench/al/mc_benchmark.py --big /tmp/lungai_e2e/ct_512x512x34.nrrd --threads 1 --repeats 3 "
    "--out bench/al && "
    "python bench/al/summarize.py bench/al/mc_timing.csv > bench/al/mc_timing.md",
}


def fmt(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.0f}" if number.is_integer() else f"{number:.3g}" if abs(number) < 1000 else f"{number:.0f}"


def simulation_table(rows):
    out = [
        "| strategy | iter. | annotated slices / lung slices / volumes | Dice mean (p5, p95) | RVE % mean (p5, p95)"
        " | MSD mm mean (p5, p95) | HD mm mean (p5, p95) | query s | train s |",
        "|" + "---|" * 9,
    ]
    for r in rows:
        cells = [
            r["strategy"].upper(),
            r["iteration"],
            f"{r['annotated_slices']} / {r['annotated_foreground_slices']} / {r['annotated_volumes']}",
        ]
        cells += [
            f"{fmt(r[m + '_mean'])} ({fmt(r[m + '_p5'])}, {fmt(r[m + '_p95'])})" for m in ("dice", "rve", "msd", "hd")
        ]
        cells += [fmt(r["query_seconds"]), fmt(r["train_seconds"])]
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(path):
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    if "strategy" in rows[0]:
        lines = simulation_table(rows)
    else:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        lines += ["| " + " | ".join(fmt(v) for v in r.values()) + " |" for r in rows]
    command = COMMANDS.get(path.replace("\\", "/").rsplit("/", 1)[-1], "")
    print("\n".join([f"Command: `{command}`", "", *lines] if command else lines))


if __name__ == "__main__":
    main(sys.argv[1])
