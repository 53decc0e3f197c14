"""Shared pytest fixtures: a real headless MRML scene, the bundled chest CT, the shared data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

# Tests run in parallel workers (pytest -n 2) on 2 cores: one thread each avoids oversubscription.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from lungai.modules import descriptors  # noqa: E402

SLICER_MODULES = [d.slicer_module for d in descriptors()]
for folder in [REPO / "Testing", *(REPO / m for m in SLICER_MODULES)]:
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository (``LUNGAI_SHARED_DATA`` overrides); skips when absent."""
    path = Path(os.environ.get("LUNGAI_SHARED_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not found (set LUNGAI_SHARED_DATA); this test needs it")
    return path


@pytest.fixture(autouse=True)
def user_models(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty user model registry: tests never touch the user's real one."""
    folder = tmp_path_factory.mktemp("user_models")
    monkeypatch.setenv("LUNGAI_USER_MODELS", str(folder))
    return folder


@pytest.fixture
def shared_data() -> Path:
    return shared_data_dir()


@pytest.fixture
def mrml_scene():
    """A fresh real MRML scene with Slicer's application and module logic (slicer-core, no Qt)."""
    from headless_slicer import start_scene, stop_scene

    scene = start_scene()
    yield scene
    stop_scene(scene)


@pytest.fixture(scope="session")
def chest_ct():
    from lungai.sample_data import chest_ct as load

    return load()


@pytest.fixture(scope="session")
def chest_lungs():
    from lungai.sample_data import chest_lungs as load

    return load()
