"""Packaging that the Extensions Index and an installed Slicer rely on (top-level CMakeLists.txt)."""

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CMAKE = (REPO / "CMakeLists.txt").read_text()
RAW_URL = "https://raw.githubusercontent.com/SlicerLungAI/SlicerLungAI/main/"


def test_extension_name_is_accepted_by_the_index():
    name = re.search(r"^project\((\w+)\)", CMAKE, re.M).group(1)
    assert name == "LungAI" and not name.startswith("Slicer")
    entry = json.loads((REPO / "Resources" / "ExtensionsIndex" / f"{name}.json").read_text())
    assert entry["scm_url"] == "https://github.com/SlicerLungAI/SlicerLungAI.git"  # the repository keeps its name
    assert entry["build_dependencies"] == ["PyTorch"]


def test_icon_and_screenshot_urls_point_at_committed_files():
    for variable in ("EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS"):
        urls = re.search(rf'set\({variable} "([^"]+)"\)', CMAKE).group(1).split()
        for url in urls:
            assert url.startswith(RAW_URL), url
            path = REPO / url[len(RAW_URL) :]
            assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url


def test_backend_and_models_are_installed_once():
    """Without NO_INSTALL_SUBDIR, CTK installs the scripted-modules folder inside itself (models twice)."""
    call = re.search(r"ctkMacroCompilePythonScript\((.*?)\)", CMAKE, re.S).group(1)
    assert "Resources/Models" in CMAKE and "NO_INSTALL_SUBDIR" in call.split()
