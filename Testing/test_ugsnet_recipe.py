"""UGS-Net's CPU-budget recipe (issue 13): patient folds of any reader count, MONAI augmentation of every target,
the Dice + BCE loss, the MONAI U-Net baseline (real LIDC crops, tiny models)."""

import math

import numpy as np
import pytest
import torch
from conftest import shared_data_dir
from scipy import ndimage

from lungai.ugsnet.data import CropDataset, load_npz, patient_folds, prepare_crops
from lungai.ugsnet.losses import UGSNetLoss, annotation_fusion_loss
from lungai.ugsnet.task import build_model, make_task
from lungai.ugsnet.training import AUGMENTATION, MASK_KEYS, nested_patient_folds, split_by_patient


@pytest.fixture(scope="module")
def arrays():
    return load_npz(shared_data_dir() / "lidc_multireader.npz")


def test_nested_folds_keep_the_two_reader_split_and_never_share_a_patient(arrays):
    folds = nested_patient_folds(arrays["patient_id"], arrays["n_readers"])
    patients = arrays["patient_id"].astype(str)
    for patient in np.unique(patients):
        assert len(np.unique(folds[patients == patient])) == 1
    multi = arrays["n_readers"] >= 2
    # crops with >= 2 readers keep exactly the folds patient_folds gives them alone (the earlier split)
    assert np.array_equal(folds[multi], patient_folds(patients[multi]))
    all_crops, two_reader_crops = prepare_crops(arrays, min_readers=1), prepare_crops(arrays, min_readers=2)
    _, test_all = split_by_patient(all_crops, 0)
    _, test_two = split_by_patient(two_reader_crops, 0)
    assert set(all_crops.index[test_all][all_crops.n_readers[test_all] >= 2]) == set(two_reader_crops.index[test_two])
    assert (all_crops.n_readers[test_all] == 1).sum() > 50  # single-reader patients are held out too


def test_monai_augmentation_moves_every_reader_mask_with_the_image(arrays):
    from lungai.augmentation import AugmentedDataset, AugmentSettings

    rows = np.nonzero(arrays["n_readers"] >= 3)[0][:12]
    crops = prepare_crops({k: v[rows] for k, v in arrays.items()})
    settings = AugmentSettings(**{**AUGMENTATION.__dict__, "affine_prob": 1.0})
    data = AugmentedDataset(CropDataset(crops, augment=True, seed=1), mask_keys=MASK_KEYS, settings=settings, seed=2)
    plain = CropDataset(crops)
    moved = 0
    for index in range(len(data)):
        sample = data[index]
        n = int(sample["n_readers"])
        masks = sample["masks"]
        assert set(torch.unique(masks).tolist()) <= {0.0, 1.0}
        assert torch.equal(sample["label1"], masks[:1])
        assert torch.equal(sample["union"], masks[:n].amax(0, keepdim=True))
        assert torch.equal(sample["intersection"], masks[:n].amin(0, keepdim=True))
        assert not masks[n:].any()
        # the nodule stays on the image's dense tissue: brighter inside the union than in a 3-pixel ring around it
        union = sample["union"][0].numpy() > 0
        ring = ndimage.binary_dilation(union, iterations=3) & ~union
        image = sample["image"][0].numpy()
        assert image[union].mean() > image[ring].mean()
        moved += not torch.equal(sample["label1"], plain[index]["label1"])
    assert moved >= 10


def test_dice_bce_fusion_is_the_sum_of_both_losses():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8)
    masks = (torch.rand(2, 4, 8, 8) > 0.5).float()
    readers = torch.tensor([2, 4])
    both = annotation_fusion_loss(logits, masks, readers, "dicebce")
    parts = annotation_fusion_loss(logits, masks, readers, "bce") + annotation_fusion_loss(
        logits, masks, readers, "dice"
    )
    assert both.item() == pytest.approx(parts.item(), rel=1e-6)
    with pytest.raises(ValueError, match="fusion"):
        UGSNetLoss(fusion="focal")


def test_baseline_losses_and_the_monai_unet(arrays):
    rows = np.nonzero(arrays["n_readers"] >= 2)[0][:4]
    batch = torch.utils.data.default_collate(list(CropDataset(prepare_crops({k: v[rows] for k, v in arrays.items()}))))
    torch.manual_seed(0)
    model = build_model("monai_unet", (4, 8, 16, 32, 64))
    out = model(batch["image"])
    assert set(out) == {"final"} and out["final"].shape == batch["label1"].shape
    logits = out["final"]
    bce = make_task("monai_unet", "bce").training_step(model, batch)
    assert bce.item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label1"]).item(), rel=1e-5
    )
    dice_bce = make_task("monai_unet", "dicebce").training_step(model, batch)
    p = torch.sigmoid(logits).flatten(1)
    t = batch["label1"].flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    per_sample_bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label1"], reduction="none")
    expected = (per_sample_bce.flatten(1).mean(1) + dice).mean()
    assert dice_bce.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not math.isnan(make_task("monai_unet", "dice").validation_step(model, batch)["dice"])


def test_final_target_label1_scores_the_final_output_against_the_crops_own_reader_only():
    torch.manual_seed(1)
    outputs = {name: torch.randn(2, 1, 8, 8) for name in ("final", "union", "intersection", "uni")}
    masks = (torch.rand(2, 4, 8, 8) > 0.5).float()
    readers = torch.tensor([3, 2])
    batch = {"masks": masks, "n_readers": readers, "union": masks[:, :1], "intersection": masks[:, :1]}
    paper, parts = UGSNetLoss(fusion="dicebce")(outputs, batch)
    own, own_parts = UGSNetLoss(fusion="dicebce", final_target="label1")(outputs, batch)
    expected_phi_b = annotation_fusion_loss(outputs["final"], masks[:, :1], torch.ones_like(readers), "dicebce")
    assert own_parts["phi_b"] == pytest.approx(expected_phi_b.item(), rel=1e-6)
    assert own_parts["phi_a"] == pytest.approx(parts["phi_a"]) and own_parts["loss_mcm"] == pytest.approx(
        parts["loss_mcm"]
    )
    assert own.item() == pytest.approx(paper.item() - parts["phi_b"] + own_parts["phi_b"], rel=1e-6)
    with pytest.raises(ValueError, match="final_target"):
        UGSNetLoss(final_target="union")


def test_test_time_flips_average_the_flipped_predictions(arrays):
    from lungai.ugsnet.inference import predict_probabilities

    rows = np.nonzero(arrays["n_readers"] >= 2)[0][:3]
    images = prepare_crops({k: v[rows] for k, v in arrays.items()}).image_hu
    torch.manual_seed(0)
    model = build_model("monai_unet", (4, 8, 16, 32, 64)).eval()
    plain = predict_probabilities(model, images)["final"]
    flipped = predict_probabilities(model, images[:, ::-1, ::-1].copy())["final"][:, ::-1, ::-1]
    lr = predict_probabilities(model, images[:, :, ::-1].copy())["final"][:, :, ::-1]
    ud = predict_probabilities(model, images[:, ::-1].copy())["final"][:, ::-1]
    tta = predict_probabilities(model, images, tta=True)["final"]
    np.testing.assert_allclose(tta, (plain + flipped + lr + ud) / 4, atol=1e-5)
    assert not np.allclose(tta, plain, atol=1e-4)


def test_evaluate_with_test_time_flips_says_so(tmp_path):
    import json

    from lungai.cli import main
    from lungai.ugsnet.sample import sample_path

    args = ["--progress", "none", "ugsnet", "evaluate", "--data", str(sample_path()), "--tta", "--out", str(tmp_path)]
    assert main(args) == 0
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["test_time_flips"] is True and result["crops"] == 16
    assert 0.3 < result["scores_of_final"]["dice_label1"] <= 1.0


def test_evaluate_fold_scores_only_the_patients_that_fold_holds_out(tmp_path, arrays):
    from lungai.cli import main
    from lungai.contract import LoadedModel
    from lungai.ugsnet.pipeline import evaluate
    from lungai.ugsnet.sample import sample_path

    data = shared_data_dir() / "lidc_multireader.npz"
    crops = prepare_crops(arrays, min_readers=2)
    train_rows, test_rows = split_by_patient(crops, 0)
    torch.manual_seed(0)
    tiny = LoadedModel(build_model("unet", (4, 8, 16, 32, 64)).eval(), {"model_name": "ugsnet_unet"}, "cpu", "tiny")
    result = evaluate(data, tmp_path / "fold0", tiny, min_readers=2, fold=0)
    assert result["held_out_fold"] == 0 and result["crops"] == len(test_rows) < len(crops)
    assert not set(crops.patient_id[test_rows]) & set(crops.patient_id[train_rows])
    # a fold that does not exist is a clear input error (exit code 2), not a traceback
    args = ["--progress", "none", "ugsnet", "evaluate", "--data", str(sample_path()), "--fold", "5"]
    assert main([*args, "--out", str(tmp_path / "bad")]) == 2
