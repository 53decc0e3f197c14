"""A non-editable install (a wheel of this tree in a fresh environment) ships the bundled models and sample data,
and ``lungai demo`` runs from it. The fresh environment reuses the test environment's dependencies (torch, ...)
through a .pth file, so only lungai itself comes from the wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``bin/`` of a fresh venv with lungai installed from a wheel built from this tree."""
    root = tmp_path_factory.mktemp("install")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LUNGAI_RESOURCES")}
    run = lambda *args: subprocess.run(args, capture_output=True, text=True, timeout=600, cwd=root, env=env)  # noqa: E731
    built = run(sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-w", "wheel")
    assert built.returncode == 0, built.stderr
    assert run(sys.executable, "-m", "venv", "--without-pip", "venv").returncode == 0
    site = next((root / "venv" / "lib").glob("python*/site-packages"))
    (site / "test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    wheel = next((root / "wheel").glob("lungai-*.whl"))
    python = root / "venv" / "bin" / "python"
    # --ignore-installed: the test environment's own (editable) lungai is visible through the .pth file
    done = run(
        sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--ignore-installed", str(wheel)
    )
    assert done.returncode == 0 and (root / "venv" / "bin" / "lungai").is_file(), done.stdout + done.stderr
    return root / "venv" / "bin"


def _lungai(bin_dir: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LUNGAI_RESOURCES")}
    return subprocess.run(
        [str(bin_dir / "lungai"), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=900
    )


def test_installed_package_finds_its_bundled_models(installed, tmp_path):
    result = _lungai(installed, "info", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    bundled = [line for line in result.stdout.splitlines() if ", bundled]" in line]
    assert len(bundled) == 4 and all("weights present" in line for line in bundled), result.stdout
    assert f"{REPO}" not in result.stdout  # nothing comes from the source tree


def test_demo_runs_from_a_non_editable_install(installed, tmp_path):
    result = _lungai(installed, "demo", "--out", str(tmp_path / "demo"), "--progress", "lines", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "LUNGAI_PROGRESS 1.0000" in result.stdout
    index = (tmp_path / "demo" / "index.html").read_text()
    assert "Chest CT with lung segmentation" in index and "Right lung" in index  # the lung table is inlined
    for name in ("chest_ct/axial.png", "chest_ct/coronal.png", "chest_ct/chest_lungs.seg.nrrd"):
        assert name in index and (tmp_path / "demo" / name).is_file()
    for section in ("UGS-Net", "COVID Hierarchical", "NeoplasmNLB", "Active Learning Sampler"):
        assert section in index and "Not run" not in index
    sections = {part.split("</h2>")[0]: part for part in index.split("<h2>")[1:]}
    for title, section in sections.items():
        assert "Reading this result:" in section, f"section {title!r} says nothing on how to read it"
