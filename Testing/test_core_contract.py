"""Every module package speaks the same contract (lungai.contract), and modules are listed in one place only."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from lungai import cli, modules
from lungai.contract import CONTRACT_FUNCTIONS, ModuleDescriptor, TrainOptions
from lungai.registry import get_model_entry

REPO = Path(__file__).resolve().parent.parent


def _parameters(function) -> list[tuple[str, str, object]]:
    return [(p.name, p.kind.name, p.default) for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize("name", modules.MODULES)
def test_descriptor_is_complete_and_true(name):
    descriptor = modules.descriptor(name)
    assert isinstance(descriptor, ModuleDescriptor) and descriptor.name == name
    assert all(getattr(descriptor, f.name) for f in fields(descriptor)), descriptor
    assert (REPO / descriptor.slicer_module / f"{descriptor.slicer_module}.py").is_file()
    entry = get_model_entry(descriptor.default_model_id)  # the default model is bundled
    assert entry.available and entry.architecture in descriptor.architectures
    assert entry.module == descriptor.slicer_module
    from lungai.architectures import available_architectures

    assert set(descriptor.architectures) <= set(available_architectures())
    parser = cli.build_parser()
    commands = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"][0].choices
    module_commands = [a for a in commands[name]._actions if a.__class__.__name__ == "_SubParsersAction"][0]
    assert descriptor.run_command in module_commands.choices


@pytest.mark.parametrize("name", modules.MODULES)
def test_pipeline_has_the_same_signatures(name):
    pipeline = modules.pipeline(name)
    for function in CONTRACT_FUNCTIONS:
        assert callable(getattr(pipeline, function, None)), f"lungai.{name}.pipeline.{function} is missing"
    assert _parameters(pipeline.load) == [
        ("weights", "POSITIONAL_OR_KEYWORD", None),
        ("model_id", "POSITIONAL_OR_KEYWORD", None),
        ("device", "POSITIONAL_OR_KEYWORD", "auto"),
    ]
    run = _parameters(pipeline.run)
    assert [p[:2] for p in run[:2]] == [("volume", "POSITIONAL_OR_KEYWORD"), ("model", "POSITIONAL_OR_KEYWORD")]
    assert all(kind == "KEYWORD_ONLY" for _, kind, _ in run[2:])
    assert ("progress", "KEYWORD_ONLY", None) in run and ("cancel", "KEYWORD_ONLY", None) in run
    assert _parameters(pipeline.write) == [
        ("result", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("out_dir", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("overwrite", "POSITIONAL_OR_KEYWORD", False),
    ]
    assert _parameters(pipeline.read) == [("out_dir", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty)]
    assert _parameters(pipeline.train) == [
        ("config", "POSITIONAL_OR_KEYWORD", inspect.Parameter.empty),
        ("progress", "KEYWORD_ONLY", None),
        ("cancel", "KEYWORD_ONLY", None),
    ]
    assert issubclass(pipeline.Training, TrainOptions)


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return found


def _python_files() -> list[Path]:
    folders = [REPO / "lungai", REPO / "LungAICommon", *(REPO / d.slicer_module for d in modules.descriptors())]
    return [p for folder in folders for p in folder.rglob("*.py")]


def test_only_the_top_level_cli_reaches_the_module_clis():
    """Libs, demos and pipelines call the contract; a module's cli.py is reached only through lungai.cli."""
    offenders = {
        str(p.relative_to(REPO)): [
            name for name in _imports(p) if name.split(".")[-1] == "cli" and name != "lungai.cli"
        ]
        for p in _python_files()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


@pytest.mark.parametrize("name", modules.MODULES)
def test_cli_only_parses_and_calls_the_contract(name):
    """No torch, registry writes or checkpoint files in a cli.py: those live behind the contract."""
    names = _imports(REPO / "lungai" / name / "cli.py")
    assert not [n for n in names if n.split(".")[0] in ("torch", "monai") or "registry" in n or "checkpoint" in n]


def test_modules_are_listed_once():
    """Adding a module touches one list: no other file spells out several module or Slicer module names."""
    package_names = set(modules.MODULES)
    slicer_names = {d.slicer_module for d in modules.descriptors()}
    offenders = []
    for path in [*_python_files(), *(REPO / "Testing").glob("*.py")]:
        if path == REPO / "lungai" / "modules.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
                texts = {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
                if len(texts & package_names) > 1 or len(texts & slicer_names) > 1:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def test_slicer_side_imports_no_heavy_package_at_load():
    """What the Libs and LungAICommon import at module load keeps torch, monai, skimage and matplotlib out."""
    light = set()
    for folder in [
        REPO / "LungAICommon",
        *(REPO / d.slicer_module / f"{d.slicer_module}Lib" for d in modules.descriptors()),
    ]:
        for path in folder.rglob("*.py"):
            for node in ast.parse(path.read_text()).body:  # top-level imports only
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lungai"):
                    light.add(node.module)
                elif isinstance(node, ast.Import):
                    light |= {a.name for a in node.names if a.name.startswith("lungai")}
    code = (
        f"import sys; sys.path.insert(0, {str(REPO)!r}); "
        + "; ".join(f"import {name}" for name in sorted(light))
        + "; heavy = [m for m in ('torch', 'monai', 'skimage', 'matplotlib') if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"{sorted(light)} import {result.stdout.strip()}"
