"""The backend's Python packages inside Slicer: checked when the user presses Apply, installed once asked.

torch comes from the PyTorch extension's installer, which picks the build matching the GPU driver (never
from pip as a side effect: every install here is constrained to the torch already present). The other
packages are pinned. Under ``--testing`` nothing is ever installed: the check only says what is missing,
and the self-tests skip with that message. The checks are Qt-free; only :func:`ensure_dependencies`
talks to the user through ``slicer.util``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

TORCH_MINIMUM = "2.2"


@dataclass(frozen=True)
class Requirement:
    module: str  # import name
    distribution: str  # pip name
    minimum: str  # oldest version lungai works with
    pinned: tuple[str, ...]  # what is installed (pip requirement strings, with Python markers)


# Slicer bundles numpy, scipy, SimpleITK and Pillow; they are checked so an old or broken Python says so.
REQUIREMENTS = (
    Requirement("numpy", "numpy", "1.24", ("numpy>=1.24",)),
    Requirement("scipy", "scipy", "1.10", ("scipy>=1.10",)),
    Requirement("SimpleITK", "SimpleITK", "2.3", ("SimpleITK>=2.3",)),
    Requirement("PIL", "pillow", "10.0", ("pillow>=10",)),
    Requirement("monai", "monai", "1.4", ("monai==1.5.2",)),
    Requirement(
        "skimage",
        "scikit-image",
        "0.21",
        ('scikit-image==0.24.0; python_version < "3.10"', 'scikit-image==0.25.2; python_version >= "3.10"'),
    ),
    Requirement("slicerio", "slicerio", "1.1", ("slicerio==1.4.0",)),
    Requirement("tqdm", "tqdm", "4.60", ("tqdm==4.67.1",)),
)


def version_tuple(version: str) -> tuple[int, ...]:
    """Leading numeric release of a version string: "2.13.0+cpu" -> (2, 13, 0)."""
    numbers = []
    for part in version.split("."):
        match = re.match(r"\d+", part)
        if match is None:
            break
        numbers.append(int(match.group()))
        if match.group() != part:
            break
    return tuple(numbers)


def installed_version(requirement: Requirement) -> str | None:
    """Version of an importable package, None when it is not importable."""
    if importlib.util.find_spec(requirement.module) is None:
        return None
    try:
        return importlib.metadata.version(requirement.distribution)
    except importlib.metadata.PackageNotFoundError:
        return "0"  # importable without metadata (e.g. a package built from source with Slicer): accepted


def unmet_requirements(requirements=REQUIREMENTS, version_of=installed_version) -> list[Requirement]:
    """Requirements that are missing or older than their minimum."""
    unmet = []
    for requirement in requirements:
        version = version_of(requirement)
        if version is None or (version != "0" and version_tuple(version) < version_tuple(requirement.minimum)):
            unmet.append(requirement)
    return unmet


def torch_version() -> str | None:
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def pip_arguments(unmet: list[Requirement], constraints_file: Path, torch: str) -> list[str]:
    """``pip install`` arguments for the pinned requirements, keeping the installed ``torch`` as it is."""
    constraints_file.write_text(f"torch=={torch}\n")
    return ["-c", str(constraints_file), *(pin for requirement in unmet for pin in requirement.pinned)]


def missing_description() -> str | None:
    """What is missing, in one sentence; None when everything is installed."""
    parts = []
    torch = torch_version()
    if torch is None or version_tuple(torch) < version_tuple(TORCH_MINIMUM):
        parts.append(f"PyTorch >= {TORCH_MINIMUM} (PyTorch extension)")
    parts += [f"{r.distribution} >= {r.minimum}" for r in unmet_requirements()]
    return f"SlicerLungAI needs these Python packages: {', '.join(parts)}." if parts else None


def ensure_dependencies() -> str | None:
    """Check, and install after the user agrees; returns why a run cannot start (None: ready).

    Under ``--testing`` nothing is installed and nobody is asked.
    """
    import slicer

    missing = missing_description()
    if missing is None:
        return None
    if slicer.app.testingEnabled():
        return f"{missing} Self-tests never install packages; install them first."
    if not slicer.util.confirmOkCancelDisplay(f"{missing}\n\nInstall them now? This downloads several hundred MB."):
        return f"{missing} Press Apply again to install them."
    torch = torch_version()
    if torch is None or version_tuple(torch) < version_tuple(TORCH_MINIMUM):
        try:
            import PyTorchUtils
        except ImportError:
            return "SlicerLungAI needs the PyTorch extension: install it from the Extensions Manager, then restart."
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(torchVersionRequirement=f">={TORCH_MINIMUM}") is None:
            return "PyTorch was not installed; SlicerLungAI cannot run without it."
        torch = torch_version()
    unmet = unmet_requirements()
    if unmet:
        with tempfile.TemporaryDirectory(prefix="lungai-pip-") as folder:
            try:
                slicer.util.pip_install(pip_arguments(unmet, Path(folder) / "constraints.txt", torch))
            except Exception as error:  # noqa: BLE001 - pip's failure becomes a message the user can act on
                names = ", ".join(r.distribution for r in unmet)
                return (
                    f"Installing {names} failed ({type(error).__name__}: {error}). Check the internet connection "
                    "and the Python console's log, then press Apply again."
                )
    importlib.invalidate_caches()
    return missing_description()
