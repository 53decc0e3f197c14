"""``lungai nlb train | evaluate | classify`` on real samples with tiny models; the network heads and registry."""

import json

import numpy as np
import pytest
import torch
from conftest import shared_data_dir

from lungai.architectures import build_architecture
from lungai.checkpoint import load_model, save_checkpoint
from lungai.cli import main
from lungai.io import read_segmentation, read_table_csv, write_volume
from lungai.nlb.blocks import BLOCK_TYPES
from lungai.nlb.data import (
    WholeSliceDataset,
    bundled_sample_dir,
    frame_snapshot,
    list_snapshots,
    load_nodules,
    snapshot_unit,
)
from lungai.nlb.evaluation import SEG_THRESHOLD_GRID, calibrate_seg_threshold, predict, seg_threshold_of
from lungai.nlb.networks import SEG_PRIOR
from lungai.nlb.regions import findings_region
from lungai.nlb.training import NLBTask
from lungai.volume import Volume

TINY = {"block_type": "localized", "widths": [4, 8, 8], "attention_levels": [1, 2], "grid": 2}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """An untrained tiny model whose segmentation head marks every pixel (bias +4 instead of the 1 % prior), so that
    what the pipeline reports is decided by its restriction to the lungs and the body."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("nlb_cli") / "tiny.pt"
    model = build_architecture("nlb_unet", TINY)
    torch.nn.init.constant_(model.seg_head.bias, 4.0)
    return save_checkpoint(path, model, model_name="nlb_unet", config=TINY)


@pytest.mark.parametrize("block_type", BLOCK_TYPES)
def test_registered_architecture_has_both_heads_for_every_block(block_type):
    model = build_architecture("nlb_unet", {**TINY, "block_type": block_type})
    out = model(torch.rand(2, 1, 40, 36))  # not a multiple of 4: padded inside, cropped back
    assert out["class_logit"].shape == (2,) and out["seg_logits"].shape == (2, 1, 40, 36)


def test_evaluate_writes_metrics_for_any_folder_in_the_iqoth_layout(tiny_weights, tmp_path):
    out = tmp_path / "eval"
    assert (
        main(
            [
                "--progress",
                "none",
                "nlb",
                "evaluate",
                "--data",
                str(bundled_sample_dir()),
                "--weights",
                str(tiny_weights),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"precision", "recall", "f1", "accuracy", "confusion_matrix"} <= set(metrics)
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.sum() == 5 and matrix[1].sum() == 3  # 2 normal, 1 benign + 2 malignant = neoplasm
    rows = read_table_csv(out / "predictions.csv")
    assert len(rows) == 5 and {r["category"] for r in rows} == {"normal", "benign", "malignant"}
    predicted = np.array([int(r["decision"]) for r in rows])
    truth = np.array([int(r["label"]) for r in rows])
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == truth))
    # never overwrites, and an empty folder is refused with a clear message (exit 2)
    assert (
        main(
            [
                "--progress",
                "none",
                "nlb",
                "evaluate",
                "--data",
                str(bundled_sample_dir()),
                "--weights",
                str(tiny_weights),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert (
        main(
            [
                "--progress",
                "none",
                "nlb",
                "evaluate",
                "--data",
                str(tmp_path),
                "--weights",
                str(tiny_weights),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )


def test_evaluate_with_test_time_flips_scores_the_mean_of_each_image_and_its_mirror(tiny_weights, tmp_path):
    model, _ = load_model(tiny_weights, expected_model="nlb_unet")
    images = torch.rand(3, 1, 40, 36)
    plain, plain_maps = predict(model, images)
    mirrored, mirrored_maps = predict(model, images.flip(-1))
    averaged, averaged_maps = predict(model, images, tta=True)
    assert np.allclose(averaged, (plain + mirrored) / 2, atol=1e-6)
    assert np.allclose(averaged_maps, (plain_maps + mirrored_maps[..., ::-1]) / 2, atol=1e-6)
    out = tmp_path / "eval_tta"
    command = ["--progress", "none", "nlb", "evaluate", "--data", str(bundled_sample_dir()), "--weights"]
    assert main([*command, str(tiny_weights), "--out", str(out), "--tta"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_time_flips"] is True and np.array(metrics["confusion_matrix"]).sum() == 5


def test_classify_a_ct_volume_and_a_single_image(tiny_weights, tmp_path, chest_ct):
    ct_path = write_volume(chest_ct, tmp_path / "ct.nrrd")
    out = tmp_path / "ct_out"
    assert (
        main(
            [
                "--progress",
                "none",
                "nlb",
                "classify",
                "--volume",
                str(ct_path),
                "--weights",
                str(tiny_weights),
                "--out",
                str(out),
                "--threshold",
                "0",
            ]
        )
        == 0
    )
    rows = read_table_csv(out / "slices.csv")
    region = findings_region(chest_ct.array, chest_ct.spacing, chest_ct.direction)
    has_lung = region.lungs.any(axis=(1, 2))
    assert 0 < has_lung.sum() < len(has_lung)  # CTChest4 reaches below the lungs
    labelmap, specs = read_segmentation(out / "neoplasm.seg.nrrd")
    assert labelmap.shape == chest_ct.shape and specs[0].name == "Neoplasm"
    assert not ((labelmap.array > 0) & ~region.lungs).any()
    # threshold 0: a slice is positive exactly when its segmentation found something inside the lungs
    decided = np.array([r["decision"] == "1" for r in rows])
    assert len(rows) == chest_ct.shape[0] and decided.any() and not (decided & ~has_lung).any()
    assert np.array_equal(decided, (labelmap.array > 0).any(axis=(1, 2)))
    assert np.allclose(labelmap.spacing, chest_ct.spacing) and np.allclose(labelmap.origin, chest_ct.origin)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["slices"] == 34 and summary["intensity"] == "HU" and summary["block_type"] == "localized"
    assert (out / "probability.png").stat().st_size > 0 and (out / "most_likely_slice.png").stat().st_size > 0

    image = next(s.path for s in list_snapshots(bundled_sample_dir()) if s.category == "malignant")
    assert (
        main(
            [
                "--progress",
                "none",
                "nlb",
                "classify",
                "--volume",
                str(image),
                "--weights",
                str(tiny_weights),
                "--out",
                str(tmp_path / "img_out"),
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "img_out" / "summary.json").read_text())
    assert summary["slices"] == 1 and summary["intensity"] == "8-bit"


def test_classify_refuses_bad_input_clearly(tiny_weights, tmp_path, capsys):
    raw = write_volume(Volume(np.full((3, 32, 32), 2000, dtype=np.int16)), tmp_path / "raw.nrrd")
    assert (
        main(
            [
                "--progress",
                "none",
                "nlb",
                "classify",
                "--volume",
                str(raw),
                "--weights",
                str(tiny_weights),
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "Hounsfield" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_segmentation_threshold_calibration_picks_the_best_dice():
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[:, 2:5, 2:5] = True
    maps = np.where(masks, 0.4, 0.1)  # well ranked but under-confident, as after a short training
    maps[0, 0, 0] = 0.3  # one background pixel: thresholds up to 0.3 take it in
    assert calibrate_seg_threshold(maps, masks) == 0.35
    assert seg_threshold_of({"extra": {"seg_threshold": 0.35}}) == 0.35 and seg_threshold_of({}) == 0.5


def test_training_task_learns_on_real_samples_and_trains_both_heads():
    data = shared_data_dir()
    snapshots = list_snapshots(data / "iqoth_nccd")
    chosen = [snapshots[0], snapshots[-1]]  # one normal, one malignant (sorted by category)
    nodules, _ = load_nodules(data / "lidc_multireader.npz")
    dataset = WholeSliceDataset(
        [snapshot_unit(s.path) for s in chosen], np.array([s.label for s in chosen]), nodules[:100], n_inserted=2
    )
    assert dataset[2]["mask"].sum() > 0 and dataset[3]["mask"].sum() > 0  # window-visible nodules were inserted
    batch = {k: torch.stack([dataset[i][k] for i in range(len(dataset))]) for k in dataset[0]}
    batch = {k: v[..., ::3, ::3] if v.ndim == 4 else v for k, v in batch.items()}  # 64 x 64 keeps the test fast
    torch.manual_seed(0)
    model = build_architecture("nlb_unet", TINY)
    task = NLBTask()
    losses = task.losses(model, batch)
    assert losses["class"] > 0 and losses["seg"] > 0
    # per-sample class weights (real normal, real neoplasm, inserted): a weighted mean of the per-sample BCE
    # (model in eval: same outputs twice)
    model.eval()
    assert batch["inserted"].tolist() == [0, 0, 1, 1] and batch["label"].tolist() == [0, 1, 1, 1]
    with torch.no_grad():
        logits = model(batch["image"])["class_logit"]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["label"], reduction="none")
    weighted = NLBTask(class_weights=(2.0, 1.0, 0.25))
    expected = (bce * torch.tensor([2.0, 1.0, 0.25, 0.25])).sum() / 3.5
    with torch.no_grad():
        assert float(weighted.losses(model, batch)["class"]) == pytest.approx(float(expected), rel=1e-5)
        assert float(task.losses(model, batch)["class"]) == pytest.approx(float(bce.mean()), rel=1e-5)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    with torch.no_grad():
        first = float(task.training_step(model, batch))
    for _ in range(25):
        optimizer.zero_grad()
        task.training_step(model, batch).backward()
        optimizer.step()
    with torch.no_grad():
        assert float(task.training_step(model, batch)) < 0.7 * first
    assert model.blocks[1].gate.abs().sum() > 0  # the blocks left their identity start


def test_class_weights_balance_each_normal_snapshot_against_its_inserted_copies():
    from lungai.nlb.training import class_weights

    units = [np.zeros((64, 64), np.float32)] * 5
    nodules, _ = load_nodules(shared_data_dir() / "lidc_multireader.npz")
    dataset = WholeSliceDataset(units, np.array([0, 0, 1, 1, 1]), nodules[:50], n_inserted=4)
    negative, positive, inserted = class_weights(dataset, 0.5)
    assert (negative, positive) == (1.5, 1.0)
    assert inserted * 4 == pytest.approx(0.5 * 2)  # all inserted slices weigh half the normal snapshots
    # the real snapshots keep their own ratio: normal snapshots' extra weight equals the inserted slices' weight
    assert (negative - 1.0) * 2 == pytest.approx(inserted * 4)
    assert class_weights(WholeSliceDataset(units, np.ones(5), nodules[:50], n_inserted=4), 0.5) == (1.0, 1.0, 1.0)


def small_training_data(folder):
    """8 real snapshots and 12 real crops of 6 patients (they keep the tests fast): (snapshot folder, npz)."""
    data = shared_data_dir()
    small = folder / "iq"
    for s in list_snapshots(data / "iqoth_nccd")[::110]:
        (small / s.category).mkdir(parents=True, exist_ok=True)
        (small / s.category / s.path.name).symlink_to(s.path)
    with np.load(data / "lidc_multireader.npz") as lidc:
        rows = np.flatnonzero(np.isin(lidc["patient_id"], np.unique(lidc["patient_id"])[:6]))[:12]
        np.savez(folder / "lidc.npz", **{key: lidc[key][rows] for key in lidc.files})
    return small, folder / "lidc.npz"


def test_train_command_writes_a_loadable_checkpoint_held_out_metrics_and_registers(tmp_path, monkeypatch):
    from lungai.registry import get_model_entry, load_registered_model

    small, lidc = small_training_data(tmp_path)
    out = tmp_path / "run"
    code = main(
        [
            "--progress",
            "none",
            "--device",
            "cpu",
            "nlb",
            "train",
            "--iqoth",
            str(small),
            "--lidc",
            str(lidc),
            "--out",
            str(out),
            "--block",
            "symmetry",
            "--widths",
            "4",
            "8",
            "8",
            "--epochs",
            "1",
            "--folds",
            "2",
            "--batch-size",
            "4",
            "--register",
            "nlb_test",
        ]
    )
    assert code == 0
    model, header = load_model(out / "best.pt", expected_model="nlb_unet")
    assert header["config"] == {"block_type": "symmetry", "widths": [4, 8, 8]}
    assert str(tmp_path) not in json.dumps(header)  # no local paths in the checkpoint header
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["held_out_f1"] <= 1 and 0 <= metrics["held_out_inserted_dice"] <= 1
    assert metrics["split"]["test_snapshots"] == 4 and metrics["split"]["held_out_fold"] == 0
    assert header["extra"]["seg_threshold"] == metrics["seg_threshold"] in SEG_THRESHOLD_GRID
    entry = get_model_entry("nlb_test")
    assert entry.available and entry.module == "NeoplasmNLB" and "--block symmetry" in entry.command
    assert entry.metrics["held_out_f1"] == metrics["held_out_f1"] and entry.timings["cpu_ms_per_slice_1_thread"] > 0
    assert "no patient ids" in entry.metrics["held_out"] and "--folds 2" in entry.command
    registered, _ = load_registered_model("nlb_test")
    assert all(torch.equal(a, b) for a, b in zip(registered.state_dict().values(), model.state_dict().values()))


@pytest.mark.parametrize("keep, patience", [("best", 5), ("last", None)])
def test_train_keep_chooses_the_shipped_epoch_and_early_stopping(keep, patience, tmp_path, monkeypatch):
    import lungai.nlb.pipeline as pipeline

    small, lidc = small_training_data(tmp_path)
    schedules = []

    def capture(model, model_config, data, split, schedule, **_):
        schedules.append(schedule)
        raise KeyboardInterrupt  # stop before training: the schedule is what this test checks

    monkeypatch.setattr(pipeline, "train_nlb", capture)
    arguments = ["nlb", "train", "--iqoth", str(small), "--lidc", str(lidc), "--out", str(tmp_path / "run")]
    assert main(["--progress", "none", *arguments, "--folds", "2", "--patience", "5", "--keep", keep]) == 130
    assert (schedules[0].keep, schedules[0].patience) == (keep, patience)
    assert not (tmp_path / "run").exists()  # an interrupted run leaves nothing behind


def test_segmentation_head_starts_at_the_neoplasm_prior_not_at_one_half():
    torch.manual_seed(0)
    model = build_architecture("nlb_unet", {"block_type": "symmetry_localized"}).eval()
    snapshot = frame_snapshot(snapshot_unit(list_snapshots(bundled_sample_dir())[0].path))[None]
    with torch.no_grad():
        probability = model(snapshot)["seg_logits"].sigmoid()
    assert float(probability.median()) == pytest.approx(SEG_PRIOR, rel=0.5) and float(probability.max()) < 0.5


def test_most_likely_slice_is_the_most_probable_reported_one():
    from lungai.nlb.pipeline import most_likely_slice

    probabilities = np.array([0.2, 0.99, 0.7, 0.8])
    assert most_likely_slice(probabilities, np.array([False, False, True, True])) == 3  # 0.99 was not reported
    assert most_likely_slice(probabilities, np.zeros(4, bool)) == 1  # nothing reported: the most probable
