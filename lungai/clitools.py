"""What every module's ``cli.py`` shares: the same flags with the same meaning, and the same output lines.

- ``--weights FILE``: a checkpoint file; ``--model ID``: a registered model (``lungai info`` lists them);
  neither: the module's default model. Never both.
- ``--register ID``: publish the trained weights under ID in the user's model registry.
- ``--ema DECAY``: train with an exponential moving average of the weights (``TrainOptions.ema``); the average is
  validated, saved and shipped.
- ``--overwrite``: replace existing output files (otherwise a command refuses before doing any work).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable
from pathlib import Path

from lungai.contract import ModuleDescriptor
from lungai.outputs import check_folder


def add_model_options(parser, descriptor: ModuleDescriptor) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--weights", metavar="FILE", help="checkpoint file (.pt) written by a lungai train command")
    group.add_argument(
        "--model", metavar="ID", help=f"registered model id (default: {descriptor.default_model_id}; see lungai info)"
    )


def add_register_option(parser) -> None:
    parser.add_argument("--register", metavar="ID", help="publish the trained weights under ID in your model registry")


def add_ema_option(parser) -> None:
    parser.add_argument(
        "--ema",
        type=float,
        metavar="DECAY",
        help="validate, save and ship an exponential moving average of the weights, updated after every optimiser "
        "step with this decay (in [0, 1); old steps fade over about 1/(1-DECAY) steps; see lungai.training)",
    )


def add_overwrite_option(parser) -> None:
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")


def command_line(argv: list[str]) -> str:
    """A command as typed (``ctx.argv``), for the registry; absolute paths are shortened to their file names."""
    return "lungai " + " ".join(shlex.quote(Path(a).name if Path(a).is_absolute() else a) for a in argv)


def check_outputs(out_dir: str | Path, names: Iterable[str], overwrite: bool) -> None:
    """Refuse before any work when a fixed-name output exists (patterns such as ``nodule_{n}.png`` are skipped)."""
    check_folder(out_dir, [n for n in names if "{" not in n], overwrite)


def print_written(paths: Iterable[str | Path], registered=None) -> None:
    for path in paths:
        print(f"written: {path}")
    if registered is not None:
        print(f"registered: {registered.id} ({registered.sha256[:12]}) in {registered.folder}")


def replace(config, **changes):
    """``dataclasses.replace`` ignoring the changes that are None (options left at their default)."""
    return dataclasses.replace(config, **{k: v for k, v in changes.items() if v is not None})
