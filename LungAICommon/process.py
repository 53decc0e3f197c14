"""Run the ``lungai`` command line in a subprocess so the Slicer GUI stays responsive (widgets only).

The subprocess prints progress as ``LUNGAI_PROGRESS <fraction> <message>`` lines
(:mod:`lungai.progress`); this runner turns them into callbacks and kills the process on cancel.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import qt
import slicer

from lungai.progress import parse_line


def python_executable() -> str:
    """Slicer's own Python launcher (PythonSlicer), which sets up Slicer's library paths."""
    name = "PythonSlicer.exe" if os.name == "nt" else "PythonSlicer"
    candidate = Path(slicer.app.slicerHome) / "bin" / name
    return str(candidate) if candidate.exists() else sys.executable


class LungAIProcess:
    """One ``python -m lungai --progress lines ...`` run with progress and cancel."""

    def __init__(
        self,
        arguments: Sequence[str],
        on_progress: Callable[[float, str], None],
        on_finished: Callable[[int, str], None],
    ) -> None:
        self._on_progress = on_progress
        self._on_finished = on_finished
        self._stdout = ""
        self._stderr = ""
        self.cancelled = False
        self.process = qt.QProcess()
        environment = qt.QProcessEnvironment.systemEnvironment()
        package_parent = str(Path(__file__).resolve().parent.parent)  # the folder holding lungai/
        environment.insert(
            "PYTHONPATH", os.pathsep.join(filter(None, [package_parent, environment.value("PYTHONPATH")]))
        )
        self.process.setProcessEnvironment(environment)
        self.process.connect("readyReadStandardOutput()", self._read_stdout)
        self.process.connect("readyReadStandardError()", self._read_stderr)
        self.process.connect("finished(int,QProcess::ExitStatus)", self._finished)
        self.process.start(python_executable(), ["-m", "lungai", "--progress", "lines", *arguments])

    def _read_stdout(self) -> None:
        self._stdout += bytes(self.process.readAllStandardOutput()).decode(errors="replace")
        *lines, self._stdout = self._stdout.split("\n")
        for line in lines:
            parsed = parse_line(line)
            if parsed is not None:
                self._on_progress(*parsed)

    def _read_stderr(self) -> None:
        self._stderr += bytes(self.process.readAllStandardError()).decode(errors="replace")

    def _finished(self, exit_code: int, status) -> None:
        self._read_stderr()
        message = (
            "Cancelled." if self.cancelled else self._stderr.strip().splitlines()[-1] if self._stderr.strip() else ""
        )
        self._on_finished(-1 if self.cancelled else exit_code, message)

    @property
    def running(self) -> bool:
        return self.process.state() != qt.QProcess.NotRunning

    def cancel(self) -> None:
        """Stop the run; the lungai command writes nothing once cancelled, so the scene is unchanged."""
        if self.running:
            self.cancelled = True
            self.process.kill()
