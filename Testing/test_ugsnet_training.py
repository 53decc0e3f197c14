"""A few UGS-Net training steps on real multi-reader crops lower the loss; the checkpoint reloads."""

import numpy as np
import torch
from conftest import shared_data_dir

from lungai.checkpoint import load_model
from lungai.training import TrainConfig
from lungai.ugsnet.data import CropDataset, load_npz, prepare_crops
from lungai.ugsnet.task import make_task
from lungai.ugsnet.training import train_model

TINY = (4, 8, 16, 32, 64)


def test_training_steps_on_real_crops_lower_the_loss(tmp_path):
    torch.set_num_threads(1)
    arrays = load_npz(shared_data_dir() / "lidc_multireader.npz")
    rows = np.nonzero(arrays["n_readers"] >= 3)[0][:16]
    crops = prepare_crops({k: v[rows] for k, v in arrays.items()})
    batch = next(iter(torch.utils.data.DataLoader(CropDataset(crops), batch_size=16)))
    task = make_task("ugsnet")
    config = TrainConfig(epochs=8, batch_size=8, lr=1e-2, device="cpu", out_dir=str(tmp_path))
    torch.manual_seed(0)
    from lungai.ugsnet.task import build_model

    initial_model = build_model("ugsnet", TINY)
    with torch.no_grad():
        before = float(task.training_step(initial_model.train(), batch))
    model, result = train_model("ugsnet", crops, np.arange(len(crops)), features=TINY, config=config)
    reloaded, header = load_model(tmp_path / "last.pt", expected_model="ugsnet")
    assert header["config"]["features"] == list(TINY)
    model.eval(), reloaded.eval()
    with torch.no_grad():
        assert torch.allclose(model(batch["image"])["final"], reloaded(batch["image"])["final"], atol=1e-5)
    with torch.no_grad():
        after = float(task.training_step(model.train(), batch))
    assert after < 0.85 * before
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
