"""``lungai al`` commands end to end on the bundled chest CT with a tiny real model, and the data helpers."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from lungai.al.data import PoolCase, load_folder_pool, synthesize_pool
from lungai.al.networks import ALUNet
from lungai.al.training import ARCHITECTURE
from lungai.checkpoint import save_checkpoint
from lungai.cli import main
from lungai.errors import InputError
from lungai.io import write_table_csv, write_volume


@pytest.fixture
def tiny_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = ALUNet(channels=(4, 8), input_size=32)
    return save_checkpoint(tmp_path / "tiny.pt", model, model_name=ARCHITECTURE, config=model.config)


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_score_select_retrain_round_trip(tmp_path, tiny_checkpoint, chest_ct, chest_lungs):
    ct_path = write_volume(chest_ct, tmp_path / "ct.nrrd")
    scores = tmp_path / "scores"
    assert (
        main(
            [
                "--progress",
                "none",
                "al",
                "score",
                "--volume",
                str(ct_path),
                "--weights",
                str(tiny_checkpoint),
                "--samples",
                "3",
                "--out",
                str(scores),
            ]
        )
        == 0
    )
    assert (scores / "ct_entropy.nrrd").is_file() and (scores / "profiles.png").is_file()
    profile = [float(r["uncertainty"]) for r in _rows(scores / "profiles.csv")]
    assert len(profile) == chest_ct.shape[0]

    write_table_csv(tmp_path / "done.csv", [{"volume": "ct", "slice": int(np.argmax(profile))}])
    ranked = tmp_path / "ranked.csv"
    assert (
        main(
            [
                "al",
                "select",
                "--scores",
                str(scores),
                "--strategy",
                "uss",
                "--budget",
                "3",
                "--annotated",
                str(tmp_path / "done.csv"),
                "--out",
                str(ranked),
            ]
        )
        == 0
    )
    rows = _rows(ranked)
    assert 0 < len(rows) <= 3 and int(np.argmax(profile)) not in [int(r["slice"]) for r in rows]
    assert [float(r["uncertainty"]) for r in rows] == sorted((float(r["uncertainty"]) for r in rows), reverse=True)
    # a budget larger than the pool is bad input (exit 2), and nothing is written
    assert (
        main(
            [
                "al",
                "select",
                "--scores",
                str(scores),
                "--strategy",
                "rvs",
                "--budget",
                "2",
                "--out",
                str(tmp_path / "none.csv"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "none.csv").exists()

    labels = write_volume(chest_lungs[0], tmp_path / "lungs.nrrd")
    retrained = tmp_path / "v2.pt"
    assert (
        main(
            [
                "--progress",
                "none",
                "al",
                "retrain",
                "--volume",
                str(ct_path),
                "--labels",
                str(labels),
                "--annotated",
                str(ranked),
                "--weights",
                str(tiny_checkpoint),
                "--steps",
                "2",
                "--out",
                str(retrained),
            ]
        )
        == 0
    )
    assert retrained.is_file()
    registered = [
        "--progress", "none", "al", "retrain", "--volume", str(ct_path), "--labels", str(labels),
        "--annotated", str(ranked), "--weights", str(tiny_checkpoint), "--steps", "1",
        "--out", str(tmp_path / "v2b.pt"), "--register", "tiny-tuned",
    ]  # fmt: skip
    assert main(registered) == 0
    from lungai.registry import get_model_entry, sha256_of

    assert get_model_entry("tiny-tuned").sha256 == sha256_of(tmp_path / "v2b.pt")
    write_table_csv(tmp_path / "empty.csv", [{"volume": "ct", "slice": 0}])
    (tmp_path / "empty.csv").write_text("volume,slice\n")
    assert (
        main(
            [
                "--progress",
                "none",
                "al",
                "retrain",
                "--volume",
                str(ct_path),
                "--labels",
                str(labels),
                "--annotated",
                str(tmp_path / "empty.csv"),
                "--weights",
                str(tiny_checkpoint),
                "--out",
                str(tmp_path / "v3.pt"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "v3.pt").exists()


def test_model_without_dropout_and_too_few_samples_are_rejected(tmp_path, chest_ct):
    torch.manual_seed(0)
    model = ALUNet(channels=(4, 8), input_size=32, dropout=0.0)
    path = save_checkpoint(tmp_path / "nodrop.pt", model, model_name=ARCHITECTURE, config=model.config)
    ct_path = write_volume(chest_ct, tmp_path / "ct.nrrd")
    assert main(["al", "score", "--volume", str(ct_path), "--weights", str(path), "--out", str(tmp_path / "a")]) == 2
    assert (
        main(
            [
                "al",
                "score",
                "--volume",
                str(ct_path),
                "--weights",
                str(path),
                "--samples",
                "1",
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 2
    )


def test_simulation_command_writes_curves_with_equal_effort(tmp_path):
    out = tmp_path / "sim"
    assert (
        main(
            [
                "--progress",
                "none",
                "al",
                "simulate",
                "--pool-size",
                "4",
                "--val-size",
                "1",
                "--test-size",
                "1",
                "--iterations",
                "1",
                "--steps",
                "3",
                "--samples",
                "2",
                "--input-size",
                "32",
                "--channels",
                "4",
                "8",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    rows = _rows(out / "simulation.csv")
    assert (out / "learning_curves.png").is_file() and len(rows) == 8
    first = {r["strategy"]: r for r in rows if r["iteration"] == "1"}
    start = int(rows[0]["annotated_slices"])
    budget = int(rows[0]["slices_per_iteration"])
    assert int(first["uvs"]["annotated_volumes"]) == int(first["rvs"]["annotated_volumes"]) == 3
    assert int(first["uss"]["annotated_slices"]) - start <= budget
    assert int(first["rss"]["annotated_foreground_slices"]) - int(rows[0]["annotated_foreground_slices"]) == budget
    for key in ("dice_mean", "dice_p5", "dice_p95", "rve_mean", "msd_p95", "hd_mean"):
        assert key in rows[0]


def test_simulated_pool_is_documented_augmentation_of_one_scan(chest_ct, chest_lungs):
    image, label = chest_ct.array.astype(np.float32), (chest_lungs[0].array > 0).astype(np.uint8)
    cases = synthesize_pool(image, label, 3, seed=5, spacing=chest_ct.spacing)
    again = synthesize_pool(image, label, 3, seed=5, spacing=chest_ct.spacing)
    for case, same in zip(cases, again):
        np.testing.assert_array_equal(case.image, same.image)
        assert case.image.shape[1:] == image.shape[1:] and 20 <= case.image.shape[0] <= image.shape[0]
        assert case.label.shape == case.image.shape and set(np.unique(case.label)) <= {0, 1}
        assert case.label.sum() > 0.5 * label.sum() * case.image.shape[0] / image.shape[0]
        assert not np.array_equal(case.image, image[: case.image.shape[0]])


def test_folder_pool_checks_label_geometry(tmp_path, chest_ct, chest_lungs):
    (tmp_path / "images").mkdir(), (tmp_path / "labels").mkdir()
    write_volume(chest_ct, tmp_path / "images" / "a.nrrd")
    write_volume(chest_lungs[0], tmp_path / "labels" / "a.nrrd")
    cases = load_folder_pool(tmp_path)
    assert [c.name for c in cases] == ["a"] and np.allclose(cases[0].spacing, chest_ct.spacing)
    cropped = chest_lungs[0].like(chest_lungs[0].array)
    cropped.array = cropped.array[:10]
    write_volume(chest_ct, tmp_path / "images" / "b.nrrd")
    write_volume(cropped, tmp_path / "labels" / "b.nrrd")
    with pytest.raises(InputError, match="labelmap geometry"):
        load_folder_pool(tmp_path)
    with pytest.raises(InputError, match="labelmap shape"):
        PoolCase("x", np.zeros((3, 8, 8)), np.zeros((2, 8, 8)))
