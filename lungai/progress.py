"""One progress protocol and one cancellation token for training and inference.

A progress callback takes ``(fraction, message)`` with ``fraction`` in [0, 1]. Long functions
accept ``progress`` and ``cancel`` keyword arguments; both may be None. The command line
renders the callback as a tqdm bar or as machine-readable lines (see :data:`LINE_PREFIX`)
that the Slicer widgets read from a subprocess.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TextIO

from lungai.errors import LungAIError

ProgressCallback = Callable[[float, str], None]

LINE_PREFIX = "LUNGAI_PROGRESS"


class Cancelled(LungAIError):
    """The user cancelled a running job."""


class CancelToken:
    """Thread-safe flag that long-running work polls between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("Cancelled by the user; nothing was written.")


def check_cancel(cancel: CancelToken | None) -> None:
    """Raise :class:`Cancelled` when ``cancel`` is set (``None`` never cancels)."""
    if cancel is not None:
        cancel.raise_if_cancelled()


def report(progress: ProgressCallback | None, fraction: float, message: str = "") -> None:
    """Call ``progress`` when given, clamping the fraction to [0, 1]."""
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def subrange(progress: ProgressCallback | None, start: float, end: float) -> ProgressCallback | None:
    """A callback that maps its own 0..1 onto [start, end] of ``progress``."""
    if progress is None:
        return None

    def scaled(fraction: float, message: str) -> None:
        report(progress, start + (end - start) * fraction, message)

    return scaled


def format_line(fraction: float, message: str) -> str:
    """Machine-readable progress line: ``LUNGAI_PROGRESS 0.4200 message``."""
    return f"{LINE_PREFIX} {fraction:.4f} {' '.join(message.split())}"


def parse_line(line: str) -> tuple[float, str] | None:
    """Inverse of :func:`format_line`; ``None`` for any other line."""
    parts = line.strip().split(" ", 2)
    if len(parts) < 2 or parts[0] != LINE_PREFIX:
        return None
    try:
        fraction = float(parts[1])
    except ValueError:
        return None
    return fraction, parts[2] if len(parts) == 3 else ""


def print_line(fraction: float, message: str, stream: TextIO | None = None) -> None:
    """Progress as one :func:`format_line` line, flushed at once (stdout by default)."""
    stream = stream or sys.stdout
    stream.write(format_line(fraction, message) + "\n")
    stream.flush()


class TqdmProgress:
    """Progress rendered as one tqdm bar on stderr (context manager)."""

    def __init__(self, description: str = "lungai", resolution: int = 1000) -> None:
        from tqdm import tqdm

        self._resolution = resolution
        self._bar = tqdm(
            total=resolution,
            desc=description,
            unit="",
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}",
            file=sys.stderr,
        )

    def __call__(self, fraction: float, message: str) -> None:
        target = round(fraction * self._resolution)
        self._bar.update(max(0, target - self._bar.n))
        self._bar.set_postfix_str(message, refresh=True)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> TqdmProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
