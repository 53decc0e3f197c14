"""The lungai command line: info, demo, --help everywhere, exit codes and one-line errors."""

import subprocess
import sys

import pytest

from lungai import cli


def _lungai(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lungai", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_info_lists_versions_device_and_models():
    result = _lungai("info")
    assert result.returncode == 0, result.stderr
    assert "torch" in result.stdout and "model registries" in result.stdout
    assert "device: cpu (--device auto;" in result.stdout  # the resolved device, and what was asked
    assert "device: cpu (--device cpu;" in _lungai("info", "--device", "cpu").stdout


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "index.html").write_text("user file")
    result = _lungai("demo", "--out", str(tmp_path / "full"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"lungai: error: {tmp_path / 'full' / 'index.html'} already exists; choose another output or pass --overwrite."
    ]
    assert (tmp_path / "full" / "index.html").read_text() == "user file"
    assert _lungai("info", "--device", "tpu").returncode == 2


def test_internal_error_is_exit_1_and_debug_shows_traceback(monkeypatch, capsys):
    def broken(args, ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "_info", broken)
    assert cli.main(["info"]) == 1
    assert "internal error: RuntimeError: boom" in capsys.readouterr().err
    assert cli.main(["--debug", "info"]) == 1
    assert "Traceback" in capsys.readouterr().err


def _command_paths(parser, prefix=()):
    paths = [prefix]
    for child_name, child in _children(parser):
        paths += _command_paths(child, prefix + (child_name,))
    return paths


def _children(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_command_has_help(capsys):
    paths = _command_paths(cli.build_parser())
    assert ("info",) in paths and ("demo",) in paths
    for path in paths:
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*path, "--help"])
        assert exit_info.value.code == 0, path
        assert "usage: lungai" in capsys.readouterr().out
