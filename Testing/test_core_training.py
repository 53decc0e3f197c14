"""The generic trainer: learning, best/last checkpoints, resume, CSV log, and torchrun DDP on CPU."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import torch
from tiny_lung_task import ARCHITECTURE, run

from lungai.checkpoint import load_checkpoint, load_model

HERE = Path(__file__).resolve().parent


def test_training_learns_and_writes_checkpoints(tmp_path):
    result = run(str(tmp_path), epochs=4)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < losses[0]
    assert result.best_checkpoint.is_file() and result.last_checkpoint.is_file()
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4] and "val_dice" in rows[0]
    model, header = load_model(result.best_checkpoint, expected_model=ARCHITECTURE)
    assert header["metrics"]["dice"] == result.best_metric
    assert header["metrics"]["epoch"] == result.best_epoch


def test_resume_continues_where_it_stopped(tmp_path):
    first = run(str(tmp_path / "a"), epochs=2)
    resumed = run(str(tmp_path / "b"), epochs=3, resume=str(first.last_checkpoint))
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert resumed.history[:2] == first.history
    straight = run(str(tmp_path / "c"), epochs=3)
    # Same seed, same data order from epoch 3 on: resuming gives the uninterrupted run's weights.
    a = load_checkpoint(resumed.last_checkpoint).state_dict
    b = load_checkpoint(straight.last_checkpoint).state_dict
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_torchrun_two_processes_writes_the_same_format(tmp_path):
    single = run(str(tmp_path / "single"), epochs=1)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)]), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "tiny_lung_task.py"),
        "--out",
        str(tmp_path / "ddp"),
        "--epochs",
        "1",
    ]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    ddp = load_checkpoint(tmp_path / "ddp" / "last.pt")
    reference = load_checkpoint(single.last_checkpoint)
    assert set(ddp.header) == set(reference.header)
    assert ddp.header["model_name"] == reference.header["model_name"] == ARCHITECTURE
    assert {k: v.shape for k, v in ddp.state_dict.items()} == {k: v.shape for k, v in reference.state_dict.items()}
    assert not any(k.startswith("module.") for k in ddp.state_dict)  # DDP wrapper is not saved
    load_model(tmp_path / "ddp" / "best.pt", expected_model=ARCHITECTURE)
