"""The README's active-learning commands run as written, one after the other (with smaller budgets appended)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from lungai.cli import main
from lungai.demo import chest_ct_section

REPO = Path(__file__).resolve().parent.parent
SMALLER = {  # appended options (argparse keeps the last value): the same commands at a test's budget
    "score": ["--samples", "2"],
    "select": [],
    "retrain": ["--steps", "1"],
    "simulate": ["--pool-size", "3", "--test-size", "1", "--iterations", "1", "--steps", "1", "--samples", "2"],
    "train": ["--pool-size", "1", "--test-size", "1", "--steps", "1", "--input-size", "32"],
}


def readme_al_commands() -> list[list[str]]:
    section = (REPO / "README.md").read_text().split("## ActiveLearningSampler", 1)[1]
    commands = []
    for block in re.findall(r"```\n(.*?)```", section, re.S):
        for line in block.splitlines():
            if line.startswith("lungai al "):
                commands.append(shlex.split(line.split("#", 1)[0])[1:])
    return commands


def test_readme_active_learning_chain_runs(tmp_path, monkeypatch):
    commands = readme_al_commands()
    assert [c[1] for c in commands] == ["score", "select", "retrain", "score", "simulate", "train"]
    monkeypatch.chdir(tmp_path)
    chest_ct_section(tmp_path / "demo")  # what `lungai demo --out demo/` writes into demo/chest_ct/
    for command in commands:
        if command[1] == "train":
            command = [a if a != "ID" else "my-al-unet" for a in command]
        assert main(["--progress", "none", *command, *SMALLER[command[1]]]) == 0, command
    ranked = (tmp_path / "next.csv").read_text().splitlines()
    assert ranked[0].startswith("rank,volume,slice") and ",chest_ct," in ranked[1]
    assert (tmp_path / "v2.pt").is_file() and (tmp_path / "scores-v2" / "chest_ct_entropy.nrrd").is_file()
    assert (tmp_path / "sim" / "simulation.csv").is_file() and (tmp_path / "al_unet.pt").is_file()
