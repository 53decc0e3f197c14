"""User-facing errors: each says what is wrong and what to do about it.

The command line turns a :class:`LungAIError` into one clear line and exit code 2; any other
exception is an internal error (exit code 1).
"""


class LungAIError(Exception):
    """An error caused by the user's input or environment, with a message meant for people."""


class InputError(LungAIError):
    """An input file, volume or argument is unusable."""


class CheckpointError(LungAIError):
    """A checkpoint file is missing, corrupt, foreign or built for another architecture."""
