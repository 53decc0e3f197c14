"""LungAICommon's job and process adapter under Slicer's real Python-Qt layer (../shared/tools/slicer-qt).

Each test runs Testing/pythonqt/job_scenario.py inside PythonQt (``run-pythonqt``) with ``slicer.app.slicerHome``
at a ``make-pythonslicer`` layout, so the job starts ``bin/PythonSlicer`` (CTK's real launcher, which runs the
real Python as a child) exactly as an installed Slicer does, and reads what the scenario saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _find_tool() -> Path:
    """``LUNGAI_SLICER_QT``, else ``tools/slicer-qt`` beside the shared data folder (``LUNGAI_SHARED_DATA``), else
    ``shared/tools/slicer-qt`` beside the repository or one of its parents."""
    if "LUNGAI_SLICER_QT" in os.environ:
        return Path(os.environ["LUNGAI_SLICER_QT"])
    candidates = [folder / "shared" / "tools" / "slicer-qt" for folder in REPO.parents]
    if "LUNGAI_SHARED_DATA" in os.environ:
        candidates.insert(0, Path(os.environ["LUNGAI_SHARED_DATA"]).parent / "tools" / "slicer-qt")
    return next((c for c in candidates if (c / "run-pythonqt").is_file()), candidates[0])


TOOL = _find_tool()

pytestmark = pytest.mark.skipif(
    not (TOOL / "run-pythonqt").is_file(), reason=f"Slicer's Python-Qt tool not found at {TOOL} (LUNGAI_SLICER_QT)"
)


@pytest.fixture(scope="module")
def slicer_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("slicer-home")
    subprocess.run([str(TOOL / "make-pythonslicer"), str(home), sys.executable], check=True, capture_output=True)
    return home


@pytest.fixture(scope="module")
def chest_ct_file(tmp_path_factory):
    """The bundled chest CT (34 slices of 128 x 128) as a file, as the job's export would write it."""
    from lungai.io import write_volume
    from lungai.sample_data import chest_ct

    return write_volume(chest_ct(), tmp_path_factory.mktemp("ct") / "chest.nrrd")


@pytest.fixture(scope="module")
def nodule_files(tmp_path_factory):
    """A bundled LIDC-IDRI nodule (3 slices around it) and its point, as the UGS-Net module exports them."""
    from lungai.io import write_volume
    from lungai.ugsnet.sample import crop_volume, load_sample

    folder = tmp_path_factory.mktemp("nodule")
    volume, point = crop_volume(load_sample(), 5, slices=3)
    (folder / "points.csv").write_text("r,a,s\n" + ",".join(f"{v:.4f}" for v in point) + "\n")
    return write_volume(volume, folder / "ct.nrrd"), folder / "points.csv", volume.shape


def run_scenario(
    scenario: str,
    tmp_path: Path,
    slicer_home: Path,
    volume: Path | str = "",
    program: Path | str = "",
    points: Path | str = "",
) -> dict:
    verdict_path = tmp_path / "verdict.json"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(REPO), str(REPO / "Testing" / "pythonqt"), sysconfig.get_paths()["purelib"]]
        ),
        "LUNGAI_TEST_SCENARIO": scenario,
        "LUNGAI_TEST_VERDICT": str(verdict_path),
        "LUNGAI_TEST_OUT": str(tmp_path / "out"),
        "LUNGAI_TEST_VOLUME": str(volume),
        "LUNGAI_TEST_SLICER_HOME": str(slicer_home),
        "LUNGAI_TEST_PROGRAM": str(program),
        "LUNGAI_TEST_POINTS": str(points),
    }
    host = subprocess.run(
        [str(TOOL / "run-pythonqt"), str(REPO / "Testing" / "pythonqt" / "job_scenario.py")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert verdict_path.is_file(), f"the PythonQt host wrote no verdict:\n{host.stdout}\n{host.stderr}"
    verdict = json.loads(verdict_path.read_text())
    assert "exception" not in verdict, verdict["exception"]
    return verdict


def kinds(verdict: dict) -> list[str]:
    return [event[0] for event in verdict["events"]]


def test_info_finishes_once_and_releases_the_process(tmp_path, slicer_home):
    verdict = run_scenario("info", tmp_path, slicer_home)
    assert kinds(verdict) == ["finished"], verdict["events"]
    assert verdict["state"] == "succeeded"
    assert verdict["process_released"], "the QProcess adapter is kept alive by a reference cycle"
    assert not verdict["work_dir_left"]


def test_module_command_reports_progress_and_imports_results(tmp_path, slicer_home, nodule_files):
    volume, points, shape = nodule_files
    verdict = run_scenario("segment", tmp_path, slicer_home, volume, points=points)
    events = kinds(verdict)
    assert events.count("finished") == 1 and "error" not in events, verdict["events"]
    assert events[-1] == "finished" and events.count("progress") >= 2
    fractions = [event[1] for event in verdict["events"] if event[0] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    result = verdict["events"][-1][1]
    assert result["segments"] == ["Nodule 1", "Nodule 1 high confidence", "Nodule 1 low confidence"]
    assert result["shape"][-3:] == list(shape)
    assert result["rows"] == 1
    assert not verdict["work_dir_left"]


def test_cancel_at_first_progress_stops_the_whole_tree(tmp_path, slicer_home, chest_ct_file):
    verdict = run_scenario("cancel", tmp_path, slicer_home, chest_ct_file)
    assert kinds(verdict)[-1] == "error" and kinds(verdict).count("error") == 1, verdict["events"]
    assert "finished" not in kinds(verdict)
    assert "cancelled" in verdict["events"][-1][1]
    assert verdict["state"] == "cancelled"
    # the backend's SIGTERM handler ran (a clean exit through its cancel path), it was not killed
    assert verdict["exit_code"] in (2, 143), verdict["exit_code"]
    launcher, *below = verdict["cancel_pids"]
    assert below, "PythonSlicer started no child: the test does not exercise the launcher's process tree"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in verdict["cancel_pids"]):
        time.sleep(0.1)
    assert [pid for pid in verdict["cancel_pids"] if _alive(pid)] == []
    assert verdict["out_files"] == [], "a cancelled run left output files"
    assert not verdict["work_dir_left"]


def test_cancel_kills_a_tree_that_ignores_sigterm_after_the_grace_period(tmp_path, slicer_home):
    program = tmp_path / "stubborn.sh"
    program.write_text("#!/bin/sh\ntrap '' TERM\nsleep 120 &\necho 'LUNGAI_PROGRESS 0.1000 working'\nwait\n")
    program.chmod(0o755)
    verdict = run_scenario("stubborn", tmp_path, slicer_home, program=program)
    assert kinds(verdict) == ["progress", "error"] and verdict["state"] == "cancelled", verdict["events"]
    shell, *below = verdict["cancel_pids"]
    assert below, "the shell started no child (sleep)"
    assert [pid for pid in verdict["cancel_pids"] if _alive(pid)] == []


def test_missing_executable_gives_one_clear_error(tmp_path):
    verdict = run_scenario("info", tmp_path, tmp_path / "no-slicer-here")
    assert kinds(verdict) == ["error"], verdict["events"]
    assert "Could not start" in verdict["events"][0][1] and "PythonSlicer" in verdict["events"][0][1]
    assert verdict["state"] == "failed"


def test_failing_command_gives_one_error_with_the_backend_message(tmp_path, slicer_home):
    verdict = run_scenario("failing", tmp_path, slicer_home)
    assert kinds(verdict) == ["error"], verdict["events"]
    assert "missing.nrrd" in verdict["events"][0][1]
    assert verdict["state"] == "failed"


def _alive(pid: int) -> bool:
    sys.path.insert(0, str(REPO))
    from LungAICommon.proctree import is_alive

    return is_alive(pid)
