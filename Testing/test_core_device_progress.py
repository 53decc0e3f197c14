"""Device choice with fallback, the progress-line protocol and the cancellation token."""

import os
import subprocess
import sys

import pytest
import torch

from lungai.device import autocast, resolve_device
from lungai.errors import LungAIError
from lungai.progress import Cancelled, CancelToken, format_line, parse_line, report, subrange


def test_auto_picks_the_best_available():
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="this machine has CUDA; the error path needs a machine without it"
)
def test_explicit_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(LungAIError, match="no CUDA GPU is available"):
        resolve_device("cuda")


def test_unknown_device_name():
    with pytest.raises(LungAIError, match="Unknown device 'tpu'"):
        resolve_device("tpu")


def test_hidden_gpus_fall_back_to_cpu():
    code = "from lungai.device import resolve_device; print(resolve_device('auto').type)"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out in {"cpu", "mps"}


def test_autocast_is_a_no_op_on_cpu():
    with autocast(torch.device("cpu")):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32


def test_progress_lines_roundtrip_and_subrange():
    assert parse_line(format_line(0.25, "epoch 1/4   loss\t0.5")) == (0.25, "epoch 1/4 loss 0.5")
    assert parse_line("some other output") is None
    seen = []
    scaled = subrange(lambda f, m: seen.append((round(f, 3), m)), 0.5, 1.0)
    report(scaled, 0.5, "half")
    report(scaled, 2.0, "clamped")
    assert seen == [(0.75, "half"), (1.0, "clamped")]
    report(None, 0.5, "no callback is fine")


def test_cancel_token():
    token = CancelToken()
    token.raise_if_cancelled()
    token.cancel()
    assert token.cancelled
    with pytest.raises(Cancelled):
        token.raise_if_cancelled()


def test_cancelled_training_stops(tmp_path):
    import tiny_lung_task

    from lungai.training import TrainConfig, train

    token = CancelToken()
    calls = []

    def progress(fraction, message):
        calls.append(fraction)
        token.cancel()

    with pytest.raises(Cancelled):
        train(
            tiny_lung_task.build(),
            tiny_lung_task.LungTask(),
            tiny_lung_task.ChestSlices(range(6, 26)),
            None,
            TrainConfig(epochs=3, batch_size=4, device="cpu", out_dir=str(tmp_path)),
            model_name=tiny_lung_task.ARCHITECTURE,
            model_config={"width": 4},
            progress=progress,
            cancel=token,
        )
    assert len(calls) == 1
    assert not (tmp_path / "last.pt").exists()
