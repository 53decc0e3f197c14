"""The thin Qt part of a run: one ``QProcess`` behind the small interface that :class:`LungAICommon.job.LungAIJob`
drives (``start``, ``pid``, ``running``, ``cancel``, ``wait``).

Written for Slicer's PythonQt, not PyQt: Qt byte arrays become ``bytes`` through ``.data()`` (PythonQt
wrappers have no buffer protocol), a failed start arrives through ``errorOccurred`` (``finished`` never
comes then), and the output still buffered when the process ends is read in the finish handler. Signal
handlers hold the adapter only weakly and are disconnected at the end, so no reference cycle runs through
Qt. Cancel stops the whole process tree (:mod:`LungAICommon.proctree`): the ``lungai`` process first gets
SIGTERM and cancels cleanly; whatever still runs after a grace period is killed.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence

import qt

from LungAICommon import proctree

_SIGNALS = (
    ("readyReadStandardOutput()", "_read_stdout"),
    ("readyReadStandardError()", "_read_stderr"),
    ("errorOccurred(QProcess::ProcessError)", "_on_error"),
    ("finished(int,QProcess::ExitStatus)", "_on_finished"),
)


def _weak_handler(owner, method_name: str) -> Callable:
    reference = weakref.ref(owner)

    def handler(*arguments):
        target = reference()
        if target is not None:
            getattr(target, method_name)(*arguments)

    return handler


class QtProcess:
    """Runs one program; reports ``on_stdout(text)``, ``on_stderr(text)``, ``on_exit(code, crashed)`` and
    ``on_start_failure(message)`` (instead of ``on_exit`` when the program could not be started)."""

    def __init__(self, grace_seconds: float = 10.0) -> None:
        self.grace_seconds = grace_seconds
        self._process = None
        self._handlers: list[tuple[str, Callable]] = []
        self._callbacks: dict[str, Callable] = {}
        self._pid = 0
        self._tree: list[int] = []
        self._ended = False

    def start(
        self,
        program: str,
        arguments: Sequence[str],
        environment: Mapping[str, str],
        on_stdout: Callable[[str], None],
        on_stderr: Callable[[str], None],
        on_exit: Callable[[int, bool], None],
        on_start_failure: Callable[[str], None],
    ) -> None:
        self._callbacks = {"stdout": on_stdout, "stderr": on_stderr, "exit": on_exit, "failure": on_start_failure}
        process = qt.QProcess()
        qt_environment = qt.QProcessEnvironment.systemEnvironment()
        for key, value in environment.items():
            qt_environment.insert(key, value)
        process.setProcessEnvironment(qt_environment)
        self._handlers = [(signal, _weak_handler(self, method)) for signal, method in _SIGNALS]
        for signal, handler in self._handlers:
            process.connect(signal, handler)
        self._process = process
        process.start(program, list(arguments))
        self._pid = int(process.processId())

    @property
    def pid(self) -> int:
        """The started program's process id (0 before start or when it could not start)."""
        return self._pid

    @property
    def running(self) -> bool:
        return self._process is not None and not self._ended

    def _read_stdout(self) -> None:
        text = self._process.readAllStandardOutput().data().decode("utf-8", errors="replace")
        if text:
            self._callbacks["stdout"](text)

    def _read_stderr(self) -> None:
        text = self._process.readAllStandardError().data().decode("utf-8", errors="replace")
        if text:
            self._callbacks["stderr"](text)

    def _on_error(self, error) -> None:
        if int(error) == int(qt.QProcess.FailedToStart):  # other errors are followed by finished()
            message = self._process.errorString()
            self._end()
            self._callbacks["failure"](message)

    def _on_finished(self, exit_code, exit_status) -> None:
        self._read_stdout()
        self._read_stderr()
        self._end()
        self._callbacks["exit"](int(exit_code), int(exit_status) == int(qt.QProcess.CrashExit))

    def _end(self) -> None:
        """Disconnect the handlers and release the QProcess (no callback after this)."""
        if self._ended:
            return
        self._ended = True
        for signal, handler in self._handlers:
            self._process.disconnect(signal, handler)
        self._handlers = []
        self._process.deleteLater()

    def cancel(self) -> None:
        """Stop the whole tree: SIGTERM now, kill what is left after ``grace_seconds``."""
        if not self.running or not self._pid:
            return
        self._tree = proctree.terminate(self._pid)
        qt.QTimer.singleShot(int(self.grace_seconds * 1000), _weak_handler(self, "_force_kill"))

    def _force_kill(self) -> None:
        proctree.kill(self._tree)

    def wait(self, timeout_seconds: float) -> bool:
        """Run a local event loop until the process ended (True) or ``timeout_seconds`` passed (False).

        For scripts and self-tests; the GUI never waits.
        """
        if not self.running:
            return True
        loop = qt.QEventLoop()
        timer = qt.QTimer()
        timer.setInterval(50)
        timer.connect("timeout()", lambda: loop.quit() if not self.running else None)
        timer.start()
        qt.QTimer.singleShot(int(timeout_seconds * 1000), loop.quit)
        loop.exec_()
        timer.stop()
        return not self.running
