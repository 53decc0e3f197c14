"""LungAICommon.job and LungAICommon.dependencies without Qt: the job's bookkeeping with a scripted process
adapter (the real Qt adapter runs in test_slicer_pythonqt.py), and the dependency check's decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from LungAICommon import dependencies
from LungAICommon.job import LungAIJob, error_message


class ScriptedProcess:
    """A process adapter that replays stdout chunks and an exit code when told to."""

    def __init__(self):
        self.started = None
        self.cancelled = False

    def start(self, program, arguments, environment, on_stdout, on_stderr, on_exit, on_start_failure):
        self.started = (program, list(arguments), dict(environment))
        self.callbacks = on_stdout, on_stderr, on_exit, on_start_failure

    def cancel(self):
        self.cancelled = True

    def wait(self, timeout):
        return True


class Recorder:
    def __init__(self):
        self.events = []

    def progress(self, fraction, message):
        self.events.append(("progress", fraction, message))

    def finished(self, result):
        self.events.append(("finished", result))

    def error(self, message):
        self.events.append(("error", message))


def make_job(recorder, process, prepare=None, importer=None, gate=None):
    def default_prepare(work_dir: Path):
        (work_dir / "input.nrrd").write_text("x")
        return ["covid", "segment", "--volume", str(work_dir / "input.nrrd")]

    return LungAIJob(
        "COVID",
        prepare or default_prepare,
        importer or (lambda work_dir: sorted(p.name for p in work_dir.iterdir())),
        recorder.progress,
        recorder.finished,
        recorder.error,
        dependency_gate=gate,
        process_factory=lambda: process,
        program="/opt/Slicer/bin/PythonSlicer",
    )


def test_success_parses_split_progress_lines_imports_and_cleans_up():
    recorder, process = Recorder(), ScriptedProcess()
    job = make_job(recorder, process)
    assert job.start()
    program, arguments, environment = process.started
    assert arguments[:4] == ["-m", "lungai", "--progress", "lines"] and arguments[4:6] == ["covid", "segment"]
    assert "PYTHONPATH" in environment
    on_stdout, on_stderr, on_exit, _ = process.callbacks
    on_stdout("noise\nLUNGAI_PROGRESS 0.2500 slice 1 of")
    on_stdout(" 4\nLUNGAI_PROGRESS 1.0000 done")  # the last line has no newline: read at exit
    work_dir = job.work_dir
    on_exit(0, False)
    assert recorder.events == [
        ("progress", 0.25, "slice 1 of 4"),
        ("progress", 1.0, "done"),
        ("finished", ["input.nrrd"]),
    ]
    assert job.state == "succeeded" and not work_dir.exists()


def test_failure_reports_the_backend_error_line_once():
    recorder, process = Recorder(), ScriptedProcess()
    job = make_job(recorder, process)
    job.start()
    _, on_stderr, on_exit, _ = process.callbacks
    on_stderr("Traceback ...\nlungai: error: /x.nrrd does not exist; give an existing volume\n")
    on_exit(2, False)
    assert recorder.events == [("error", "/x.nrrd does not exist; give an existing volume")]
    assert job.state == "failed" and not job.work_dir.exists()


def test_cancel_reaches_the_process_and_ends_with_one_cancel_message():
    recorder, process = Recorder(), ScriptedProcess()
    job = make_job(recorder, process)
    job.start()
    on_stdout, _, on_exit, _ = process.callbacks
    job.cancel()
    assert process.cancelled and job.state == "cancelling"
    on_stdout("LUNGAI_PROGRESS 0.5000 late\n")  # progress after Cancel is not shown
    on_exit(143, False)
    assert recorder.events == [("error", "COVID was cancelled; nothing was added to the scene.")]
    assert job.state == "cancelled"


def test_start_failure_gate_and_bad_input_each_give_one_error():
    recorder, process = Recorder(), ScriptedProcess()
    job = make_job(recorder, process)
    job.start()
    process.callbacks[3]("execvp: No such file or directory")
    assert recorder.events == [
        ("error", "Could not start /opt/Slicer/bin/PythonSlicer: execvp: No such file or directory")
    ]

    recorder = Recorder()
    gated = make_job(recorder, ScriptedProcess(), gate=lambda: "SlicerLungAI needs monai >= 1.4.")
    assert not gated.start() and recorder.events == [("error", "SlicerLungAI needs monai >= 1.4.")]
    assert gated.work_dir is None

    def bad_prepare(work_dir):
        raise ValueError("choose a CT volume first")

    recorder = Recorder()
    bad = make_job(recorder, ScriptedProcess(), prepare=bad_prepare)
    assert not bad.start()
    assert recorder.events == [("error", "COVID could not start: choose a CT volume first")]
    assert not bad.work_dir.exists()


def test_import_error_is_reported_and_the_job_runs_once():
    recorder, process = Recorder(), ScriptedProcess()

    def importer(work_dir):
        raise OSError("segmentation.seg.nrrd is missing")

    job = make_job(recorder, process, importer=importer)
    job.start()
    process.callbacks[2](0, False)
    assert recorder.events == [("error", "Could not import the COVID results: segmentation.seg.nrrd is missing")]
    with pytest.raises(RuntimeError):
        job.start()


def test_error_message_falls_back_to_the_last_line_or_the_exit_code():
    assert error_message("warning\nSegmentation fault\n", -11) == "Segmentation fault"
    assert error_message("lungai: internal error: KeyError: 'x' (rerun with --debug)", 1).startswith("internal error")
    assert error_message("", 1) == "The lungai command failed (exit code 1)."


def test_version_checks_and_pip_arguments_keep_torch(tmp_path):
    versions = {"monai": "1.3.2", "skimage": None, "tqdm": "4.67.1", "SimpleITK": "0"}
    unmet = dependencies.unmet_requirements(
        [r for r in dependencies.REQUIREMENTS if r.module in versions], lambda r: versions[r.module]
    )
    assert [r.module for r in unmet] == ["monai", "skimage"]  # too old, missing; "0" = built from source
    arguments = dependencies.pip_arguments(unmet, tmp_path / "constraints.txt", "2.13.0+cpu")
    assert arguments[:2] == ["-c", str(tmp_path / "constraints.txt")]
    assert (tmp_path / "constraints.txt").read_text() == "torch==2.13.0+cpu\n"
    assert all("==" in pin for pin in arguments[2:]) and not any(pin.startswith("torch") for pin in arguments[2:])
    assert dependencies.version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert dependencies.version_tuple("1.5.2rc1") == (1, 5, 2)


def test_the_test_environment_meets_every_requirement():
    assert dependencies.missing_description() is None


class FakeSlicer:
    """What ensure_dependencies uses of Slicer: testing mode, the confirmation dialog and pip_install."""

    def __init__(self, testing=False, agree=True, pip_error=None):
        self.calls = []
        self._testing, self._agree, self._pip_error = testing, agree, pip_error
        self.app = type("App", (), {"testingEnabled": lambda _: self._testing})()
        self.util = type("Util", (), {})()
        self.util.confirmOkCancelDisplay = lambda text: self.calls.append(("ask", text)) or self._agree
        self.util.pip_install = self._pip_install

    def _pip_install(self, arguments):
        self.calls.append(("pip", list(arguments), Path(arguments[1]).read_text()))
        if self._pip_error is not None:
            raise self._pip_error


@pytest.fixture
def monai_missing(monkeypatch):
    state = {"installed": False}
    monai = next(r for r in dependencies.REQUIREMENTS if r.module == "monai")
    monkeypatch.setattr(dependencies, "unmet_requirements", lambda *a, **k: [] if state["installed"] else [monai])
    monkeypatch.setattr(dependencies, "torch_version", lambda: "2.13.0+cpu")
    return state


def _with_slicer(monkeypatch, fake):
    import slicer

    monkeypatch.setattr(slicer, "app", fake.app, raising=False)
    monkeypatch.setattr(slicer, "util", fake.util)


def test_testing_mode_never_installs_or_asks(monkeypatch, monai_missing):
    fake = FakeSlicer(testing=True)
    _with_slicer(monkeypatch, fake)
    reason = dependencies.ensure_dependencies()
    assert "monai >= 1.4" in reason and "never install" in reason
    assert fake.calls == []


def test_declined_install_says_how_to_continue(monkeypatch, monai_missing):
    fake = FakeSlicer(agree=False)
    _with_slicer(monkeypatch, fake)
    assert "Press Apply again" in dependencies.ensure_dependencies()
    assert [c[0] for c in fake.calls] == ["ask"]


def test_install_pins_versions_and_keeps_torch(monkeypatch, monai_missing):
    fake = FakeSlicer()
    _with_slicer(monkeypatch, fake)
    fake.util.pip_install = lambda arguments: (fake._pip_install(arguments), monai_missing.update(installed=True))
    assert dependencies.ensure_dependencies() is None
    (_, arguments, constraints) = fake.calls[-1]
    assert arguments[0] == "-c" and arguments[2:] == ["monai==1.5.2"] and constraints == "torch==2.13.0+cpu\n"


def test_failed_pip_install_becomes_a_clear_message(monkeypatch, monai_missing):
    import subprocess

    fake = FakeSlicer(pip_error=subprocess.CalledProcessError(1, ["pip", "install"]))
    _with_slicer(monkeypatch, fake)
    reason = dependencies.ensure_dependencies()
    assert reason.startswith("Installing monai failed (CalledProcessError") and "press Apply again" in reason
