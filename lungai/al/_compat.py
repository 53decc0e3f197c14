"""LOCAL WORKAROUND until the foundation (lungai.errors, lungai.progress) is merged: delete after merging."""
from __future__ import annotations

from typing import Callable

try:
    from lungai.errors import InputError, LungAIError
    from lungai.progress import CancelToken, ProgressCallback, report
except ImportError:  # pragma: no cover
    class LungAIError(Exception):
        pass

    class InputError(LungAIError):
        pass

    class Cancelled(LungAIError):
        pass

    ProgressCallback = Callable[[float, str], None]

    class CancelToken:
        def __init__(self):
            self.cancelled = False

        def cancel(self):
            self.cancelled = True

        def raise_if_cancelled(self):
            if self.cancelled:
                raise Cancelled("cancelled")

    def report(progress, fraction, message):
        if progress is not None:
            progress(fraction, message)
