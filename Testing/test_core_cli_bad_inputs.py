"""Every command, given a file of the wrong kind for each of its path arguments, exits 2 with one line that says
what is wrong and what to do, and never advises unsafe loading (pickles, ``weights_only=False``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lungai import cli
from lungai.io import write_segmentation, write_table_csv, write_volume
from lungai.registry import resources_dir
from lungai.ugsnet.sample import crop_volume, load_sample

SAMPLES = resources_dir() / "SampleData"
VALID = {  # a valid value of each kind, built once in the `inputs` fixture
    "volume": "chest_ct.nrrd",
    "nodule_volume": "nodule_ct.nrrd",
    "points": "points.csv",
    "npz": str(SAMPLES / "ugsnet" / "lidc_multireader_sample.npz"),
    "medseg": str(SAMPLES / "covid"),
    "iqoth": str(SAMPLES / "nlb" / "iqoth_nccd_sample"),
    "scores": "scores",
    "annotated": "annotated.csv",
    "labels": "chest_lungs.seg.nrrd",
}
WRONG = {  # a file of the wrong kind for each kind of argument
    "volume": "model.pt",
    "weights": "chest_lungs.seg.nrrd",
    "npz": "chest_ct.nrrd",
    "folder": "annotated.csv",
    "csv": "chest_ct.nrrd",
    "labels": "annotated.csv",
    "out_folder": "annotated.csv",
    "out_file": "scores",
}
# command -> (valid arguments, {path argument: kind of wrong file})
COMMANDS = {
    "ugsnet train": (["--data", "npz", "--out", "OUT", "--epochs", "1"], {"--data": "npz", "--out": "out_folder"}),
    "ugsnet evaluate": (
        ["--data", "npz", "--out", "OUT"],
        {"--data": "npz", "--weights": "weights", "--out": "out_folder"},
    ),
    "ugsnet segment": (
        ["--volume", "nodule_volume", "--points", "points", "--out", "OUT"],
        {"--volume": "volume", "--points": "csv", "--weights": "weights", "--out": "out_folder"},
    ),
    "covid train": (
        ["--data", "medseg", "--out", "OUT", "--size", "32", "--lung-size", "32", "--lung-epochs", "1"]
        + ["--finetune-epochs", "1"],
        {"--data": "folder", "--pseudo": "folder", "--lung-weights": "weights", "--out": "out_folder"},
    ),
    "covid evaluate": (
        ["--data", "medseg", "--out", "OUT"],
        {"--data": "folder", "--weights": "weights", "--out": "out_folder"},
    ),
    "covid segment": (
        ["--volume", "volume", "--out", "OUT"],
        {"--volume": "volume", "--weights": "weights", "--out": "out_folder"},
    ),
    "nlb train": (
        ["--iqoth", "iqoth", "--lidc", "npz", "--out", "OUT", "--epochs", "1"],
        {"--iqoth": "folder", "--lidc": "npz", "--out": "out_folder"},
    ),
    "nlb evaluate": (
        ["--data", "iqoth", "--out", "OUT"],
        {"--data": "folder", "--weights": "weights", "--out": "out_folder"},
    ),
    "nlb classify": (
        ["--volume", "volume", "--out", "OUT"],
        {"--volume": "volume", "--weights": "weights", "--out": "out_folder"},
    ),
    "al score": (
        ["--volume", "volume", "--out", "OUT", "--samples", "2"],
        {"--volume": "volume", "--weights": "weights", "--out": "out_folder"},
    ),
    "al select": (
        ["--scores", "scores", "--budget", "2", "--out", "OUT.csv"],
        {"--scores": "folder", "--annotated": "csv", "--out": "out_file"},
    ),
    "al retrain": (
        ["--volume", "volume", "--labels", "labels", "--annotated", "annotated", "--out", "OUT.pt", "--steps", "1"],
        {"--volume": "volume", "--labels": "labels", "--annotated": "csv", "--weights": "weights", "--out": "out_file"},
    ),
    "al simulate": (["--out", "OUT", "--iterations", "1"], {"--pool-folder": "folder", "--out": "out_folder"}),
    "al train": (["--out", "OUT.pt", "--steps", "1"], {"--pool-folder": "folder", "--out": "out_file"}),
    "demo": (["--out", "OUT"], {"--out": "out_folder"}),
}
CASES = [(command, option) for command, (_, wrong) in COMMANDS.items() for option in wrong]
ADVICE = ("give", "use", "choose", "check", "expected", "write", "run", "pass", "resample", "place", "rename")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, chest_ct, chest_lungs) -> Path:
    folder = tmp_path_factory.mktemp("inputs")
    write_volume(chest_ct, folder / "chest_ct.nrrd")
    write_segmentation(folder / "chest_lungs.seg.nrrd", *chest_lungs)
    nodule, point = crop_volume(load_sample(), 5, slices=3)
    write_volume(nodule, folder / "nodule_ct.nrrd")
    (folder / "points.csv").write_text("r,a,s\n{:.2f},{:.2f},{:.2f}\n".format(*point))
    write_table_csv(folder / "annotated.csv", [{"volume": "chest_ct", "slice": 3}])
    (folder / "scores").mkdir()
    write_table_csv(
        folder / "scores" / "profiles.csv", [{"volume": "chest_ct", "slice": k, "uncertainty": 0.1} for k in range(34)]
    )
    write_table_csv(
        folder / "scores" / "volumes.csv", [{"volume": "chest_ct", "slices": 34, "volume_uncertainty": 0.1}]
    )
    shutil.copy(resources_dir() / "Models" / "al_unet_lungs.pt", folder / "model.pt")
    return folder


def _resolve(value: str, inputs: Path, out: Path) -> str:
    if value.startswith("OUT"):
        return str(out / value.lower())
    if value in VALID:
        return str(inputs / VALID[value]) if not Path(VALID[value]).is_absolute() else VALID[value]
    return value


@pytest.mark.parametrize("command, option", CASES, ids=[f"{c}-{o}" for c, o in CASES])
def test_wrong_kind_of_file_is_one_clear_line(command, option, inputs, tmp_path, capsys):
    valid, wrong = COMMANDS[command]
    arguments = [_resolve(v, inputs, tmp_path) for v in valid]
    bad = str(inputs / WRONG[wrong[option]])
    if option in arguments:
        index = arguments.index(option) + 1
        arguments[index] = bad
        while index + 1 < len(arguments) and not arguments[index + 1].startswith("--"):  # nargs="+" options
            del arguments[index + 1]
    else:
        arguments += [option, bad]
    before = set(tmp_path.iterdir())
    code = cli.main(["--progress", "none", "--device", "cpu", *command.split(), *arguments])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2, error
    assert len(error) == 1 and error[0].startswith("lungai: error: "), error
    message = error[0].lower()
    assert Path(bad).name.lower() in message, message  # names the file
    assert any(word in message for word in ADVICE), message  # says what to do
    for unsafe in ("weights_only", "pickle", "trust the source"):
        assert unsafe not in message, message
    assert set(tmp_path.iterdir()) == before  # and nothing was written


PATH_OPTIONS = {"volume", "points", "weights", "data", "scores", "annotated", "labels", "iqoth", "lidc", "out"}
PATH_OPTIONS |= {"pool_folder", "lung_weights", "cv_metrics", "pseudo"}


def test_every_command_and_path_option_is_covered():
    """A new command or path option shows up here until it has its wrong-kind case above."""
    import argparse

    def leaves(parser, prefix=()):
        children = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not children:
            yield " ".join(prefix), parser
        for action in children:
            for name, child in action.choices.items():
                yield from leaves(child, (*prefix, name))

    found = {}
    for command, parser in leaves(cli.build_parser()):
        options = [a.option_strings[0] for a in parser._actions if a.dest in PATH_OPTIONS and a.option_strings]
        found[command] = sorted(options)
    expected = {command: sorted(wrong) for command, (_, wrong) in COMMANDS.items()}
    expected["info"] = []
    assert found == expected
