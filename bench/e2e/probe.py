"""Run one ``lungai`` command in this process and write where its time went (used by e2e_benchmark.py).

    python bench/e2e/probe.py --json stages.json -- covid segment --volume ct.nrrd --out out/

No module needs to cooperate, so the split survives the modules' changes. Events (start, end) come from:

- ``read`` / ``write``: calls of lungai.io's readers and writers and of Pillow's ``Image.save`` (PNG pictures);
- ``load model``: lungai.checkpoint.load_checkpoint (registered models load through it);
- ``network``: outermost ``nn.Module`` calls (global forward hooks), and code marked with
  ``lungai.timing.stage("network")`` (the AL sampler calls functional convolutions between its modules);
- other ``lungai.timing.stage`` markers (preprocess, postprocess) where a module sets them;
- ``imports``: module imports during the command (the commands import their heavy dependencies lazily).

Outermost network calls are tracked per thread (a module may run batches in several threads); overlapping events
count once, for the one that started first. Time no event covers is preprocessing before the first
network call, postprocessing after the last, and ``between`` in between (per-batch pre- and postprocessing of
modules that interleave them with network calls). The split is made twice: on the wall clock and on the process's
CPU clock (one thread: the CPU split is what an idle core would show, whatever the machine's load; with more
threads the CPU seconds of a stage add up every thread's work during it). Also recorded:
the input shape of every outermost network call, and where the peak resident memory was reached (its value is
sampled at every event's end).
"""

from __future__ import annotations

import argparse
import builtins
import functools
import json
import resource
import sys
import threading
import time

T0 = time.perf_counter()
# (kind, wall start, wall end, CPU start, CPU end): perf_counter and process_time stamps
EVENTS: list[tuple[str, float, float, float, float]] = []
SHAPES: dict[str, int] = {}
PEAKS: list[tuple[float, int, str]] = []  # (wall time, peak resident KB so far, event kind) at every event's end


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _pair(started: tuple[float, float], ended: tuple[float, float]) -> tuple[float, float, float, float]:
    return started[0], ended[0], started[1], ended[1]


def _record(kind: str, started: tuple[float, float], ended: tuple[float, float]) -> None:
    EVENTS.append((kind, *_pair(started, ended)))
    PEAKS.append((ended[0], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, kind))


def peak_stage(start: float, network: list[tuple[float, float]]) -> str:
    """Where peak memory was reached: the event whose end first shows the final peak, or, if memory grew in the
    gap before it, that gap's stage (preprocess, between, postprocess)."""
    final = max((kb for _, kb, _ in PEAKS), default=0)
    previous_end = start
    for end, kb, kind in PEAKS:
        if kb >= final:
            first, last = (network[0][0], network[-1][1]) if network else (end, end)
            gap = "preprocess" if previous_end < first else "postprocess" if previous_end >= last else "between"
            return f"{kind} or the {gap} before it (t = {previous_end - start:.1f}-{end - start:.1f} s)"
        previous_end = end
    return "after the last event"


def _wrap(owner, name: str, kind: str) -> None:
    original = getattr(owner, name, None)
    if original is None:
        return

    @functools.wraps(original)
    def timed(*args, **kwargs):
        started = _now()
        try:
            return original(*args, **kwargs)
        finally:
            _record(kind, started, _now())

    setattr(owner, name, timed)


def install() -> None:
    import PIL.Image
    import torch

    import lungai.checkpoint
    import lungai.io
    from lungai import timing

    for name in dir(lungai.io):
        if name.startswith("read_"):
            _wrap(lungai.io, name, "read")
        elif name.startswith("write_"):
            _wrap(lungai.io, name, "write")
    _wrap(PIL.Image.Image, "save", "write")
    _wrap(lungai.checkpoint, "load_checkpoint", "load model")
    original_import = builtins.__import__

    def timed_import(*args, **kwargs):
        started = _now()
        try:
            return original_import(*args, **kwargs)
        finally:
            ended = _now()
            if ended[0] - started[0] > 1e-3:  # a module really loaded (not a cached import statement)
                _record("imports", started, ended)

    builtins.__import__ = timed_import

    def on_stage(name, start, end, cpu):
        cpu_end = time.process_time()
        EVENTS.append((name, start, end, cpu_end - cpu, cpu_end))
        PEAKS.append((end, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, name))

    timing.STAGE_LISTENERS.append(on_stage)

    calls, shapes_lock = threading.local(), threading.Lock()  # modules may call networks from several threads

    def pre(module, args):
        depth = getattr(calls, "depth", 0)
        if depth == 0:
            calls.started = _now()
            shape = tuple(args[0].shape) if args and isinstance(args[0], torch.Tensor) else ()
            key = "x".join(str(s) for s in shape)
            with shapes_lock:
                SHAPES[key] = SHAPES.get(key, 0) + 1
        calls.depth = depth + 1

    def post(module, args, output):
        calls.depth -= 1
        if calls.depth == 0:
            _record("network", calls.started, _now())

    torch.nn.modules.module.register_module_forward_pre_hook(pre)
    torch.nn.modules.module.register_module_forward_hook(post)


def split(events: list[tuple[str, float, float]], start: float, end: float) -> dict[str, float]:
    """Seconds per stage over [start, end] on one clock: ``events`` are (kind, start, end) (module docstring)."""
    outer: list[tuple[str, float, float]] = []
    for kind, s, e in sorted(events, key=lambda ev: (ev[1], -ev[2])):
        if outer and e <= outer[-1][2]:
            continue  # inside the previous outer event
        outer.append((kind, s, e))
    seconds: dict[str, float] = {}
    network = [ev for ev in outer if ev[0] == "network"]
    first = network[0][1] if network else end
    last = network[-1][2] if network else end
    cursor = start
    for kind, s, e in [*outer, ("", end, end)]:
        gap_start, gap_end = cursor, max(cursor, s)
        for label, lo, hi in (("preprocess", start, first), ("between", first, last), ("postprocess", last, end)):
            overlap = min(gap_end, hi) - max(gap_start, lo)
            if overlap > 0:
                seconds[label] = seconds.get(label, 0.0) + overlap
        if kind:
            seconds[kind] = seconds.get(kind, 0.0) + (e - max(s, cursor))
        cursor = max(cursor, e)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    install()
    from lungai.cli import main as lungai_main

    started = _now()
    code = lungai_main(command)
    ended = _now()
    result = {
        "exit_code": code,
        "command_s": ended[0] - started[0],
        "command_cpu_s": ended[1] - started[1],
        "stages_s": split([ev[:3] for ev in EVENTS], started[0], ended[0]),
        "stages_cpu_s": split([(ev[0], ev[3], ev[4]) for ev in EVENTS], started[1], ended[1]),
        "network_calls": sum(1 for ev in EVENTS if ev[0] == "network"),
        "peak_memory_stage": peak_stage(started[0], [ev[1:3] for ev in EVENTS if ev[0] == "network"]),
        "network_input_shapes": SHAPES,
    }
    with open(args.json, "w") as handle:
        json.dump(result, handle, indent=1)
    return code


if __name__ == "__main__":
    sys.exit(main())
