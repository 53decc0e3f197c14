"""CHS-Net data, cascade, volume pipeline, command line and Slicer logic on real data and MRML.

A tiny CHS-Net (baseline variant, 32 x 32 grid) is trained once per session through the real
``lungai covid train`` command on the chest CT and four MedSeg slices; everything else runs on it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_data_dir

from lungai.cli import main as lungai_main
from lungai.covid.cascade import Cascade
from lungai.covid.data import LabelledSlice, derive_lung_mask, load_medseg_folder
from lungai.covid.grid import GridBox
from lungai.covid.orientation import from_display, to_display
from lungai.covid.pipeline import SEGMENTS, segment_volume, split_lungs
from lungai.errors import InputError, LungAIError
from lungai.volume import Volume


def medseg_dir() -> Path:
    return shared_data_dir() / "covid_infection_medseg"


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("chsnet")
    torch.set_num_threads(1)
    code = lungai_main(
        [
            "--progress",
            "none",
            "--device",
            "cpu",
            "covid",
            "train",
            "--data",
            str(medseg_dir()),
            "--out",
            str(out),
            "--size",
            "32",
            "--widths",
            "4",
            "8",
            "8",
            "8",
            "8",
            "--lung-widths",
            "4",
            "8",
            "8",
            "8",
            "8",
            "--variant",
            "BU",
            "--lung-epochs",
            "8",
            "--lung-size",
            "32",
            "--finetune-epochs",
            "1",
            "--limit",
            "4",
            "--lr",
            "0.01",
        ]
    )
    assert code == 0
    return out / "chsnet.pt"


@pytest.fixture
def small_medseg(tmp_path) -> Path:
    """Three real MedSeg slices in the covid_infection_medseg layout."""
    for sub in ("images", "infection"):
        (tmp_path / sub).mkdir()
    for name in ("0", "1", "2"):
        shutil.copy(medseg_dir() / "images" / f"{name}.jpg", tmp_path / "images")
        shutil.copy(medseg_dir() / "infection" / f"{name}.png", tmp_path / "infection")
    return tmp_path


def stub_cascade(lung_bias: float, infection_bias: float, size: int = 32) -> Cascade:
    """A cascade whose stages are 1x1 convolutions with known output (lung = dark pixels)."""
    lung, infection = torch.nn.Conv2d(1, 1, 1), torch.nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        lung.weight.fill_(-20.0)
        lung.bias.fill_(lung_bias)
        infection.weight.zero_()
        infection.bias.fill_(infection_bias)
    return Cascade(infection, lung=lung, lung_input="mask", size=size)


# --- data -------------------------------------------------------------------------------------


def test_medseg_loader_reads_and_transposes_the_layout():
    transposed = load_medseg_folder(medseg_dir())
    display = load_medseg_folder(medseg_dir(), orientation="display")
    assert len(transposed) == 50
    assert transposed[0].image.shape == display[0].image.shape[::-1]
    np.testing.assert_array_equal(transposed[0].infection, display[0].infection.T)
    assert 0.0 <= transposed[0].image.min() and transposed[0].image.max() <= 1.0
    assert set(np.unique(transposed[0].classes)) <= {0, 1, 2}


def test_medseg_loader_explains_a_wrong_folder(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError, match="give a folder with 'images/' and 'infection/'"):
        load_medseg_folder(tmp_path)


def test_pseudo_labelled_slices_split_by_case_and_subsample_within_each_case():
    from lungai.covid.data import case_of
    from lungai.covid.training import every_kth_of_each_case

    pseudo = shared_data_dir() / "covid_pseudo_infnet"
    names = sorted(p.stem for p in (pseudo / "images").iterdir())
    cases = {case_of(name) for name in names}
    assert len(names) == 1600 and len(cases) == 20  # the README's 20 cases
    assert case_of("Data-1_coronacases_org_001_17") == "Data-1_coronacases_org_001" and case_of("12") == "12"
    slices = [LabelledSlice(f"{case}_{k}", np.zeros((2, 2))) for case in ("a", "b_c") for k in range(5)]
    kept = [s.name for s in every_kth_of_each_case(slices, 2)]
    assert kept == ["a_0", "a_2", "a_4", "b_c_0", "b_c_2", "b_c_4"]  # the count restarts in each case


def test_doctor_split_is_fixed_disjoint_and_covers_every_slice():
    from lungai.covid.bundle import doctor_split

    slices = [LabelledSlice(str(k), np.zeros((2, 2))) for k in range(50)]
    train, held_out = doctor_split(slices)
    again = doctor_split(slices)
    assert [s.name for s in again[1]] == [s.name for s in held_out]  # the same split every time
    assert len(train) == len(held_out) == 25
    assert {s.name for s in train} | {s.name for s in held_out} == {str(k) for k in range(50)}
    assert not {s.name for s in train} & {s.name for s in held_out}


def test_held_out_fold_0_swaps_the_two_folds_and_says_so():
    from lungai.covid.bundle import doctor_split, split_text

    slices = [LabelledSlice(str(k), np.zeros((2, 2))) for k in range(50)]
    train, held_out = doctor_split(slices)
    swapped_train, swapped_held_out = doctor_split(slices, held_out_fold=0)
    assert [s.name for s in swapped_train] == [s.name for s in held_out]
    assert [s.name for s in swapped_held_out] == [s.name for s in train]
    assert split_text(0).endswith("fold 1 trains, fold 0 held out")
    assert split_text().endswith("fold 0 trains, fold 1 held out")  # the bundled model's, as its registry key says
    with pytest.raises(InputError, match="0 or 1"):
        doctor_split(slices, held_out_fold=2)


def test_derived_lungs_agree_with_real_labels_on_the_chest_ct():
    from lungai.covid.data import chest_ct_lung_slices

    dices = []
    for s in chest_ct_lung_slices("train"):
        if s.lung.sum() > 500:
            derived = derive_lung_mask(s.image)
            dices.append(2 * (derived & s.lung).sum() / (derived.sum() + s.lung.sum()))
    assert np.mean(dices) > 0.85


def test_display_orientation_puts_the_right_lung_on_the_left_of_the_image(chest_ct, chest_lungs):
    labels, _ = chest_lungs
    display = to_display(labels.array, chest_ct)
    columns = np.indices(display.shape)[2]
    assert columns[display == 1].mean() < columns[display == 2].mean()  # 1 = right lung
    rows = np.indices(display.shape)[1]
    spine = to_display(chest_ct.array > 300, chest_ct)  # bone: spine is posterior = bottom
    assert rows[spine].mean() > display.shape[1] / 2
    np.testing.assert_array_equal(from_display(display, chest_ct), labels.array)


def test_orientation_round_trip_for_swapped_axes():
    direction = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    volume = Volume(np.random.default_rng(0).normal(size=(2, 3, 5)), direction=direction)
    display = to_display(volume.array, volume)
    assert display.shape == (2, 5, 3)
    np.testing.assert_array_equal(from_display(display, volume), volume.array)


def test_grid_box_round_trip_keeps_the_image():
    image = np.zeros((40, 60), np.float32)
    image[10:30, 20:50] = 1
    box = GridBox.whole(image.shape)
    back = box.paste(box.extract(image, 60), image.shape)
    assert np.abs(back - image).mean() < 0.02
    around = GridBox.around(image > 0, 0.1)
    assert around.side == 36  # 30 pixels grown by 10 % each way
    assert around.top <= 10 and around.top + around.side >= 30 and around.left <= 20 and around.left + around.side >= 50


# --- cascade and volume pipeline ---------------------------------------------------------------


def test_mask_mode_reports_no_infection_outside_the_lungs():
    s = load_medseg_folder(medseg_dir())[0]
    result = stub_cascade(lung_bias=6.0, infection_bias=10.0).segment([s.image])[0]
    lungs, infection = result.lung > 0.5, result.infection > 0.5
    assert lungs.any() and infection.any()
    assert not (infection & ~lungs).any()


def test_flip_averaging_is_the_mean_of_the_slice_and_its_mirror():
    torch.manual_seed(0)
    infection = torch.nn.Conv2d(1, 1, 3, padding=1)  # not mirror-symmetric
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    plain = Cascade(infection, lung=None, lung_input=None, size=32).segment([image])[0].infection
    mirrored = Cascade(infection, lung=None, lung_input=None, size=32).segment([image[:, ::-1].copy()])[0].infection
    averaged = Cascade(infection, lung=None, lung_input=None, size=32, tta=True).segment([image])[0].infection
    assert not np.allclose(plain, mirrored[:, ::-1], atol=1e-3)
    np.testing.assert_allclose(averaged, (plain + mirrored[:, ::-1]) / 2, atol=1e-5)


def test_slices_without_lungs_get_no_infection_and_a_lungless_volume_is_refused(chest_ct):
    result = stub_cascade(lung_bias=-50.0, infection_bias=10.0).segment([np.full((64, 64), 0.3, np.float32)])[0]
    assert not (result.infection > 0.5).any()
    with pytest.raises(InputError, match="No lungs were found"):
        segment_volume(chest_ct, stub_cascade(lung_bias=-50.0, infection_bias=10.0))


def test_bad_volumes_get_clear_errors(chest_ct):
    cascade = stub_cascade(6.0, 10.0)
    oblique = chest_ct.like(chest_ct.array)
    angle = np.radians(30)
    oblique.direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    with pytest.raises(InputError, match="not axial"):
        segment_volume(oblique, cascade)
    with pytest.raises(InputError, match="Hounsfield"):
        segment_volume(chest_ct.like(np.clip(chest_ct.array, 0, 255).astype(np.uint8)), cascade)


def test_split_lungs_uses_patient_left_not_array_order():
    array = np.zeros((2, 10, 20), bool)
    array[:, 2:8, 2:7] = True  # low i
    array[:, 2:8, 12:18] = True  # high i
    volume = Volume(array, direction=np.diag([-1.0, -1.0, 1.0]))  # i runs towards patient right
    right, left = split_lungs(array, volume)
    assert right[:, 2:8, 12:18].all() and left[:, 2:8, 2:7].all()
    assert not (right & left).any() and ((right | left) == array).all()


def test_split_lungs_drops_air_at_the_edge_of_the_field_of_view():
    array = np.zeros((2, 10, 20), bool)
    array[:, 2:8, 2:7] = True
    array[:, 2:8, 12:18] = True
    array[:, 0:3, 19] = True  # outside air reaching the image edge
    right, left = split_lungs(array, Volume(array))
    assert not (right | left)[:, :, 19].any() and (right | left)[:, 2:8, 2:7].all()


def test_single_slice_volume_works(chest_ct):
    one = Volume(chest_ct.array[15:16], chest_ct.spacing, chest_ct.origin, chest_ct.direction)
    result = segment_volume(one, stub_cascade(6.0, 10.0))
    assert result.masks["Infection"].shape == (1, 128, 128)


def test_burden_table_volumes_equal_voxel_counts(chest_ct):
    result = segment_volume(chest_ct, stub_cascade(6.0, 10.0))
    ml = chest_ct.voxel_volume_mm3 / 1000
    right, left = result.table[0], result.table[1]
    assert right["Lung volume (mL)"] == pytest.approx(result.masks["Right lung"].sum() * ml, abs=1e-3)
    assert left["Lung volume (mL)"] == pytest.approx(result.masks["Left lung"].sum() * ml, abs=1e-3)
    assert result.table[2]["Lung volume (mL)"] == pytest.approx(
        right["Lung volume (mL)"] + left["Lung volume (mL)"], abs=2e-3
    )


# --- command line ------------------------------------------------------------------------------


def test_train_writes_a_loadable_chsnet_checkpoint(tiny_weights):
    from lungai.checkpoint import load_checkpoint
    from lungai.covid.pipeline import load

    header = load_checkpoint(tiny_weights).header
    assert header["model_name"] == "chsnet" and header["extra"]["input_size"] == 32
    assert 0.0 <= header["metrics"]["held_out_lung_dice"] <= 1.0
    assert 0.0 <= header["metrics"]["held_out_infection_dice"] <= 1.0
    held_out = header["extra"]["held_out"]["slices"]
    assert len(held_out) == 2 and held_out[0] in {"0", "1", "2", "3"}  # two of the four slices (--limit 4)
    assert "/" not in json.dumps({k: header[k] for k in ("training_data", "extra")})  # no local paths
    cascade = load(tiny_weights, device="cpu").network
    assert cascade.hierarchical and cascade.lung_input == "channel" and cascade.size == 32


def test_train_can_reuse_a_trained_lung_stage(tiny_weights, tmp_path):
    from lungai.checkpoint import load_checkpoint

    lung = tiny_weights.parent / "lung" / "last.pt"
    code = lungai_main(
        [
            "--progress",
            "none",
            "--device",
            "cpu",
            "covid",
            "train",
            "--data",
            str(medseg_dir()),
            "--out",
            str(tmp_path),
            "--size",
            "32",
            "--widths",
            "4",
            "8",
            "8",
            "8",
            "8",
            "--lung-widths",
            "4",
            "8",
            "8",
            "8",
            "8",
            "--variant",
            "BU",
            "--finetune-epochs",
            "1",
            "--limit",
            "4",
            "--lung-size",
            "32",
            "--lung-weights",
            str(lung),
        ]
    )
    assert code == 0
    given, combined = load_checkpoint(lung).state_dict, load_checkpoint(tmp_path / "chsnet.pt").state_dict
    assert all(torch.equal(value, combined[f"lung.{key}"]) for key, value in given.items())
    assert not (tmp_path / "lung").exists()


def test_a_model_trained_with_flips_measures_segments_and_evaluates_with_them(tiny_weights, tmp_path):
    from lungai.checkpoint import load_checkpoint
    from lungai.covid.pipeline import load

    tiny = ["--size", "32", "--widths", "4", "8", "8", "8", "8", "--variant", "BU", "--finetune-epochs", "1"]
    lung = ["--lung-size", "32", "--lung-weights", str(tiny_weights.parent / "lung" / "last.pt")]
    base = ["--progress", "none", "--device", "cpu", "covid", "train", "--data", str(medseg_dir()), "--limit", "4"]
    assert lungai_main([*base, *tiny, *lung, "--tta", "--out", str(tmp_path / "flips")]) == 0
    assert lungai_main([*base, *tiny, *lung, "--out", str(tmp_path / "plain")]) == 0
    flips, plain = (load_checkpoint(tmp_path / name / "chsnet.pt") for name in ("flips", "plain"))
    assert all(torch.equal(v, plain.state_dict[k]) for k, v in flips.state_dict.items())  # --tta trains nothing else
    header = flips.header
    assert header["extra"]["recipe"]["tta"] is True
    assert load(tmp_path / "flips" / "chsnet.pt", device="cpu").network.tta
    assert not load(tiny_weights, device="cpu").network.tta  # trained without --tta: no flips by default
    out = tmp_path / "eval"
    evaluate = ["--progress", "none", "covid", "evaluate", "--data", str(medseg_dir()), "--held-out"]
    assert lungai_main([*evaluate, "--weights", str(tmp_path / "flips" / "chsnet.pt"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tta"] is True  # the figure training measured, reproduced by evaluate
    assert metrics["infection"]["dice"] == pytest.approx(header["metrics"]["held_out_infection_dice"], abs=1e-3)
    # registered without flips: the checkpoint the command without --tta gives, weights and held-out figures
    registered = ["--data", str(medseg_dir()), "--runs", str(tmp_path / "flips" / "chsnet.pt"), "--no-tta"]
    assert assemble_members_script().main([*registered, "--out", str(tmp_path / "no_flips")]) == 0
    no_flips = load_checkpoint(tmp_path / "no_flips" / "chsnet.pt")
    assert not load(tmp_path / "no_flips" / "chsnet.pt", device="cpu").network.tta
    assert all(torch.equal(v, plain.state_dict[k]) for k, v in no_flips.state_dict.items())
    figures = {k: v for k, v in plain.header["metrics"].items() if not k.endswith("seconds_per_slice")}
    assert figures and all(no_flips.header["metrics"][k] == pytest.approx(v, abs=1e-4) for k, v in figures.items())


def assemble_members_script():
    script = Path(__file__).resolve().parents[1] / "bench" / "covid" / "assemble_members.py"
    spec = importlib.util.spec_from_file_location("assemble_members", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_members_train_one_after_another_as_separate_seeded_runs_would(tiny_weights, tmp_path):
    """``--members 2`` gives the second network exactly what ``--seed 1 --lung-weights`` of the same lung stage gives,
    and the checkpoint averages both (bench/covid/trials.md, fifth trial, trains the members so)."""
    from lungai.checkpoint import load_checkpoint
    from lungai.covid.pipeline import load
    from lungai.ensemble import ProbabilityMean

    tiny = ["--size", "32", "--widths", "4", "8", "8", "8", "8", "--variant", "BU", "--finetune-epochs", "2"]
    lung = ["--lung-size", "32", "--lung-weights", str(tiny_weights.parent / "lung" / "last.pt")]
    base = ["--progress", "none", "--device", "cpu", "covid", "train", "--data", str(medseg_dir()), "--limit", "4"]
    assert lungai_main([*base, *tiny, *lung, "--members", "2", "--out", str(tmp_path / "pair")]) == 0
    assert lungai_main([*base, *tiny, *lung, "--seed", "1", "--out", str(tmp_path / "seed1")]) == 0
    pair = load_checkpoint(tmp_path / "pair" / "chsnet.pt")
    single = load_checkpoint(tmp_path / "seed1" / "chsnet.pt").state_dict
    member1 = {k.removeprefix("infection.members.1."): v for k, v in pair.state_dict.items() if ".members.1." in k}
    infection = {k.removeprefix("infection."): v for k, v in single.items() if k.startswith("infection.")}
    assert member1.keys() == infection.keys() and all(torch.equal(member1[k], infection[k]) for k in infection)
    assert not torch.equal(pair.state_dict["infection.members.0.head.weight"], member1["head.weight"])
    assert pair.header["config"]["infection_members"] == 2 and pair.header["extra"]["recipe"]["members"] == 2
    out = tmp_path / "eval"
    evaluate = ["--progress", "none", "covid", "evaluate", "--data", str(medseg_dir()), "--held-out"]
    assert lungai_main([*evaluate, "--weights", str(tmp_path / "pair" / "chsnet.pt"), "--out", str(out)]) == 0
    measured = json.loads((out / "metrics.json").read_text())["infection"]["dice"]
    assert measured == pytest.approx(pair.header["metrics"]["held_out_infection_dice"], abs=1e-3)
    assert isinstance(load(tmp_path / "pair" / "chsnet.pt", device="cpu").network.infection, ProbabilityMean)
    # the same model assembled from the two seeded runs trained apart (bench/covid/assemble_members.py)
    assert lungai_main([*base, *tiny, *lung, "--seed", "0", "--out", str(tmp_path / "seed0")]) == 0
    assemble = assemble_members_script()
    runs = [str(tmp_path / name / "chsnet.pt") for name in ("seed0", "seed1")]
    assert assemble.main(["--data", str(medseg_dir()), "--runs", *runs, "--out", str(tmp_path / "assembled")]) == 0
    assembled = load_checkpoint(tmp_path / "assembled" / "chsnet.pt")
    assert assembled.state_dict.keys() == pair.state_dict.keys()
    assert all(torch.equal(assembled.state_dict[k], v) for k, v in pair.state_dict.items())
    assert assembled.header["config"] == pair.header["config"]
    assert assembled.header["metrics"]["held_out_infection_dice"] == pair.header["metrics"]["held_out_infection_dice"]
    with pytest.raises(LungAIError, match="consecutive"):
        assemble.main(["--data", str(medseg_dir()), "--runs", runs[1], runs[0], "--out", str(tmp_path / "wrong")])
    # one run, here the --members 2 command's own checkpoint, is measured and registered as it is
    from lungai.registry import get_model_entry

    one = ["--data", str(medseg_dir()), "--runs", str(tmp_path / "pair" / "chsnet.pt"), "--threads", "2"]
    assert assemble.main([*one, "--out", str(tmp_path / "as_is"), "--register", "pair-as-is"]) == 0
    as_is = load_checkpoint(tmp_path / "as_is" / "chsnet.pt")
    assert all(torch.equal(as_is.state_dict[k], v) for k, v in pair.state_dict.items())
    assert as_is.header["training_data"] == pair.header["training_data"]
    entry = get_model_entry("pair-as-is")
    assert entry.timings["torch_threads"] == 2
    assert entry.timings["train_seconds"] == pytest.approx(sum(pair.header["extra"]["train_seconds"].values()), abs=0.2)
    assert entry.metrics[next(k for k in entry.metrics if "infection" in k)]["dice"] == pytest.approx(
        pair.header["metrics"]["held_out_infection_dice"], abs=1e-3
    )


def test_evaluate_writes_metrics_json_and_refuses_to_overwrite(tiny_weights, small_medseg, tmp_path):
    out = tmp_path / "eval"
    args = [
        "--progress",
        "none",
        "covid",
        "evaluate",
        "--data",
        str(small_medseg),
        "--weights",
        str(tiny_weights),
        "--out",
        str(out),
    ]
    assert lungai_main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["mode"] == "hierarchical" and metrics["slices"] == 3
    assert set(metrics["infection"]) == {"accuracy", "precision", "specificity", "recall", "dice", "jaccard"}
    assert len(list(csv.DictReader(open(out / "per_slice.csv")))) == 3
    assert lungai_main(args) == 2  # exists: refused without --overwrite


def test_bundled_model_says_what_held_out_means_and_was_trained_by_its_command():
    from lungai.checkpoint import load_checkpoint
    from lungai.covid.bundle import registry_metrics
    from lungai.registry import get_model_entry

    entry = get_model_entry("chsnet-covid")
    assert "covid train" in entry.command and "--pseudo" in entry.command and "--register chsnet-covid" in entry.command
    infection = next(key for key in entry.metrics if key.startswith("infection"))
    assert "held-out" in infection and "no training step saw" in infection and "patients not identified" in infection
    header = load_checkpoint(entry.path).header
    assert header["extra"]["input_size"] >= 128 and len(header["extra"]["held_out"]["slices"]) == 25
    text = json.dumps({k: header[k] for k in ("training_data", "extra", "metrics")})
    assert "/work" not in text and "/tmp" not in text and "/home" not in text  # no local paths
    assert header["metrics"]["held_out_infection_dice"] == entry.metrics[infection]["dice"]
    published = registry_metrics({"infection": {}, "lung": {}}, 25, header["extra"]["held_out"]["data"])
    assert set(entry.metrics) == set(published)  # as publishing writes them: the networks' output, before the limits
    assert all("before the anatomical limits that segment applies" in key for key in entry.metrics)


def test_evaluate_held_out_measures_only_the_slices_training_never_saw(tiny_weights, tmp_path):
    from lungai.checkpoint import load_checkpoint

    held_out = load_checkpoint(tiny_weights).header["extra"]["held_out"]["slices"]
    out = tmp_path / "eval"
    args = ["--progress", "none", "covid", "evaluate", "--data", str(medseg_dir()), "--weights", str(tiny_weights)]
    assert lungai_main([*args, "--out", str(out), "--held-out"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["held_out_only"] and metrics["slices"] == len(held_out) == 2
    assert sorted(row["slice"] for row in csv.DictReader(open(out / "per_slice.csv"))) == sorted(held_out)


def test_segment_writes_segments_and_table_on_the_volume_grid(tiny_weights, chest_ct, tmp_path):
    import slicerio

    from lungai.sample_data import chest_ct_path

    out = tmp_path / "seg"
    args = [
        "--progress",
        "none",
        "covid",
        "segment",
        "--volume",
        str(chest_ct_path()),
        "--weights",
        str(tiny_weights),
        "--out",
        str(out),
    ]
    assert lungai_main(args) == 0
    segmentation = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    assert [s["name"] for s in segmentation["segments"]] == [s.name for s in SEGMENTS]
    np.testing.assert_allclose(segmentation["ijkToLPS"], chest_ct.ijk_to_lps(), atol=1e-4)
    rows = list(csv.DictReader(open(out / "burden.csv")))
    assert [r["Region"] for r in rows] == ["Right lung", "Left lung", "Both lungs"]
    assert lungai_main(args) == 2


# --- Slicer logic on the headless MRML harness ---------------------------------------------------


def test_logic_creates_segments_and_a_table_matching_voxel_counts(mrml_scene, tiny_weights, chest_ct):
    import vtk
    from COVIDHierarchicalLib import COVIDHierarchicalLogic

    from LungAICommon.mrml import rows_from_table_node, segment_mask, volume_node_from_volume

    volume_node = volume_node_from_volume(chest_ct, "CTChest4")
    segmentation, table = COVIDHierarchicalLogic().run(volume_node, weights=str(tiny_weights), device="cpu")
    names = [
        segmentation.GetSegmentation().GetNthSegment(i).GetName()
        for i in range(segmentation.GetSegmentation().GetNumberOfSegments())
    ]
    assert names == ["Right lung", "Left lung", "Infection"]
    infection = segmentation.GetSegmentation().GetSegment(
        segmentation.GetSegmentation().GetSegmentIdBySegmentName("Infection")
    )
    tag = vtk.reference("")
    assert infection.GetTag(infection.GetTerminologyEntryTagName(), tag) and "Lesion" in str(tag)
    assert (
        segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole()).GetID()
        == volume_node.GetID()
    )
    rows = rows_from_table_node(table)
    ml = chest_ct.voxel_volume_mm3 / 1000
    right = segment_mask(segmentation, "Right lung", volume_node)
    left = segment_mask(segmentation, "Left lung", volume_node)
    infected = segment_mask(segmentation, "Infection", volume_node)
    assert right.shape == chest_ct.shape and right.any() and left.any()
    assert rows[0]["Lung volume (mL)"] == pytest.approx(right.sum() * ml, abs=1e-3)
    assert rows[1]["Lung volume (mL)"] == pytest.approx(left.sum() * ml, abs=1e-3)
    assert rows[2]["Infection volume (mL)"] == pytest.approx(infected.sum() * ml, abs=1e-3)
    assert rows[0]["Infection volume (mL)"] == pytest.approx((infected & right).sum() * ml, abs=1e-3)


def test_logic_cancel_leaves_the_scene_unchanged_and_never_overwrites_silently(mrml_scene, tiny_weights, chest_ct):
    from COVIDHierarchicalLib import COVIDHierarchicalLogic

    from lungai.progress import Cancelled, CancelToken
    from LungAICommon.mrml import volume_node_from_volume

    volume_node = volume_node_from_volume(chest_ct, "CTChest4")
    before = mrml_scene.GetNumberOfNodes()
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        COVIDHierarchicalLogic().run(volume_node, weights=str(tiny_weights), device="cpu", cancel=token)
    assert mrml_scene.GetNumberOfNodes() == before
    segmentation, table = COVIDHierarchicalLogic().run(volume_node, weights=str(tiny_weights), device="cpu")
    with pytest.raises(LungAIError, match="would be replaced"):
        COVIDHierarchicalLogic().run(volume_node, weights=str(tiny_weights), segmentation_node=segmentation)
    again, _ = COVIDHierarchicalLogic().run(
        volume_node,
        weights=str(tiny_weights),
        device="cpu",
        segmentation_node=segmentation,
        table_node=table,
        overwrite=True,
    )
    assert again is segmentation


def test_logic_subprocess_path_imports_the_command_line_result(mrml_scene, tiny_weights, chest_ct, tmp_path):
    from COVIDHierarchicalLib import COVIDHierarchicalLogic

    from LungAICommon.mrml import rows_from_table_node, segment_mask, volume_node_from_volume

    logic = COVIDHierarchicalLogic()
    volume_node = volume_node_from_volume(chest_ct, "CTChest4")
    volume_path = logic.export_volume(volume_node, tmp_path / "input.nrrd")
    arguments = logic.cli_arguments(volume_path, tmp_path / "out", weights=str(tiny_weights), device="cpu")
    assert lungai_main(["--progress", "none", *arguments]) == 0
    segmentation, table = logic.import_results(tmp_path / "out", volume_node)
    direct, _ = logic.run(volume_node, weights=str(tiny_weights), device="cpu")
    for name in ("Right lung", "Left lung", "Infection"):
        np.testing.assert_array_equal(
            segment_mask(segmentation, name, volume_node), segment_mask(direct, name, volume_node)
        )
    assert [r["Region"] for r in rows_from_table_node(table)] == ["Right lung", "Left lung", "Both lungs"]


# --- demo ----------------------------------------------------------------------------------------


def test_demo_section_uses_the_registered_model_and_bundled_samples(tiny_weights, tmp_path, monkeypatch):
    from lungai.covid import DESCRIPTOR
    from lungai.covid.demo import run_demo
    from lungai.registry import publish

    repo = Path(__file__).resolve().parent.parent
    resources = tmp_path / "Resources"
    shutil.copytree(repo / "Resources" / "SampleData" / "covid", resources / "SampleData" / "covid")
    monkeypatch.setenv("LUNGAI_RESOURCES", str(resources))
    missing = run_demo(tmp_path / "before", device="cpu")
    assert "unavailable" in missing.text and not missing.images
    publish(tiny_weights, DESCRIPTOR.default_model_id, module=DESCRIPTOR.slicer_module, licence="test")
    section = run_demo(tmp_path / "demo", device="cpu")
    # the CT's largest-lung slice and its most infected slice (one picture when they coincide), two MedSeg slices
    assert len(section.images) in (3, 4) and all(p.is_file() for p in section.images + section.files + section.tables)
    assert "infection burden" in section.reading
    assert [r["Region"] for r in csv.DictReader(open(section.tables[0]))] == ["Right lung", "Left lung", "Both lungs"]


# --- anatomy on the bundled model and the real CT (issue 12) ----------------------------------------


@pytest.fixture(scope="module")
def bundled_result(chest_ct):
    from lungai.covid.pipeline import load

    return segment_volume(chest_ct, load(device="cpu").network)


def test_bundled_model_keeps_every_segment_inside_the_body_and_out_of_the_airways(bundled_result, chest_ct):
    from lungai.lungfield import lung_field

    field = lung_field(chest_ct)
    for name, mask in bundled_result.masks.items():
        assert not (mask & ~field.body).any(), f"{name} outside the body"
    lungs = bundled_result.masks["Right lung"] | bundled_result.masks["Left lung"]
    assert not (lungs & field.airways).any()


def test_bundled_lungs_match_the_reference_on_slices_the_lung_stage_never_saw(bundled_result, chest_lungs):
    from lungai.covid.data import TEST_SLICES
    from lungai.metrics import dice

    held_out = slice(TEST_SLICES.start, TEST_SLICES.stop)
    labels = chest_lungs[0].array[held_out]
    right, left = bundled_result.masks["Right lung"][held_out], bundled_result.masks["Left lung"][held_out]
    assert dice(right | left, labels > 0) >= 0.95
    assert abs((right | left).sum() / (labels > 0).sum() - 1) <= 0.05
    assert dice(right, labels == 1) >= 0.9 and dice(left, labels == 2) >= 0.9


def test_bundled_model_marks_at_most_half_a_percent_of_a_normal_scan_as_infection(bundled_result):
    from lungai.covid.data import TEST_SLICES

    held_out = slice(TEST_SLICES.start, TEST_SLICES.stop)  # the lung stage trained on the other slices
    lungs = (bundled_result.masks["Right lung"] | bundled_result.masks["Left lung"])[held_out]
    assert bundled_result.masks["Infection"][held_out].sum() <= 0.005 * lungs.sum()


def test_dense_infection_at_the_lung_border_is_kept_whole_and_the_rest_dropped(chest_ct):
    from lungai.covid.anatomy import constrain
    from lungai.lungfield import lung_field

    field = lung_field(chest_ct)
    hu = chest_ct.array.astype(np.float32)
    k = 16
    rows, columns = np.nonzero(field.right[k])
    lateral = columns.max() if columns.mean() > np.nonzero(field.left[k])[1].mean() else columns.min()
    row = int(np.median(rows[columns == lateral]))
    consolidation = np.zeros(hu.shape, bool)  # straddles the lung border: half lung field, half chest wall
    consolidation[k, row - 2 : row + 3, lateral - 3 : lateral + 4] = True
    hu[consolidation] = 30.0
    faint = np.zeros_like(consolidation)  # inside the lung, no denser than the aerated lung around it
    faint[k, rows[0] + 6 : rows[0] + 9, columns.min() + 8 : columns.min() + 11] = True
    faint &= field.right & ~consolidation
    outside = np.zeros_like(consolidation)
    outside[k, 2:5, 2:5] = True  # in the air around the patient
    assert faint.any() and not (consolidation & field.lungs).all()
    lungs, kept = constrain(field.lungs, consolidation | faint | outside, field, hu)
    np.testing.assert_array_equal(kept, consolidation)
    assert (lungs >= kept).all() and not (lungs & ~field.body).any()


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_segment_accepts_a_2d_8_bit_windowed_slice(tiny_weights, tmp_path, mode):
    """The MedSeg format: an 8-bit lung-windowed screenshot (here turned to display orientation)."""
    import slicerio
    from PIL import Image

    grey = np.asarray(Image.open(medseg_dir() / "images" / "10.jpg").convert("L")).T
    path = tmp_path / "slice.png"
    Image.fromarray(np.ascontiguousarray(grey)).convert(mode).save(path)
    out = tmp_path / "out"
    args = ["--progress", "none", "covid", "segment", "--volume", str(path), "--weights", str(tiny_weights)]
    assert lungai_main([*args, "--out", str(out)]) == 0
    segmentation = slicerio.read_segmentation(str(out / "segmentation.seg.nrrd"))
    assert segmentation["voxels"].shape[:3] in ((grey.shape[1], grey.shape[0], 1), (1, *grey.shape))
    rows = list(csv.DictReader(open(out / "burden.csv")))
    assert [r["Lung volume (mL)"] for r in rows] == ["", "", ""]  # a snapshot has no pixel size
    assert 0.0 <= float(rows[2]["Infected (%)"]) <= 100.0
