"""Everything Slicer loads or runs (the module files, effect, Libs, LungAICommon and the lungai backend that
PythonSlicer runs) works on Python 3.9, the Python of Slicer 5.6 and 5.8 (pyproject: requires-python >= 3.9)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lungai.modules import descriptors

REPO = Path(__file__).resolve().parent.parent
FOLDERS = ["lungai", "LungAICommon", *(d.slicer_module for d in descriptors())]


def _vermin() -> str:
    beside_python = Path(sys.executable).with_name("vermin")
    found = str(beside_python) if beside_python.exists() else shutil.which("vermin")
    if found is None:
        pytest.skip("vermin is not installed: pip install -e '.[test]'")
    return found


def _check(paths) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_vermin(), "-q", "-t=3.9-", "--violations", "--no-tips", *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )


def test_every_file_slicer_loads_runs_on_python_3_9():
    result = _check(FOLDERS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_check_catches_newer_syntax(tmp_path):
    (tmp_path / "new.py").write_text(
        "def f(x):\n    match x:\n        case 1:\n            return isinstance(x, int | str)\n"
    )
    assert _check([tmp_path / "new.py"]).returncode == 1


def test_pyproject_states_the_same_floor():
    assert 'requires-python = ">=3.9"' in (REPO / "pyproject.toml").read_text()
