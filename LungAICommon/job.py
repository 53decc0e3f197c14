"""One run of the ``lungai`` command line for a Slicer module, without Qt: the object all four widgets use.

A :class:`LungAIJob` does, in order: the dependency gate; the export of the inputs into a new temporary
folder (through the module's ``prepare``, which writes files with lungai's writers and never touches the
user's nodes or their storage); the start of ``PythonSlicer -m lungai --progress lines ...`` through a
process adapter (:class:`LungAICommon.process.QtProcess` in Slicer); the progress lines of
:mod:`lungai.progress`; Cancel of the whole process tree; the import of the results on success (through the
module's ``import_results``); the removal of the temporary folder. It reports through exactly one of
``on_finished(result)`` or ``on_error(message)`` per started job, plus ``on_progress(fraction, message)``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from lungai.progress import parse_line

EXIT_CANCELLED = (130, 143)  # SIGINT / SIGTERM conventions of the lungai command line
_STDERR_TAIL = 20  # lines of stderr kept for the error message


def python_launcher(slicer_home: str | Path) -> str:
    """Slicer's ``PythonSlicer`` (it sets up Slicer's library paths before starting Python)."""
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    return str(Path(slicer_home) / "bin" / name)


def lungai_parent_dir() -> str:
    """The folder that holds the ``lungai`` package (Slicer's scripted-modules folder once installed)."""
    import lungai

    return str(Path(lungai.__file__).resolve().parent.parent)


def error_message(stderr: str, exit_code: int) -> str:
    """The backend's own one-line error (``lungai: error: ...``), else the last stderr line, else the code."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        for prefix in ("lungai: error:", "lungai:"):
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
    return lines[-1] if lines else f"The lungai command failed (exit code {exit_code})."


class LungAIJob:
    """``prepare(work_dir) -> lungai arguments`` and ``import_results(work_dir) -> result`` are the module's part.

    ``dependency_gate() -> str | None`` returns why the run cannot start (None: ready); ``process_factory()``
    returns a process adapter (default: the Qt one); ``program`` defaults to Slicer's PythonSlicer.
    """

    def __init__(
        self,
        name: str,
        prepare: Callable[[Path], Sequence[str]],
        import_results: Callable[[Path], object],
        on_progress: Callable[[float, str], None],
        on_finished: Callable[[object], None],
        on_error: Callable[[str], None],
        *,
        dependency_gate: Callable[[], str | None] | None = None,
        process_factory: Callable[[], object] | None = None,
        program: str | None = None,
    ) -> None:
        self.name = name
        self._prepare = prepare
        self._import_results = import_results
        self._on_progress = on_progress
        self._on_finished = on_finished
        self._on_error = on_error
        self._dependency_gate = dependency_gate
        self._process_factory = process_factory
        self._program = program
        self.process = None
        self.work_dir: Path | None = None
        self.state = "new"  # new, running, cancelling, succeeded, failed, cancelled
        self.exit_code: int | None = None  # of the process, once it ended
        self._stdout = ""
        self._stderr: list[str] = []

    @property
    def running(self) -> bool:
        return self.state in ("running", "cancelling")

    def start(self) -> bool:
        """Start the run; False (after ``on_error``) when it could not start."""
        if self.state != "new":
            raise RuntimeError("a LungAIJob runs once; make a new one")
        self.state = "running"
        try:
            reason = self._dependency_gate() if self._dependency_gate is not None else None
            if reason:
                return self._fail(reason)
            self.work_dir = Path(tempfile.mkdtemp(prefix=f"lungai-{self.name}-"))
            arguments = ["-m", "lungai", "--progress", "lines", *self._prepare(self.work_dir)]
        except Exception as error:  # noqa: BLE001 - bad input: one clear message, nothing started
            return self._fail(f"{self.name} could not start: {error}")
        self._program = self._program or self._default_program()
        self.process = self._process_factory() if self._process_factory else self._default_process()
        environment = {
            "PYTHONPATH": os.pathsep.join(filter(None, [lungai_parent_dir(), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }
        self.process.start(
            self._program,
            arguments,
            environment,
            self._read_stdout,
            self._read_stderr,
            self._exited,
            self._start_failed,
        )
        return self.running

    @staticmethod
    def _default_process():
        from LungAICommon.process import QtProcess

        return QtProcess()

    @staticmethod
    def _default_program() -> str:
        import slicer

        return python_launcher(slicer.app.slicerHome)

    def cancel(self) -> None:
        """Stop the run: the whole process tree ends, nothing is imported, the temporary folder goes."""
        if self.state == "running" and self.process is not None:
            self.state = "cancelling"
            self.process.cancel()

    def wait(self, timeout_seconds: float = 600.0) -> bool:
        """Block (running Qt events) until the job ended; for scripts and self-tests."""
        if self.process is not None:
            self.process.wait(timeout_seconds)
        return not self.running

    def _read_stdout(self, text: str) -> None:
        self._stdout += text
        *lines, self._stdout = self._stdout.split("\n")
        for line in lines:
            self._progress_line(line)

    def _progress_line(self, line: str) -> None:
        parsed = parse_line(line)
        if parsed is not None and self.state == "running":
            self._on_progress(*parsed)

    def _read_stderr(self, text: str) -> None:
        self._stderr = (self._stderr + text.splitlines())[-_STDERR_TAIL:]

    def _start_failed(self, message: str) -> None:
        self._fail(f"Could not start {self._program}: {message}")

    def _exited(self, exit_code: int, crashed: bool) -> None:
        self.exit_code = exit_code
        if self._stdout:
            self._progress_line(self._stdout)
            self._stdout = ""
        if self.state == "cancelling" or exit_code in EXIT_CANCELLED:
            self._end("cancelled")
            self._on_error(f"{self.name} was cancelled; nothing was added to the scene.")
            return
        if crashed or exit_code != 0:
            self._fail(error_message("\n".join(self._stderr), exit_code))
            return
        try:
            result = self._import_results(self.work_dir)
        except Exception as error:  # noqa: BLE001 - reported to the user, never raised into Qt
            self._fail(f"Could not import the {self.name} results: {error}")
            return
        self._end("succeeded")
        self._on_finished(result)

    def _fail(self, message: str) -> bool:
        self._end("failed")
        self._on_error(message)
        return False

    def _end(self, state: str) -> None:
        self.state = state
        if self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        self.process = None


def run_blocking(job: LungAIJob, timeout_seconds: float = 600.0) -> LungAIJob:
    """Start ``job`` and wait for it (self-tests): the job's callbacks have run when this returns."""
    if job.start() and not job.wait(timeout_seconds):
        job.cancel()
        job.wait(30.0)
    return job
