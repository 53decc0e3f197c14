"""What Slicer loads at startup stays light: no module file, Segment Editor effect, Lib or LungAICommon file
imports torch, monai, scikit-image or matplotlib when it is loaded (only when a run starts), and every
``ui.<name>`` a widget uses exists in its .ui file."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lungai.modules import descriptors

REPO = Path(__file__).resolve().parent.parent
MODULES = [d.slicer_module for d in descriptors()]
HEAVY = {"torch", "monai", "skimage", "matplotlib"}


def slicer_loaded_files() -> list[Path]:
    """Every Python file Slicer loads from this extension except the lungai backend itself."""
    files = sorted((REPO / "LungAICommon").glob("*.py"))
    for module in MODULES:
        files += sorted(p for p in (REPO / module).rglob("*.py") if "__pycache__" not in p.parts)
    return files


def _load_time_imports(tree: ast.Module) -> set[str]:
    """Roots of the imports that run when the file is imported (module level, including if/try blocks and
    class bodies, but not function bodies)."""
    roots, pending = set(), list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            pending += [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
    return roots


@pytest.mark.parametrize("path", slicer_loaded_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_heavy_import_at_load(path):
    assert _load_time_imports(ast.parse(path.read_text(), str(path))) & HEAVY == set()


def test_the_load_time_check_sees_nested_imports():
    tree = ast.parse("try:\n    import torch\nexcept ImportError:\n    pass\ndef f():\n    import monai\n")
    assert _load_time_imports(tree) == {"torch"}


# Qt-only parts of Slicer are stubbed (slicer-core has MRML but no Qt); torch & co. are blocked, so importing
# a file that needs them at load fails, and nothing may pull them in indirectly either.
_LOADER = textwrap.dedent(
    """
    import importlib.abc, sys

    HEAVY = {heavy!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in HEAVY:
                raise ImportError(f"{{name}} imported at load")

    sys.meta_path.insert(0, Block())

    import slicer_qt_stubs
    slicer_qt_stubs.install()

    import importlib
    for name in {names!r}:
        importlib.import_module(name)
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & HEAVY)
    assert loaded == [], f"loaded at import: {{loaded}}"
    print("LOADED", len({names!r}))
    """
)


def test_slicer_loads_every_module_effect_and_helper_without_heavy_packages():
    names = [
        *MODULES,
        "SegmentEditorUGSNetEffect.SegmentEditorEffect",
        *(f"{m}Lib.logic" for m in MODULES),
        "LungAICommon.job",
        "LungAICommon.process",
        "LungAICommon.proctree",
        "LungAICommon.dependencies",
        "LungAICommon.mrml",
        "LungAICommon.widget",
    ]
    paths = [str(REPO), str(REPO / "Testing"), *(str(REPO / m) for m in MODULES)]
    result = subprocess.run(
        [sys.executable, "-c", _LOADER.format(heavy=HEAVY, names=names)],
        env={"PYTHONPATH": ":".join(paths), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and f"LOADED {len(names)}" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("module", MODULES)
def test_every_ui_name_a_widget_uses_exists(module):
    """Names used as ``ui.<name>`` in the module's files and in the shared widget base are in the .ui file."""
    ui_names = set(re.findall(r'name="([^"]+)"', (REPO / module / "Resources" / "UI" / f"{module}.ui").read_text()))
    sources = [p for p in (REPO / module).glob("*.py")] + [REPO / "LungAICommon" / "widget.py"]
    used = set()
    for path in sources:
        used |= set(re.findall(r"\bui\.([A-Za-z_]\w*)", path.read_text()))
    assert {"applyButton", "progressBar", "statusLabel"} & used
    assert used - ui_names - {"applyButton"} == set(), f"{module} uses widgets missing from its .ui file"
    if module != "ActiveLearningSampler":  # its Score and Retrain buttons start the runs
        assert "applyButton" in ui_names
