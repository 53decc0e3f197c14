"""Static checks of the extension's shape: backend free of Slicer, widgets match their .ui, CMake lists real files."""

import ast
import re
from pathlib import Path

import pytest

from lungai.modules import descriptors

REPO = Path(__file__).resolve().parent.parent
MODULES = [d.slicer_module for d in descriptors()]


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_backend_imports_no_slicer_qt_ctk_or_vtk():
    offenders = {
        str(p.relative_to(REPO)): sorted(_imported_roots(p) & {"slicer", "qt", "ctk", "vtk"})
        for p in (REPO / "lungai").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("folder", [*(f"{m}/{m}Lib" for m in MODULES), "LungAICommon/mrml.py"])
def test_logic_imports_no_qt_or_ctk(folder):
    path = REPO / folder
    files = [path] if path.is_file() else list(path.rglob("*.py"))
    assert files, f"{folder} has no Python files"
    offenders = {str(p.relative_to(REPO)): sorted(_imported_roots(p) & {"qt", "ctk"}) for p in files}
    assert {k: v for k, v in offenders.items() if v} == {}


def _cmake_listed_files(cmake: Path, module: str) -> list[Path]:
    text = cmake.read_text().replace("${MODULE_NAME}", module)
    files = []
    for block in re.findall(r"set\(MODULE_PYTHON_(?:SCRIPTS|RESOURCES)\s+(.*?)\)", text, re.S):
        files += [cmake.parent / token for token in block.split() if not token.startswith("$")]
    return files


@pytest.mark.parametrize("module", MODULES)
def test_module_layout_and_cmake_files_exist(module):
    root = REPO / module
    for required in (
        f"{module}.py",
        "CMakeLists.txt",
        f"Resources/UI/{module}.ui",
        f"Resources/Icons/{module}.png",
        f"{module}Lib/__init__.py",
    ):
        assert (root / required).is_file(), required
    cmake = (root / "CMakeLists.txt").read_text()
    assert "slicerMacroBuildScriptedModule" in cmake and "slicer_add_python_unittest" in cmake
    listed = _cmake_listed_files(root / "CMakeLists.txt", module)
    assert [p for p in listed if not p.is_file()] == []
    python_files = {p.relative_to(root).as_posix() for p in root.rglob("*.py") if "__pycache__" not in p.parts}
    assert python_files <= {p.relative_to(root).as_posix() for p in listed}, "every module .py must be listed in CMake"
    source = (root / f"{module}.py").read_text()
    for cls in (module, f"{module}Widget", f"{module}Logic", f"{module}Test"):
        assert re.search(rf"\b{cls}\b", source), cls


def test_top_level_cmake_adds_every_module():
    text = (REPO / "CMakeLists.txt").read_text()
    assert 'EXTENSION_CATEGORY "Segmentation"' in text and 'EXTENSION_DEPENDS "PyTorch"' in text
    for module in MODULES:
        assert f"add_subdirectory({module})" in text
