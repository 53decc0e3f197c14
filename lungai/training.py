"""One generic trainer for every lungai network.

A task object supplies ``training_step`` (a scalar loss) and ``validation_step`` (per-batch mean
metrics); the trainer owns everything else: seeding, optimiser and scheduler from the config,
mixed precision on CUDA, checkpoints (:mod:`lungai.checkpoint`), resume, best-checkpoint
selection on ``config.monitor``, a CSV log, progress and cancellation. Started under
``torchrun`` (``WORLD_SIZE`` > 1) it trains with DistributedDataParallel: gloo on CPU, nccl on
CUDA; only rank 0 writes files.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lungai.checkpoint import load_checkpoint, save_checkpoint, unwrap
from lungai.device import autocast, resolve_device
from lungai.errors import LungAIError
from lungai.progress import CancelToken, ProgressCallback, check_cancel, report


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 8
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: str = "none"  # none | cosine | sgdr | step
    sgdr_t0: int = 50
    sgdr_t_mult: int = 1
    step_size: int = 10
    gamma: float = 0.1
    seed: int = 0
    num_workers: int = 0
    amp: bool = True
    device: str = "auto"
    monitor: str = "dice"
    monitor_mode: str = "max"  # max | min
    val_every: int = 1
    max_steps_per_epoch: int | None = None
    grad_clip: float | None = None
    out_dir: str | None = None
    resume: str | None = None


class TrainTask(Protocol):
    def training_step(self, model: nn.Module, batch: Any) -> torch.Tensor: ...

    def validation_step(self, model: nn.Module, batch: Any) -> dict[str, float]: ...


@dataclass
class TrainResult:
    best_metric: float
    best_epoch: int
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    name = config.optimizer.lower()
    if name == "adam":
        return torch.optim.Adam(parameters, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    raise LungAIError(f"Unknown optimizer '{config.optimizer}': choose adam, adamw or sgd.")


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch learning-rate schedule; ``sgdr`` is cosine annealing with warm restarts."""
    name = config.scheduler.lower()
    if name == "none":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config.epochs))
    if name == "sgdr":
        return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=max(1, config.sgdr_t0), T_mult=config.sgdr_t_mult
        )
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    raise LungAIError(f"Unknown scheduler '{config.scheduler}': choose none, cosine, sgdr or step.")


@dataclass
class _Distributed:
    world_size: int
    rank: int
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_distributed(config: TrainConfig) -> tuple[_Distributed, torch.device]:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Distributed(1, 0, False), resolve_device(config.device)
    device = resolve_device(config.device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        device = torch.device("cpu")  # gloo runs on CPU tensors only
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return _Distributed(dist.get_world_size(), dist.get_rank(), owns), device


def _mean_across_ranks(value: float, weight: float, ddp: _Distributed) -> float:
    if ddp.world_size == 1:
        return value / max(weight, 1e-12)
    totals = torch.tensor([value, weight], dtype=torch.float64)
    dist.all_reduce(totals)
    return float(totals[0] / max(float(totals[1]), 1e-12))


def _batch_size(batch: Any) -> int:
    if isinstance(batch, dict):
        batch = next(iter(batch.values()))
    if isinstance(batch, (list, tuple)):
        batch = batch[0]
    return int(batch.shape[0]) if isinstance(batch, torch.Tensor) else 1


def _validate(
    model: nn.Module, task: TrainTask, loader: DataLoader, device: torch.device, cancel: CancelToken | None
) -> dict[str, float]:
    model.eval()
    sums: dict[str, float] = {}
    count = 0
    with torch.no_grad():
        for batch in loader:
            check_cancel(cancel)
            batch = _to_device(batch, device)
            size = _batch_size(batch)
            for key, value in task.validation_step(model, batch).items():
                sums[key] = sums.get(key, 0.0) + float(value) * size
            count += size
    model.train()
    return {key: value / max(count, 1) for key, value in sums.items()}


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {key: _to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch


def _is_better(value: float, best: float, mode: str) -> bool:
    if math.isnan(value):
        return False
    return value > best if mode == "max" else value < best


def train(
    model: nn.Module,
    task: TrainTask,
    train_dataset: Dataset,
    val_dataset: Dataset | None,
    config: TrainConfig,
    *,
    model_name: str,
    model_config: dict[str, Any],
    training_data: str = "",
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> TrainResult:
    """Train ``model`` (built from ``model_name``/``model_config``) and keep the best checkpoint.

    For a reproducible initialisation build the model right after ``seed_everything(config.seed)``;
    the trainer seeds again per epoch for the data order and dropout, so resuming from ``last.pt``
    continues exactly as the uninterrupted run would have.
    """
    ddp, device = _setup_distributed(config)
    try:
        return _train(
            model,
            task,
            train_dataset,
            val_dataset,
            config,
            ddp,
            device,
            model_name,
            model_config,
            training_data,
            progress,
            cancel,
        )
    finally:
        if ddp.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _train(
    model: nn.Module,
    task: TrainTask,
    train_dataset: Dataset,
    val_dataset: Dataset | None,
    config: TrainConfig,
    ddp: _Distributed,
    device: torch.device,
    model_name: str,
    model_config: dict[str, Any],
    training_data: str,
    progress: ProgressCallback | None,
    cancel: CancelToken | None,
) -> TrainResult:
    seed_everything(config.seed)
    if len(train_dataset) == 0:  # type: ignore[arg-type]
        raise LungAIError("The training set is empty; check the data path and selection.")
    out_dir = Path(config.out_dir) if config.out_dir else None
    if out_dir is not None and ddp.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    model = model.to(device)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config)
    start_epoch, best, best_epoch, history = 0, (-math.inf if config.monitor_mode == "max" else math.inf), -1, []
    if config.resume:
        state = load_checkpoint(config.resume, map_location=device)
        if state.header.get("model_name") != model_name:
            raise LungAIError(
                f"Cannot resume from {config.resume}: it holds a '{state.header.get('model_name')}' model, "
                f"not '{model_name}'."
            )
        model.load_state_dict(state.state_dict)
        if state.training_state is None:
            raise LungAIError(
                f"Cannot resume from {config.resume}: it has no training state (use a last.pt checkpoint)."
            )
        optimizer.load_state_dict(state.training_state["optimizer"])
        if scheduler is not None and state.training_state.get("scheduler"):
            scheduler.load_state_dict(state.training_state["scheduler"])
        start_epoch = int(state.training_state["epoch"]) + 1
        best = float(state.training_state["best_metric"])
        best_epoch = int(state.training_state["best_epoch"])
        history = json.loads(state.training_state["history"])
    if ddp.world_size > 1:
        model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    sampler = (
        DistributedSampler(train_dataset, num_replicas=ddp.world_size, rank=ddp.rank, shuffle=True, seed=config.seed)
        if ddp.world_size > 1
        else None
    )
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(
        train_dataset,
        batch_size=config.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=config.num_workers,
        generator=generator,
        drop_last=False,
    )
    val_loader = (
        DataLoader(val_dataset, batch_size=config.batch_size, shuffle=False, num_workers=config.num_workers)
        if val_dataset is not None
        else None
    )
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and device.type == "cuda")
    steps_per_epoch = (
        len(loader) if config.max_steps_per_epoch is None else min(len(loader), config.max_steps_per_epoch)
    )
    total_steps = max(1, (config.epochs - start_epoch) * steps_per_epoch)
    best_checkpoint = out_dir / "best.pt" if out_dir else None
    last_checkpoint = out_dir / "last.pt" if out_dir else None
    done = 0
    header = dict(model_name=model_name, config=model_config, training_data=training_data)
    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        # Per-epoch seeds make a resumed run draw the same batches and dropout masks as an uninterrupted one.
        generator.manual_seed(config.seed + epoch)
        torch.manual_seed(config.seed + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        model.train()
        loss_sum, seen = 0.0, 0
        for step, batch in enumerate(loader):
            if step >= steps_per_epoch:
                break
            check_cancel(cancel)
            batch = _to_device(batch, device)
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, config.amp):
                loss = task.training_step(model, batch)
            if not torch.isfinite(loss):
                raise LungAIError(
                    f"The training loss became {loss.item()} at epoch {epoch + 1}; lower the learning rate."
                )
            scaler.scale(loss).backward()
            if config.grad_clip:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            size = _batch_size(batch)
            loss_sum += float(loss.detach()) * size
            seen += size
            done += 1
            report(progress, done / total_steps, f"epoch {epoch + 1}/{config.epochs} loss {loss_sum / seen:.4f}")
        row: dict[str, float] = {
            "epoch": epoch + 1,
            "train_loss": _mean_across_ranks(loss_sum, seen, ddp),
            "lr": optimizer.param_groups[0]["lr"],
        }
        if scheduler is not None:
            scheduler.step()
        validate = val_loader is not None and ((epoch + 1) % config.val_every == 0 or epoch + 1 == config.epochs)
        metrics = _validate(model, task, val_loader, device, cancel) if validate else {}
        row.update({f"val_{key}": value for key, value in metrics.items()})
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        improved = False
        if val_loader is None:
            improved, best, best_epoch = True, float("nan"), epoch + 1
        elif validate:
            if config.monitor not in metrics:
                raise LungAIError(
                    f"Validation returned {sorted(metrics)}, but the monitored metric is '{config.monitor}'."
                )
            if _is_better(metrics[config.monitor], best, config.monitor_mode) or best_epoch < 0:
                improved, best, best_epoch = True, metrics[config.monitor], epoch + 1
        if ddp.is_main and out_dir is not None:
            _write_log(out_dir / "log.csv", history)
            if improved:
                save_checkpoint(best_checkpoint, model, **header, metrics={**metrics, "epoch": epoch + 1})
            training_state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "epoch": epoch,
                "best_metric": best,
                "best_epoch": best_epoch,
                "history": json.dumps(history),
                "config": json.dumps(asdict(config)),
            }
            save_checkpoint(
                last_checkpoint, model, **header, metrics={**metrics, "epoch": epoch + 1}, training_state=training_state
            )
        if ddp.world_size > 1:
            dist.barrier()
    unwrap(model).eval()
    return TrainResult(best, best_epoch, best_checkpoint, last_checkpoint, history)


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
