"""The ``lungai`` command line.

Global options choose the device, the progress style and whether tracebacks are shown. Module
subcommands come from ``lungai.<module>.cli`` for every module of :data:`lungai.modules.MODULES`,
each of which defines ``register(subparsers)``; every leaf parser sets ``func=handler`` with
``handler(args, ctx) -> int``. Exit codes: 0 ok, 2 bad input (a :class:`LungAIError`), 1 internal
error, 130 interrupted (Ctrl+C), 143 terminated (SIGTERM); an interrupted command writes nothing
(:mod:`lungai.outputs`). Errors are one line; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import lungai
from lungai import modules
from lungai.architectures import available_architectures
from lungai.device import resolve_device
from lungai.errors import LungAIError
from lungai.progress import Cancelled, CancelToken, TqdmProgress, print_line
from lungai.registry import load_registry, registry_folders

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, as shells report it


@dataclass
class CLIContext:
    """What every command handler gets besides its arguments."""

    device: str = "auto"
    progress_style: str = "tqdm"
    cancel: CancelToken = field(default_factory=CancelToken)
    argv: list[str] = field(default_factory=list)  # the command as given (recorded when a model is published)
    _bar: TqdmProgress | None = None

    def progress(self, fraction: float, message: str) -> None:
        if self.progress_style == "lines":
            print_line(fraction, message)
        elif self.progress_style == "tqdm":
            if self._bar is None:
                self._bar = TqdmProgress()
            self._bar(fraction, message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _info(args: argparse.Namespace, ctx: CLIContext) -> int:
    import monai  # imported here only: MONAI takes seconds to import and no other command needs it at start-up
    import numpy
    import SimpleITK
    import torch

    print(
        f"lungai {lungai.__version__} | Python {platform.python_version()} | torch {torch.__version__} | "
        f"monai {monai.__version__} | numpy {numpy.__version__} | SimpleITK {SimpleITK.Version_VersionString()}"
    )
    print(
        f"device: {resolve_device(ctx.device)} (--device {ctx.device}; auto picks CUDA, then MPS, then CPU) | "
        f"CUDA available: {torch.cuda.is_available()} ({torch.cuda.device_count()} GPUs)"
    )
    found = [module.__name__.split(".")[1] for module in modules.available("cli")]
    print(f"modules: {', '.join(found) or 'none yet'}")
    print(f"architectures: {', '.join(available_architectures()) or 'none'}")
    entries = load_registry()
    folders = registry_folders()
    print(f"model registries: {' and '.join(str(f) for f in folders)} ({len(entries)} models)")
    for entry in entries:
        state = "present" if entry.available else ("MISSING" if not entry.path.is_file() else "CHECKSUM MISMATCH")
        where = "bundled" if entry.bundled else "yours"
        print(
            f"  {entry.id} v{entry.version} [{entry.module}, {where}] {entry.architecture}: weights {state}; "
            f"{entry.description}"
        )
    return EXIT_OK


def _demo(args: argparse.Namespace, ctx: CLIContext) -> int:
    from lungai.demo import run_demo  # every module's pictures: only for the demo

    index = run_demo(
        Path(args.out), device=ctx.device, overwrite=args.overwrite, progress=ctx.progress, cancel=ctx.cancel
    )
    ctx.close()
    print(f"demo written: {index}")
    return EXIT_OK


def _add_global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """The global options, accepted before or after the subcommand (defaults set at the top only)."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument(
        "--device", default=default("auto"), help="auto (CUDA, then MPS, then CPU), cuda, cuda:N, mps or cpu"
    )
    parser.add_argument(
        "--progress",
        default=default("tqdm"),
        choices=["tqdm", "lines", "none"],
        help="progress as a bar, as machine-readable lines (for Slicer), or not at all",
    )
    parser.add_argument("--debug", action="store_true", default=default(False), help="show tracebacks")


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:  # argparse has no public walk over subcommands
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                found += [child, *_subparsers(child)]
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lungai", description="Lung CT segmentation and uncertainty tools (SlicerLungAI backend)."
    )
    _add_global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    info = commands.add_parser("info", help="versions, device and registered models")
    info.set_defaults(func=_info)
    demo = commands.add_parser("demo", help="run every module on bundled data and write an HTML report")
    demo.add_argument("--out", required=True, help="output folder (created; must be empty unless --overwrite)")
    demo.add_argument("--overwrite", action="store_true", help="replace files in an existing output folder")
    demo.set_defaults(func=_demo)
    for module in modules.available("cli"):
        module.register(commands)
    for child in _subparsers(parser):
        _add_global_options(child, top=False)
    return parser


def _reuse_freed_memory() -> None:
    """Keep freed large blocks in the process heap (glibc only; elsewhere nothing happens).

    glibc gives every freed block of more than 32 MB back to the system, so each full-volume array of a command
    (a 512 x 512 x 300 CT: 80-320 MB per mask or float map) is page-faulted and zeroed afresh. With ``mmap``
    allocation off and a high trim threshold the heap reuses them: ``covid segment`` on that CT spent 9.5 instead
    of 4.8 s of system time (bench/e2e), at about 0.6 GB more peak memory (freed blocks stay mapped).
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    m_trim_threshold, m_mmap_max = -1, -4  # glibc's mallopt parameters
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(m_mmap_max, 0)
        libc.mallopt(m_trim_threshold, 2**31 - 1)
    except (OSError, AttributeError):  # not glibc
        pass


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _reuse_freed_memory()
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = CLIContext(device=args.device, progress_style=args.progress, argv=argv)
    received: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        """First signal: cancel at the next check; a second one interrupts at once (both write nothing)."""
        received.append(signum)
        if ctx.cancel.cancelled:
            raise KeyboardInterrupt
        ctx.cancel.cancel()

    for signum in EXIT_SIGNAL:
        signal.signal(signum, on_signal)
    try:
        return int(args.func(args, ctx) or EXIT_OK)
    except BrokenPipeError:  # output piped into a reader that stopped early (e.g. head)
        sys.stdout = open(os.devnull, "w")
        return EXIT_OK
    except (Cancelled, KeyboardInterrupt):
        ctx.close()
        if args.debug:
            traceback.print_exc()
        what = "terminated" if received and received[0] == signal.SIGTERM else "cancelled"
        print(f"lungai: {what}; nothing was written.", file=sys.stderr)
        return EXIT_SIGNAL[received[0] if received else signal.SIGINT]
    except LungAIError as error:
        ctx.close()
        if args.debug:
            traceback.print_exc()
        print(f"lungai: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as error:  # noqa: BLE001 - the one place that reports internal errors
        ctx.close()
        if args.debug:
            traceback.print_exc()
        print(
            f"lungai: internal error: {type(error).__name__}: {error} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
    finally:
        ctx.close()


def run() -> None:
    sys.exit(main())
