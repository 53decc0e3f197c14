"""Install the backend's Python dependencies inside Slicer, asking once (widgets only).

torch comes from the PyTorch extension's installer, which picks the build matching the GPU
driver; the other packages are pinned and installed with pip. Nothing is installed silently.
"""

from __future__ import annotations

import importlib.util

import slicer

TORCH_REQUIREMENT = ">=2.2"
PACKAGES = {"monai": "monai>=1.4", "slicerio": "slicerio>=1.1", "skimage": "scikit-image>=0.21", "tqdm": "tqdm>=4.60"}


def missing_packages() -> list[str]:
    return [requirement for module, requirement in PACKAGES.items() if importlib.util.find_spec(module) is None]


def ensure_dependencies() -> bool:
    """True when torch and the packages are importable, installing them after the user agrees."""
    if importlib.util.find_spec("torch") is None:
        try:
            import PyTorchUtils
        except ImportError:
            slicer.util.errorDisplay(
                "SlicerLungAI needs the PyTorch extension: install it from the Extensions Manager."
            )
            return False
        if (
            PyTorchUtils.PyTorchUtilsLogic().installTorch(
                askConfirmation=True, torchVersionRequirement=TORCH_REQUIREMENT
            )
            is None
        ):
            return False
    missing = missing_packages()
    if missing:
        if not slicer.util.confirmOkCancelDisplay(
            f"SlicerLungAI needs these Python packages: {', '.join(missing)}. Install them now?"
        ):
            return False
        slicer.util.pip_install(missing)
    return True
