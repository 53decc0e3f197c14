"""One device choice for training and inference: CUDA, then MPS, then CPU."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from lungai.errors import LungAIError

DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """Turn a device name into a ``torch.device``.

    ``auto`` picks CUDA when a GPU is visible (``CUDA_VISIBLE_DEVICES`` is honoured by CUDA
    itself), then Apple MPS, then CPU. An explicit choice that is not available raises a
    :class:`LungAIError` instead of silently falling back.
    """
    name = (name or "auto").lower()
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise LungAIError(f"Unknown device '{name}': choose one of {', '.join(DEVICE_CHOICES)}.")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise LungAIError(
            "Device 'cuda' was requested but no CUDA GPU is available "
            "(check the driver, CUDA_VISIBLE_DEVICES and that torch is a CUDA build); use --device cpu or auto."
        )
    if kind == "mps" and not _mps_available():
        raise LungAIError("Device 'mps' was requested but Apple MPS is not available; use --device cpu or auto.")
    return torch.device(name)


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """Automatic mixed precision on CUDA only; a no-op on CPU and MPS."""
    if enabled and device.type == "cuda":
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            yield
    else:
        yield
