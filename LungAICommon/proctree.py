"""Stop a whole process tree (Qt-free, standard library only).

Slicer starts its Python through the ``PythonSlicer`` launcher, which runs the real interpreter as a
child process: stopping the launcher alone leaves that child running. The tree is stopped in two steps:
:func:`terminate` asks every descendant to stop (SIGTERM: the ``lungai`` command line then cancels between
steps and writes nothing), and :func:`kill` ends whatever is still alive after a grace period.
A process group cannot be used instead: QProcess children share Slicer's own group.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path


def _parent_pids() -> dict[int, int]:
    """pid -> parent pid of every process visible to this user."""
    parents = {}
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:  # the process ended while we looked
                continue
            # "pid (command name) state ppid ..."; the name may hold spaces and parentheses
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
        return parents
    listing = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=False).stdout
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) == 2:
            parents[int(fields[0])] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, grandchildren, ...), deepest first; [] on Windows."""
    if os.name == "nt":
        return []
    children: dict[int, list[int]] = {}
    for child, parent in _parent_pids().items():
        children.setdefault(parent, []).append(child)
    found, frontier = [], [pid]
    while frontier:
        frontier = [child for parent in frontier for child in children.get(parent, [])]
        found = frontier + found
    return found


def is_alive(pid: int) -> bool:
    if os.name == "nt":
        listing = subprocess.run(["tasklist", "/FI", f"PID eq {pid}"], capture_output=True, text=True, check=False)
        return str(pid) in listing.stdout
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child that nobody reaped yet is not running
        return "Z" not in (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[:1]
    except OSError:
        return True


def _signal(pids: Iterable[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def terminate(root: int) -> list[int]:
    """Ask the processes below ``root`` to stop (``root`` itself when it has none); returns the tree's pids.

    The launcher ``root`` is left to exit on its own when its child ends, so its exit code is the child's.
    On Windows, where there are no signals, the tree is ended at once.
    """
    if os.name == "nt":
        subprocess.run(["taskkill", "/PID", str(root), "/T", "/F"], capture_output=True, check=False)
        return [root]
    below = descendants(root)
    _signal(below or [root], signal.SIGTERM)
    return [*below, root]


def kill(pids: Iterable[int]) -> None:
    """End the given processes at once (after :func:`terminate`'s grace period)."""
    if os.name == "nt":
        for pid in pids:
            subprocess.run(["taskkill", "/PID", str(pid), "/T", "/F"], capture_output=True, check=False)
        return
    _signal([pid for pid in pids if is_alive(pid)], signal.SIGKILL)
