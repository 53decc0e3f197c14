"""Assemble a ``lungai covid train --members N`` model from N runs trained apart, one per core, or register one run.

Run ``k`` must be ``lungai covid train`` with the same options and ``--seed S + k``, runs 1 to N-1 reusing run 0's
lung stage (``--lung-weights RUN0/lung/last.pt``, copied before run 0 ends). Member ``k`` of ``--members N --seed S``
is exactly that run's infection network (``Testing/test_covid_pipeline.py``), so the assembled model is what the one
command gives. It is measured on the runs' held-out slices as training measures, written as ``chsnet.pt`` and,
with ``--register``, published under the one command that makes it (bench/covid/trials.md, fifth trial).
Given one run (for instance the ``--members 2`` command itself, trained without ``--register``), the script
measures and publishes that run as it is. ``--threads`` is the torch threads each run trained on. ``--no-tta``
records the model without left-right flips at inference, as the same command without ``--tta`` would (the flag
changes no weight; ``Testing/test_covid_pipeline.py``).

    python bench/covid/assemble_members.py --data ../shared/data/covid_infection_medseg \
        --runs RUN0/chsnet.pt [RUN1/chsnet.pt ...] --out OUT [--threads 1] [--no-tta] \
        [--register chsnet-covid --command "lungai ... --members 2"]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from lungai.checkpoint import load_model
from lungai.covid.bundle import held_out_names, measure, save_trained
from lungai.covid.data import load_medseg_folder
from lungai.covid.pipeline import publish_trained
from lungai.covid.training import Recipe, TrainedCHSNet
from lungai.ensemble import ProbabilityMean
from lungai.errors import LungAIError


def split_training_data(text: str) -> dict[str, str]:
    """The ``stage: text`` parts that :func:`save_trained` joined with '; ' (stage names have no spaces)."""
    return dict(part.split(": ", 1) for part in re.split(r"; (?=[a-z_]+: )", text))


def check_members(headers: list[dict], models: list) -> None:
    """Refuse runs that are not members of one ``--members`` command: other options, seeds or lung stage."""
    recipes = [dict(h["extra"]["recipe"]) for h in headers]
    seeds = [r.pop("seed") for r in recipes]
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise LungAIError(f"The runs' seeds must be consecutive from the first run's, got {seeds}.")
    if any(r != recipes[0] for r in recipes[1:]):
        raise LungAIError("The runs were trained with different options; give runs of one command line.")
    if any(h["extra"]["held_out"] != headers[0]["extra"]["held_out"] for h in headers[1:]):
        raise LungAIError("The runs held out different slices.")
    lung = models[0].lung.state_dict()
    if any(not all(torch.equal(v, m.lung.state_dict()[k]) for k, v in lung.items()) for m in models[1:]):
        raise LungAIError("Runs 1 to N-1 must reuse run 0's lung stage (--lung-weights RUN0/lung/last.pt).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the doctor-labelled folder the runs were trained on")
    parser.add_argument("--runs", nargs="+", required=True, help="chsnet.pt of each run, seed order")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--register", help="publish under this model id")
    parser.add_argument("--command", default="", help="the one lungai command that trains this model")
    parser.add_argument("--threads", type=int, default=1, help="torch threads each run trained on")
    parser.add_argument("--no-tta", action="store_true", help="no left-right flips at inference")
    args = parser.parse_args(argv)
    if (args.out / "chsnet.pt").exists():
        parser.error(f"{args.out / 'chsnet.pt'} exists; give a new --out folder")

    loaded = [load_model(path, "cpu", expected_model="chsnet") for path in args.runs]
    models, headers = [m for m, _ in loaded], [h for _, h in loaded]
    check_members(headers, models)
    first = headers[0]
    members = len(models) if len(models) > 1 else first["extra"]["recipe"]["members"]
    recipe = Recipe(**{**first["extra"]["recipe"], "members": members, **({"tta": False} if args.no_tta else {})})
    fold = int(re.search(r"fold (\d) held out", first["extra"]["held_out"]["split"]).group(1))
    by_name = {s.name: s for s in load_medseg_folder(args.data)}
    missing = [name for name in held_out_names(first) if name not in by_name]
    if missing:
        raise LungAIError(f"{args.data} lacks the runs' held-out slices {missing}; give the folder they trained on.")
    held_out = [by_name[name] for name in held_out_names(first)]

    per_run = [h["extra"]["train_seconds"] for h in headers]
    seconds = dict(per_run[0])
    for run in per_run[1:]:
        for phase, value in run.items():
            if phase != "lung":
                seconds[phase] = seconds.get(phase, 0.0) + value
    data = split_training_data(first["training_data"])
    infection = models[0].infection
    if len(models) > 1:
        data["infection_members"] = f"{len(models)} networks, seeds {recipe.seed}-{recipe.seed + len(models) - 1}"
        infection = ProbabilityMean([m.infection for m in models]).eval()
    config = first["config"]
    infection_config = dict(config["infection"], in_channels=2 if recipe.mode == "channel" else 1)
    trained = TrainedCHSNet(recipe, models[0].lung, config["lung"], infection, infection_config, data, seconds)

    metrics = measure(trained, held_out)
    doctor_source = first["extra"]["held_out"]["data"]
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = save_trained(args.out / "chsnet.pt", trained, held_out, doctor_source, metrics, fold)
    print(json.dumps({"metrics": metrics, "seconds": seconds}, indent=1))
    if args.register:
        entry = publish_trained(
            checkpoint,
            trained,
            metrics,
            model_id=args.register,
            command=args.command,
            held_out=len(held_out),
            doctor_source=doctor_source,
            held_out_fold=fold,
            seconds=sum(seconds.values()),
            threads=args.threads,
        )
        print(f"registered {entry.id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
