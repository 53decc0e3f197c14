"""The shared training recipe: augmentation, schedules, early stopping, test-time flips and data splits."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from tiny_lung_task import ARCHITECTURE, ChestSlices, LungTask, build
from torch import nn

from lungai import splits
from lungai.augmentation import NO_AUGMENTATION, AugmentedDataset, AugmentSettings, build_augmentation
from lungai.checkpoint import load_checkpoint
from lungai.errors import LungAIError
from lungai.resampling import resize_slices
from lungai.training import TrainConfig, make_optimizer, make_scheduler, seed_everything, train
from lungai.tta import flip_average

ALWAYS_SPATIAL = AugmentSettings(flip_prob=0.5, affine_prob=1.0).spatial_only()
INTENSITY_ONLY = replace(
    NO_AUGMENTATION, gamma_prob=1.0, intensity_scale_prob=1.0, intensity_shift_prob=1.0, noise_prob=1.0
)


@pytest.fixture(scope="module")
def lung_slices(chest_lungs):
    """Real binary lung masks: 8 axial slices of CTChest4's reference segmentation, 64 x 64."""
    lungs = chest_lungs[0].array[10:26:2] > 0
    return (resize_slices(lungs.astype(np.float32), (64, 64), order=0) > 0.5).astype(np.float32)


class MaskSamples(torch.utils.data.Dataset):
    """Dict samples whose image is the mask itself, a second mask (its complement) and a label to pass through."""

    def __init__(self, masks: np.ndarray) -> None:
        self.masks = torch.from_numpy(masks[:, None])

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> dict:
        mask = self.masks[index]
        return {"image": mask.clone(), "mask": mask, "other": 1 - mask, "label": index}


def test_augmentation_keeps_image_and_masks_aligned(lung_slices):
    data = AugmentedDataset(MaskSamples(lung_slices), mask_keys=("mask", "other"), settings=ALWAYS_SPATIAL, seed=3)
    moved = 0
    for epoch in range(4):
        data.set_epoch(epoch)
        for index in range(len(data)):
            sample = data[index]
            image, mask = sample["image"], sample["mask"]
            assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
            # Bilinear image and nearest mask may disagree only on a thin rim of the lung border.
            assert ((image > 0.5) != (mask > 0.5)).float().mean() < 0.01
            original = lung_slices[index]
            moved += float((mask[0].numpy() != original).mean()) > 0.02
            assert sample["label"] == index  # keys that are not listed pass through
            assert torch.equal(sample["other"], 1 - mask)  # every mask key gets the same transform
    assert moved >= 16  # the affine is always applied: most samples moved visibly


def test_masks_stay_binary_and_untouched_by_intensity(lung_slices):
    full = AugmentedDataset(MaskSamples(lung_slices), settings=AugmentSettings(affine_prob=1.0), seed=0)
    for index in range(len(full)):
        assert set(torch.unique(full[index]["mask"]).tolist()) <= {0.0, 1.0}
    intensity = AugmentedDataset(MaskSamples(lung_slices), settings=INTENSITY_ONLY, seed=0)
    for index in range(len(intensity)):
        sample = intensity[index]
        assert torch.equal(sample["mask"][0], torch.from_numpy(lung_slices[index]))
        assert not torch.equal(sample["image"][0], torch.from_numpy(lung_slices[index]))
    with pytest.raises(Exception, match="mask key"):
        build_augmentation("image", ("image",))


def test_augmentation_is_deterministic_per_seed_and_epoch(lung_slices):
    def draw(seed: int, epoch: int, order) -> dict[int, torch.Tensor]:
        data = AugmentedDataset(MaskSamples(lung_slices), settings=AugmentSettings(affine_prob=1.0), seed=seed)
        data.set_epoch(epoch)
        return {index: data[index]["image"] for index in order}

    forward = draw(0, 1, range(len(lung_slices)))
    backward = draw(0, 1, reversed(range(len(lung_slices))))
    assert all(torch.equal(forward[i], backward[i]) for i in forward)  # independent of the data order
    other_epoch, other_seed = draw(0, 2, forward), draw(1, 1, forward)
    assert sum(not torch.equal(forward[i], other_epoch[i]) for i in forward) >= 6
    assert sum(not torch.equal(forward[i], other_seed[i]) for i in forward) >= 6


class AugmentedChestSlices(AugmentedDataset):
    """The tiny lung task's slices with the full augmentation; records the epochs it was told."""

    def __init__(self, seed: int) -> None:
        super().__init__(ChestSlices(range(6, 26)), settings=AugmentSettings(), seed=seed)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)
        super().set_epoch(epoch)


def _train_tiny(out: str, epochs: int, resume: str | None = None, **overrides):
    config = TrainConfig(epochs=epochs, batch_size=4, lr=1e-2, device="cpu", out_dir=out, resume=resume, **overrides)
    seed_everything(config.seed)
    model, train_set = build(), AugmentedChestSlices(config.seed)
    result = train(
        model,
        LungTask(),
        train_set,
        ChestSlices(range(26, 30)),
        config,
        model_name=ARCHITECTURE,
        model_config={"width": 4},
    )
    return model, result, train_set


def test_resume_equals_uninterrupted_run_with_augmentation_and_sgdr(tmp_path):
    schedule = dict(scheduler="sgdr", sgdr_t0=2, warmup_epochs=1)
    _, first, first_set = _train_tiny(str(tmp_path / "a"), 2, **schedule)
    _, resumed, resumed_set = _train_tiny(str(tmp_path / "b"), 4, resume=str(first.last_checkpoint), **schedule)
    _, straight, straight_set = _train_tiny(str(tmp_path / "c"), 4, **schedule)
    assert first_set.epochs == [0, 1] and resumed_set.epochs == [2, 3] and straight_set.epochs == [0, 1, 2, 3]
    assert [row["lr"] for row in straight.history] == pytest.approx([5e-3, 1e-2, 5e-3, 1e-2])
    assert [row["lr"] for row in resumed.history] == [row["lr"] for row in straight.history]
    a = load_checkpoint(resumed.last_checkpoint).state_dict
    b = load_checkpoint(straight.last_checkpoint).state_dict
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    _, unaugmented, _ = _train_tiny(str(tmp_path / "d"), 1)
    assert unaugmented.history[0]["train_loss"] != straight.history[0]["train_loss"]


def _lr_per_epoch(config: TrainConfig, epochs: int) -> list[float]:
    optimizer = make_optimizer(nn.Linear(2, 1), config)
    scheduler = make_scheduler(optimizer, config)
    rates = []
    for _ in range(epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def test_ugsnet_paper_config_is_sgdr_restarting_every_50_epochs():
    from lungai.ugsnet.training import PAPER_TRAIN

    assert (PAPER_TRAIN.optimizer, PAPER_TRAIN.momentum, PAPER_TRAIN.weight_decay) == ("sgd", 0.9, 1e-4)
    assert (PAPER_TRAIN.epochs, PAPER_TRAIN.batch_size, PAPER_TRAIN.warmup_epochs) == (200, 32, 0)
    rates = _lr_per_epoch(PAPER_TRAIN, PAPER_TRAIN.epochs)
    initial = PAPER_TRAIN.lr
    assert initial == 1e-5
    for restart in (0, 50, 100, 150):
        assert rates[restart] == pytest.approx(initial, rel=1e-9)
        assert rates[restart + 25] == pytest.approx(initial / 2, rel=1e-9)
        assert rates[restart + 49] < initial * 0.01
    expected = [initial * 0.5 * (1 + math.cos(math.pi * (epoch % 50) / 50)) for epoch in range(200)]
    assert rates == pytest.approx(expected, rel=1e-6, abs=1e-15)


def test_warmup_then_cosine_reaches_min_lr():
    config = TrainConfig(epochs=12, lr=1.0, scheduler="cosine", warmup_epochs=3, min_lr=0.1)
    rates = _lr_per_epoch(config, 13)
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a > b for a, b in zip(rates[3:12], rates[4:13]))
    assert rates[12] == pytest.approx(0.1)


class ScriptedDice(LungTask):
    """The tiny lung task whose validation Dice follows a script, one value per epoch."""

    def __init__(self, script: list[float]) -> None:
        self.script = list(script)

    def validation_step(self, model: nn.Module, batch: dict) -> dict[str, float]:
        return {"dice": self.script.pop(0)}


def _train_scripted(out: str, script: list[float], epochs: int, **overrides):
    config = TrainConfig(epochs=epochs, batch_size=8, lr=1e-2, device="cpu", out_dir=out, **overrides)
    seed_everything(config.seed)
    model = build()
    result = train(
        model,
        ScriptedDice(script),
        ChestSlices(range(6, 26)),
        ChestSlices(range(26, 30)),  # 4 slices: one validation batch per epoch
        config,
        model_name=ARCHITECTURE,
        model_config={"width": 4},
    )
    return model, result


def test_early_stopping_after_patience_keeps_the_best_checkpoint(tmp_path):
    script = [0.2, 0.5, 0.4, 0.45, 0.3, 0.9, 0.9]
    model, result = _train_scripted(str(tmp_path / "stop"), script, epochs=7, patience=3, restore_best=True)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5]  # epochs 3, 4, 5 without improvement
    assert (result.stopped_epoch, result.best_epoch, result.best_metric) == (5, 2, 0.5)
    best = load_checkpoint(result.best_checkpoint)
    assert best.header["metrics"]["epoch"] == 2
    _, two_epochs = _train_scripted(str(tmp_path / "two"), script, epochs=2)
    reference = load_checkpoint(two_epochs.last_checkpoint).state_dict
    assert all(torch.equal(best.state_dict[k], reference[k]) for k in reference)  # best.pt holds epoch 2's weights
    assert all(torch.equal(model.state_dict()[k], reference[k]) for k in reference)  # restore_best
    last = load_checkpoint(result.last_checkpoint).state_dict
    assert not all(torch.equal(last[k], reference[k]) for k in reference)
    # Resuming a run that stopped early trains nothing more.
    _, resumed = _train_scripted(
        str(tmp_path / "resumed"), [], epochs=7, patience=3, resume=str(result.last_checkpoint)
    )
    assert len(resumed.history) == 5 and resumed.stopped_epoch == 5
    # Without patience the same script runs to the end.
    _, full = _train_scripted(str(tmp_path / "full"), script, epochs=7)
    assert len(full.history) == 7 and full.stopped_epoch is None and full.best_epoch == 6


def test_keep_last_ships_the_last_epoch_whatever_validation_says(tmp_path):
    script = [0.2, 0.9, 0.4, 0.3]  # validation peaks at epoch 2
    model, result = _train_scripted(str(tmp_path / "last"), script, epochs=4, keep="last", restore_best=True)
    assert (result.best_epoch, result.best_metric) == (4, 0.3)
    best = load_checkpoint(result.best_checkpoint)
    last = load_checkpoint(result.last_checkpoint).state_dict
    assert best.header["metrics"] == {"dice": 0.3, "epoch": 4}
    assert all(torch.equal(best.state_dict[k], last[k]) for k in last)
    assert all(torch.equal(model.state_dict()[k], last[k]) for k in last)  # restore_best restores the last epoch
    _, selected = _train_scripted(str(tmp_path / "best"), script, epochs=4, restore_best=True)
    assert selected.best_epoch == 2
    with pytest.raises(LungAIError, match="cannot keep the last"):
        TrainConfig(keep="last", patience=3)
    with pytest.raises(LungAIError, match="keep must be"):
        TrainConfig(keep="first")


class Identity(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class TwoHeads(nn.Module):
    """Dict of logits; head ``shifted`` is not flip-equivariant (it rolls its input)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"same": x, "negative": -x, "shifted": torch.roll(x, 1, dims=-1)}


def test_flip_average_unflips_outputs():
    image = torch.randn(2, 3, 8, 10)
    assert torch.allclose(flip_average(Identity(), image), torch.sigmoid(image), atol=1e-6)
    heads = flip_average(TwoHeads(), image)
    assert torch.allclose(heads["same"], torch.sigmoid(image), atol=1e-6)
    assert torch.allclose(heads["negative"], torch.sigmoid(-image), atol=1e-6)
    assert not torch.allclose(heads["shifted"], torch.sigmoid(torch.roll(image, 1, dims=-1)), atol=1e-3)
    only_left_right = flip_average(TwoHeads(), image, flips=((), (-1,)))["shifted"]
    expected = (torch.sigmoid(torch.roll(image, 1, -1)) + torch.sigmoid(torch.roll(image, -1, -1))) / 2
    assert torch.allclose(only_left_right, expected, atol=1e-6)


class ClassAndMap(nn.Module):
    """A per-image logit (B,) that depends on the image's left-right orientation, and a map (B, 1, H, W)."""

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"class_logit": x[..., 0].mean(dim=(1, 2)), "seg_logits": x}


def test_flip_average_means_per_image_outputs_without_flipping_them_back():
    image = torch.randn(3, 1, 6, 7)
    out = flip_average(ClassAndMap(), image, flips=((), (-1,)), per_image=("class_logit",))
    first, last = image[..., 0].mean(dim=(1, 2)), image[..., -1].mean(dim=(1, 2))
    assert out["class_logit"].shape == (3,)
    assert torch.allclose(out["class_logit"], (torch.sigmoid(first) + torch.sigmoid(last)) / 2, atol=1e-6)
    assert torch.allclose(out["seg_logits"], torch.sigmoid(image), atol=1e-6)
    with pytest.raises(ValueError, match="B, K, H, W"):
        flip_average(ClassAndMap(), image)


def test_flip_average_of_a_symmetric_model_is_its_plain_output():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 3, padding=1)
    with torch.no_grad():  # a kernel symmetric under both flips makes the model flip-equivariant
        conv.weight.copy_((conv.weight + conv.weight.flip(-1) + conv.weight.flip(-2) + conv.weight.flip(-2, -1)) / 4)
    image = torch.randn(1, 1, 16, 16)
    assert torch.allclose(flip_average(conv, image), torch.sigmoid(conv(image)), atol=1e-6)
    skewed = nn.Conv2d(1, 1, 3, padding=1)
    assert not torch.allclose(flip_average(skewed, image), torch.sigmoid(skewed(image)), atol=1e-3)
    with pytest.raises(ValueError, match="B, C, H, W"):
        flip_average(conv, image[0])


def test_group_folds_keep_each_patient_in_one_fold(shared_data):
    with np.load(shared_data / "lidc_multireader.npz") as data:
        patients = data["patient_id"]
    folds = splits.group_folds(patients, 5, seed=0)
    for patient in np.unique(patients):
        assert len(np.unique(folds[patients == patient])) == 1
    per_fold = [len(np.unique(patients[folds == k])) for k in range(5)]
    assert max(per_fold) - min(per_fold) <= 1
    assert np.array_equal(folds, splits.group_folds(patients, 5, seed=0))
    assert not np.array_equal(folds, splits.group_folds(patients, 5, seed=1))
    train_rows, test_rows = splits.fold_indices(folds, 2)
    assert not set(patients[train_rows]) & set(patients[test_rows])
    assert len(train_rows) + len(test_rows) == len(patients)
    fit, val = splits.validation_split(patients[train_rows], fraction=0.2, seed=0)
    assert not set(patients[train_rows][fit]) & set(patients[train_rows][val])
    n_val = len(np.unique(patients[train_rows][val]))
    assert n_val == round(0.2 * len(np.unique(patients[train_rows])))


def test_stratified_and_item_folds():
    labels = np.repeat([0, 1, 2], [40, 25, 9])
    folds = splits.stratified_folds(labels, 3, seed=0)
    for value, count in zip([0, 1, 2], [40, 25, 9]):
        shares = [int(((folds == k) & (labels == value)).sum()) for k in range(3)]
        assert max(shares) - min(shares) <= 1 and sum(shares) == count
    items = splits.item_folds(11, 2, seed=4)
    test = [splits.fold_indices(items, k)[1] for k in range(2)]
    assert (len(test[0]), len(test[1])) == (5, 6) and sorted(np.concatenate(test).tolist()) == list(range(11))
    with pytest.raises(ValueError, match="at least 3 groups"):
        splits.group_folds(np.array(["a", "b", "a"]), 3)
    with pytest.raises(ValueError, match="at least 2 groups"):
        splits.validation_split(np.array(["a", "a"]))


def test_shared_splits_match_the_module_helpers_they_replace(shared_data):
    """Existing splits do not move when modules switch to lungai.splits (skipped once the helpers are gone)."""
    from lungai.covid import data as covid_data
    from lungai.nlb import data as nlb_data
    from lungai.ugsnet import data as ugsnet_data

    with np.load(shared_data / "lidc_multireader.npz") as data:
        patients = data["patient_id"]
    compared = 0
    if hasattr(ugsnet_data, "patient_folds"):
        assert np.array_equal(splits.group_folds(patients, 5, 0), ugsnet_data.patient_folds(patients, 5, 0))
        compared += 1
    if hasattr(nlb_data, "group_folds"):
        assert np.array_equal(splits.group_folds(patients, 2, 3), nlb_data.group_folds(patients, 2, 3))
        labels = np.random.default_rng(0).integers(0, 3, 120)
        assert np.array_equal(splits.stratified_folds(labels, 2, 5), nlb_data.stratified_folds(labels, 2, 5))
        compared += 1
    if hasattr(covid_data, "two_fold_split"):
        for fold in (0, 1):
            train_rows, test_rows = covid_data.two_fold_split(51, fold, seed=0)
            shared = splits.fold_indices(splits.item_folds(51, 2, seed=0), fold)
            assert (shared[0].tolist(), shared[1].tolist()) == (train_rows, test_rows)
        compared += 1
    if compared == 0:
        pytest.skip("the module helpers have been replaced by lungai.splits")
