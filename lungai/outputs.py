"""The one output guard and staged writes: a command either writes all its files or none.

Commands never overwrite a user's file unless asked (``--overwrite``), and they write into a hidden
sibling folder that is renamed into place only when everything succeeded: a failed, cancelled
(Ctrl+C, exit 130) or terminated (SIGTERM, exit 143) command leaves the output folder as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from lungai.errors import LungAIError


class OutputExistsError(LungAIError):
    """An output file exists and overwriting was not asked for."""

    def __init__(self, paths: Iterable[str | Path]):
        paths = [str(p) for p in paths]
        more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
        super().__init__(f"{paths[0]}{more} already exists; choose another output or pass --overwrite.")
        self.paths = paths


def check_outputs(paths: Iterable[str | Path], overwrite: bool = False) -> None:
    """Raise :class:`OutputExistsError` when any of ``paths`` exists and ``overwrite`` is False."""
    existing = [Path(p) for p in paths if Path(p).exists()]
    if existing and not overwrite:
        raise OutputExistsError(existing)


def check_folder(out_dir: str | Path, names: Iterable[str] = (), overwrite: bool = False) -> None:
    """Before any work: ``out_dir`` must be a folder (or not exist yet) without the files ``names``."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise LungAIError(f"{out_dir} is a file, not a folder; choose a folder for the results.")
    check_outputs([out_dir / name for name in names], overwrite)


def _move_into(source: Path, target: Path) -> None:
    """Move ``source`` (file or folder) to ``target``, merging folders and replacing files."""
    if source.is_dir() and target.is_dir():
        for child in source.iterdir():
            _move_into(child, target / child.name)
        source.rmdir()
        return
    if target.is_dir():
        shutil.rmtree(target)
    os.replace(source, target)


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, deepest first."""
    created = []
    for candidate in [folder, *folder.parents]:
        if candidate.exists():
            break
        created.append(candidate)
    folder.mkdir(parents=True, exist_ok=True)
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders this module created, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _conflicts(staged: Path, target: Path) -> list[Path]:
    found = []
    for child in staged.iterdir():
        destination = target / child.name
        if child.is_dir() and destination.is_dir():
            found += _conflicts(child, destination)
        elif destination.exists():
            found.append(destination)
    return found


@contextlib.contextmanager
def staged_folder(out_dir: str | Path, overwrite: bool = False, expected: Iterable[str] = ()) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``out_dir``; on success its files move into ``out_dir``.

    ``expected``: names (relative to ``out_dir``) checked before any work, so a refusal comes first. Files the
    caller wrote are checked again at the end. On any exception the staged folder is removed and ``out_dir``
    is left untouched (not even created).
    """
    out_dir = Path(out_dir)
    check_folder(out_dir, expected, overwrite)
    created = _make_parents(out_dir.parent)
    staged = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))
    try:
        yield staged
        if out_dir.is_dir():
            check_outputs(_conflicts(staged, out_dir), overwrite)
        out_dir.mkdir(exist_ok=True)
        _move_into(staged, out_dir)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        _remove_empty(created)
        raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)


@contextlib.contextmanager
def staged_file(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; renamed to ``path`` on success, removed otherwise."""
    path = Path(path)
    check_outputs([path], overwrite)
    created = _make_parents(path.parent)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.partial-", suffix=path.suffix, dir=path.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        check_outputs([path], overwrite)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        _remove_empty(created)
        raise
    finally:
        temporary.unlink(missing_ok=True)
