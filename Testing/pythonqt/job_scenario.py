"""One LungAIJob run inside Slicer's real PythonQt (run by Testing/test_slicer_pythonqt.py through run-pythonqt).

The scenario comes from ``LUNGAI_TEST_SCENARIO``; everything observed (callbacks in order, process ids, files
left) is written as JSON to ``LUNGAI_TEST_VERDICT`` for pytest to judge, because the PythonQt host always exits 0.
"""

import gc
import json
import os
import traceback
import weakref
from pathlib import Path

import qt

from LungAICommon import proctree
from LungAICommon.job import LungAIJob
from LungAICommon.process import QtProcess

scenario = os.environ["LUNGAI_TEST_SCENARIO"]
out_dir = Path(os.environ["LUNGAI_TEST_OUT"])
volume = os.environ.get("LUNGAI_TEST_VOLUME", "")
verdict = {"events": [], "scenario": scenario}
holder = {}


def arguments(work_dir):
    verdict["work_dir"] = str(work_dir)
    if scenario == "info":
        return ["info"]
    if scenario == "failing":
        return ["covid", "segment", "--volume", str(work_dir / "missing.nrrd"), "--out", str(out_dir)]
    if scenario == "cancel":  # MC-dropout scoring of the chest CT: long enough to cancel at its first progress
        return ["--device", "cpu", "al", "score", "--volume", volume, "--samples", "20", "--out", str(out_dir)]
    points = os.environ["LUNGAI_TEST_POINTS"]
    return ["--device", "cpu", "ugsnet", "segment", "--volume", volume, "--points", points, "--out", str(out_dir)]


def import_results(work_dir):
    if scenario == "info":
        return {"files": []}
    from lungai.io import read_segmentation, read_table_csv

    labelmap, specs = read_segmentation(out_dir / "nodules.seg.nrrd")
    rows = read_table_csv(out_dir / "nodules.csv")
    return {"segments": [spec.name for spec in specs], "shape": list(labelmap.array.shape), "rows": len(rows)}


def on_progress(fraction, message):
    verdict["events"].append(["progress", fraction, message])
    if scenario in ("cancel", "stubborn") and "cancel_pids" not in verdict:
        job = holder["job"]
        verdict["cancel_pids"] = [job.process.pid, *proctree.descendants(job.process.pid)]
        job.cancel()


def on_finished(result):
    verdict["events"].append(["finished", result])


def on_error(message):
    verdict["events"].append(["error", message])


try:
    # a long grace period: on a loaded machine the backend may need several seconds to reach its cancel check,
    # and this test must see that check end the run (the kill after the grace period is the fallback)
    stubborn = scenario == "stubborn"  # a program whose whole tree ignores SIGTERM: only the kill can stop it
    job = LungAIJob(
        "test",
        arguments,
        import_results,
        on_progress,
        on_finished,
        on_error,
        process_factory=lambda: QtProcess(1.0 if stubborn else 60.0),
        program=os.environ["LUNGAI_TEST_PROGRAM"] if stubborn else None,
    )
    holder["job"] = job
    started = job.start()
    process_ref = weakref.ref(job.process) if job.process is not None else None
    verdict["started"] = started
    verdict["waited"] = job.wait(float(os.environ.get("LUNGAI_TEST_TIMEOUT", "1200")))
    loop = qt.QEventLoop()  # late duplicate callbacks would arrive here
    qt.QTimer.singleShot(500, loop.quit)
    loop.exec_()
    verdict["state"] = job.state
    verdict["exit_code"] = job.exit_code
    verdict["work_dir_left"] = Path(verdict.get("work_dir", "/nonexistent")).exists()
    verdict["out_files"] = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*")) if out_dir.exists() else []
    del job, holder["job"]
    gc.collect()
    verdict["process_released"] = process_ref is None or process_ref() is None
except Exception:  # noqa: BLE001 - reported to pytest through the verdict
    verdict["exception"] = traceback.format_exc()
Path(os.environ["LUNGAI_TEST_VERDICT"]).write_text(json.dumps(verdict, indent=1))
