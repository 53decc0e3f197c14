"""Exponential moving average of the weights in the shared trainer (``TrainConfig.ema_decay``, ``--ema``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_lung_task import build, train_tiny
from torch import nn
from torch.utils.data import Dataset

from lungai.checkpoint import load_checkpoint
from lungai.contract import TrainOutcome
from lungai.errors import LungAIError
from lungai.training import TrainConfig, train

HERE = Path(__file__).resolve().parent


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_decay_zero_is_exactly_the_plain_run(tmp_path):
    plain_model, plain = train_tiny(str(tmp_path / "plain"), 2)
    zero_model, zero = train_tiny(str(tmp_path / "zero"), 2, ema_decay=0.0)
    assert _equal(load_checkpoint(zero.last_checkpoint).state_dict, load_checkpoint(plain.last_checkpoint).state_dict)
    assert _equal(zero_model.state_dict(), plain_model.state_dict())
    assert [r["val_dice"] for r in zero.history] == [r["val_dice"] for r in plain.history]
    assert "weights" not in load_checkpoint(plain.last_checkpoint).training_state  # off: the format is unchanged


class Drift(nn.Module):
    """``x * weight``; each training forward raises a float buffer by 1 and counts itself in an integer buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(3))
        self.register_buffer("level", torch.zeros(()))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.level += 1.0
            self.calls += 1
        return x * self.weight


class DriftTask:
    """Loss ``-sum(x * weight)`` on x = 1: every SGD step (lr 0.1) adds 0.1 to each weight; validation reports the
    weight the trainer validates."""

    def training_step(self, model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        return -model(batch).sum()

    def validation_step(self, model: nn.Module, batch: torch.Tensor) -> dict[str, float]:
        model(batch)
        return {"dice": float(model.weight[0])}


class Ones(Dataset):
    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.ones(3)


def _hand_average(steps: int, decay: float, value) -> float:
    """The module docstring's formula, in float64: a <- d_n a + (1 - d_n) w_{n+1}, d_n = min(d, (1+n)/(10+n))."""
    average = value(0)
    for n in range(steps):
        d = min(decay, (1 + n) / (10 + n))
        average = d * average + (1 - d) * value(n + 1)
    return average


def test_saved_validated_and_returned_weights_are_the_hand_computed_average(tmp_path):
    decay = 0.5  # the warm-up term is below 0.5 for n < 8 and above it from n = 9: both branches are used
    model = Drift()
    config = TrainConfig(
        epochs=2,
        batch_size=1,
        optimizer="sgd",
        momentum=0.0,
        lr=0.1,
        device="cpu",
        out_dir=str(tmp_path),
        ema_decay=0.5,
    )
    result = train(model, DriftTask(), Ones(), Ones(), config, model_name="test_drift", model_config={})
    weight = _hand_average(10, decay, lambda k: 0.1 * k)
    level = _hand_average(10, decay, float)
    assert [r["val_dice"] for r in result.history] == pytest.approx(
        [_hand_average(5, decay, lambda k: 0.1 * k), weight], abs=1e-6
    )
    payload = torch.load(result.last_checkpoint, weights_only=True)  # loads with weights_only
    last = load_checkpoint(result.last_checkpoint)
    assert torch.allclose(last.state_dict["weight"], torch.full((3,), weight), atol=1e-6)
    assert float(last.state_dict["level"]) == pytest.approx(level, abs=1e-5)
    assert int(last.state_dict["calls"]) == 10  # integer buffers are copied, not averaged
    assert torch.allclose(payload["training_state"]["weights"]["weight"], torch.full((3,), 1.0), atol=1e-6)
    assert last.training_state["ema_updates"] == 10
    assert _equal(load_checkpoint(result.best_checkpoint).state_dict, last.state_dict)  # best: the last epoch
    assert _equal(model.state_dict(), last.state_dict)


def test_resume_continues_the_average_as_the_uninterrupted_run(tmp_path):
    _, first = train_tiny(str(tmp_path / "a"), 2, ema_decay=0.9)
    resumed_model, resumed = train_tiny(str(tmp_path / "b"), 4, resume=str(first.last_checkpoint), ema_decay=0.9)
    straight_model, straight = train_tiny(str(tmp_path / "c"), 4, ema_decay=0.9)
    a, b = load_checkpoint(resumed.last_checkpoint), load_checkpoint(straight.last_checkpoint)
    assert a.training_state["ema_updates"] == b.training_state["ema_updates"] == 20
    assert all(torch.allclose(a.state_dict[k], b.state_dict[k], atol=1e-6) for k in b.state_dict)
    assert all(
        torch.allclose(a.training_state["weights"][k], b.training_state["weights"][k], atol=1e-6) for k in a.state_dict
    )
    assert all(
        torch.allclose(resumed_model.state_dict()[k], straight_model.state_dict()[k], atol=1e-6) for k in b.state_dict
    )
    assert [r["val_dice"] for r in resumed.history] == pytest.approx([r["val_dice"] for r in straight.history])
    # The average differs from the trained weights, so restoring the wrong one would show above.
    assert not _equal(b.state_dict, b.training_state["weights"])


def test_torchrun_two_processes_average_the_unwrapped_network(tmp_path):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)]), "OMP_NUM_THREADS": "1"}
    script = [str(HERE / "tiny_lung_task.py"), "--out", str(tmp_path), "--epochs", "1", "--ema", "0.9"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *script]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-2000:]
    last = load_checkpoint(tmp_path / "last.pt")
    assert last.training_state["ema_updates"] == 3  # 20 slices, batch 4, each rank half: 3 steps per rank
    assert last.state_dict.keys() == last.training_state["weights"].keys() == build().state_dict().keys()
    assert not _equal(last.state_dict, last.training_state["weights"])


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_a_decay_outside_0_1_is_refused(decay):
    with pytest.raises(LungAIError, match="--ema"):
        TrainConfig(ema_decay=decay)


@pytest.mark.parametrize(
    "module, arguments",
    [
        ("covid", ["--data", "d", "--out", "o"]),
        ("nlb", ["--iqoth", "d", "--lidc", "l.npz", "--out", "o"]),
        ("ugsnet", ["--data", "d.npz", "--out", "o"]),
        ("al", ["--out", "o.pt"]),
    ],
)
def test_every_train_command_passes_ema_to_its_training(module, arguments, monkeypatch, tmp_path):
    import importlib

    from lungai.cli import main as lungai_main

    pipeline = importlib.import_module(f"lungai.{module}.pipeline")
    seen = []

    def fake_train(config, **_):
        seen.append(config)
        return TrainOutcome(tmp_path / "x.pt", {"dice_mean": 0.0})

    monkeypatch.setattr(pipeline, "train", fake_train)
    assert lungai_main(["--progress", "none", module, "train", *arguments, "--ema", "0.995"]) == 0
    assert seen[0].ema == 0.995


def test_covid_train_averages_every_stage_and_records_it(tmp_path):
    """A real tiny ``covid train --ema``: both stages it trains (lungs, fine-tuning; no pseudo labels, so no
    pre-training) average their weights, and the checkpoint's recipe says so."""
    from conftest import shared_data_dir

    from lungai.cli import main as lungai_main

    torch.set_num_threads(1)
    tiny = "--size 32 --lung-size 32 --widths 4 8 8 8 8 --lung-widths 4 8 8 8 8 --variant BU --lr 0.01".split()
    tiny += "--lung-epochs 8 --finetune-epochs 1".split()  # the session fixture's lung budget (it finds lungs)
    data = str(shared_data_dir() / "covid_infection_medseg")
    command = ["--progress", "none", "--device", "cpu", "covid", "train", "--data", data, "--limit", "4"]
    assert lungai_main([*command, *tiny, "--ema", "0.5", "--out", str(tmp_path)]) == 0
    assert load_checkpoint(tmp_path / "chsnet.pt").header["extra"]["recipe"]["ema"] == 0.5
    for stage in ("lung", "finetune"):
        state = load_checkpoint(tmp_path / stage / "last.pt").training_state
        assert json.loads(state["config"])["ema_decay"] == 0.5 and state["ema_updates"] > 0
