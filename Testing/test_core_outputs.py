"""One output guard and staged writes: a command writes all its files or none, and never overwrites unasked;
Ctrl+C exits 130 and SIGTERM 143 with nothing written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lungai.cli import main
from lungai.io import write_volume
from lungai.outputs import OutputExistsError, check_outputs, staged_file, staged_folder

REPO = Path(__file__).resolve().parent.parent


def test_a_failed_staged_folder_leaves_nothing(tmp_path):
    target = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), staged_folder(target) as work:
        (work / "half.csv").write_text("a\n")
        raise RuntimeError("fails half way")
    assert list(tmp_path.iterdir()) == []  # not even the parent folder it created


def test_staged_folder_adds_to_an_existing_folder_and_never_overwrites_unasked(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("user file")
    with staged_folder(tmp_path / "out", expected=["table.csv"]) as work:
        (work / "table.csv").write_text("1\n")
        (work / "sub").mkdir()
        (work / "sub" / "a.png").write_bytes(b"png")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mine.txt", "sub", "table.csv"]
    with pytest.raises(OutputExistsError) as refused, staged_folder(tmp_path / "out", expected=["table.csv"]):
        pytest.fail("the guard must refuse before any work")
    assert (
        str(refused.value)
        == f"{tmp_path / 'out' / 'table.csv'} already exists; choose another output or pass --overwrite."
    )
    with staged_folder(tmp_path / "out", overwrite=True, expected=["table.csv"]) as work:
        (work / "table.csv").write_text("2\n")
    assert (tmp_path / "out" / "table.csv").read_text() == "2\n" and (tmp_path / "out" / "mine.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_staged_file_and_the_one_wording(tmp_path):
    with staged_file(tmp_path / "model.pt") as staged:
        staged.write_bytes(b"weights")
    assert (tmp_path / "model.pt").read_bytes() == b"weights"
    with pytest.raises(OutputExistsError, match="model.pt already exists; choose another output or pass --overwrite"):
        check_outputs([tmp_path / "model.pt", tmp_path / "other.pt"])
    with pytest.raises(ZeroDivisionError), staged_file(tmp_path / "model.pt", overwrite=True) as staged:
        staged.write_bytes(b"half")
        raise ZeroDivisionError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
    assert (tmp_path / "model.pt").read_bytes() == b"weights"


def test_failed_commands_leave_no_output_folder(tmp_path, chest_ct):
    from lungai.ugsnet.sample import crop_volume, load_sample

    nodule, point = crop_volume(load_sample(), 5, slices=3)
    write_volume(nodule, tmp_path / "ct.nrrd")
    (tmp_path / "points.csv").write_text(f"r,a,s\n{point[0]:.1f},{point[1]:.1f},{point[2] + 500:.1f}\n")
    segment = ["ugsnet", "segment", "--volume", str(tmp_path / "ct.nrrd"), "--points", str(tmp_path / "points.csv")]
    assert main(["--progress", "none", *segment, "--out", str(tmp_path / "seg")]) == 2  # the point is outside
    write_volume(chest_ct.like(np.clip(chest_ct.array, 0, 255).astype(np.uint8)), tmp_path / "grey.nrrd")
    score = ["al", "score", "--volume", str(tmp_path / "grey.nrrd"), "--samples", "1"]
    assert main(["--progress", "none", *score, "--out", str(tmp_path / "scores")]) == 2  # not in HU
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nrrd", "grey.nrrd", "points.csv"]


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupted_demo_exits_128_plus_signal_and_writes_nothing(tmp_path, signum, code):
    out = tmp_path / "demo"
    process = subprocess.Popen(
        [sys.executable, "-m", "lungai", "--progress", "lines", "demo", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    for line in process.stdout:  # wait until the first module section is under way
        if line.startswith("LUNGAI_PROGRESS") and float(line.split()[1]) > 0.25:
            break
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == code, stderr
    assert "nothing was written" in stderr.strip().splitlines()[-1]
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a hidden staging folder
