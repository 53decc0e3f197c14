"""One generic trainer for every lungai network.

A task object supplies ``training_step`` (a scalar loss) and ``validation_step`` (per-batch mean
metrics); the trainer owns everything else: seeding, optimiser and scheduler from the config,
mixed precision on CUDA, checkpoints (:mod:`lungai.checkpoint`), resume, best-checkpoint
selection on ``config.monitor``, early stopping, a CSV log, progress and cancellation. Started under
``torchrun`` (``WORLD_SIZE`` > 1) it trains with DistributedDataParallel: gloo on CPU, nccl on
CUDA; only rank 0 writes files.

The shared recipe (issue 13), all in :class:`TrainConfig`:

- learning-rate schedule per epoch (:func:`make_scheduler`): ``cosine`` decay to ``min_lr`` over the run;
  ``sgdr``, cosine annealing with warm restarts (Loshchilov & Hutter, ICLR 2017, Eq. 5): the rate starts at
  ``lr``, falls along a half cosine to ``min_lr`` and jumps back to ``lr`` every ``sgdr_t0`` epochs (cycles grow by
  ``sgdr_t_mult``). UGS-Net (seed 001 Sec. IV-A: "SGDR ... learning rate updated every 50 epochs", 200 epochs) is
  ``scheduler="sgdr", sgdr_t0=50, sgdr_t_mult=1``: the rate is back at ``lr`` at epochs 0, 50, 100, 150. ``step``
  multiplies by ``gamma`` every ``step_size`` epochs. ``warmup_epochs`` > 0 prepends a linear ramp from
  ``lr / (warmup_epochs + 1)`` to ``lr``; the schedule then starts from its beginning.
- early stopping: with ``patience`` set and a validation set, training stops once ``patience`` epochs have
  passed since the best value of ``monitor``; ``best.pt`` keeps the best epoch, and ``restore_best`` loads its
  weights into the model at the end.
- model selection: ``keep="best"`` (default) makes the epoch with the best ``monitor`` value ``best.pt``;
  ``keep="last"`` makes every epoch count as the best, so ``best.pt`` and the model end with the last epoch's
  weights and validation is only logged. A small validation set makes the monitored value noisy, and selecting on it
  can keep an early, lucky epoch while the learning rate is still high (``bench/nlb/recipe_runs/README.md``); at
  the end of a decaying schedule the last epoch needs no such choice. ``keep="last"`` excludes early stopping.
- augmentation: datasets that define ``set_epoch(epoch)`` (:class:`lungai.augmentation.AugmentedDataset`) are told
  the epoch before it starts, so augmentation, like the data order, is a function of (seed, epoch) and a resumed
  run reproduces the uninterrupted one.
- determinism: :func:`seed_everything` seeds Python, numpy and torch (and makes cuDNN deterministic); the
  trainer reseeds per epoch.
- weight averaging: with ``ema_decay`` = d set, :class:`WeightAverage` keeps an exponential moving average of the
  weights, the usual form of iterate averaging (Polyak & Juditsky, SIAM J. Control Optim. 30(4), 1992, average the
  iterates of stochastic approximation; the exponential form weights recent ones most). After the n-th optimiser
  step (n = 0, 1, ...) of a run, every floating-point parameter and buffer (batch-norm statistics too) becomes
  ``a <- d_n * a + (1 - d_n) * w`` with ``d_n = min(d, (1 + n) / (10 + n))``; integer buffers are copied. The
  average starts at the initial weights; the weight of an old step falls by 1/e after about ``1 / (1 - d)`` steps
  (d = 0.99: 100 steps, 0.995: 200), and the warm-up term (TensorFlow's ``ExponentialMovingAverage`` with
  ``num_updates``) caps that horizon at about (10 + n) / 9 steps, a ninth of the run so far, so a stage shorter
  than the horizon (or starting from random weights) is not averaged with its starting point (without it, 60 steps at
  d = 0.995 would keep 74 % of the starting weights; the warm-up is our choice, not Polyak's). The average is
  what is validated, selected as best, saved in ``best.pt`` and ``last.pt`` and left in the model at the end;
  ``last.pt``'s training state also holds the trained (not averaged) weights and the number of updates, so a
  resumed run continues both. d = 0 gives the plain run; ``None`` (default) turns averaging off.
"""

from __future__ import annotations

import copy
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
from torch.optim import lr_scheduler
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
    sgdr_t0: int = 50  # epochs of the first SGDR cycle
    sgdr_t_mult: int = 1  # each SGDR cycle is this many times longer than the previous one
    min_lr: float = 0.0  # floor of the cosine and SGDR schedules
    warmup_epochs: int = 0  # linear warm-up before the schedule
    step_size: int = 10
    gamma: float = 0.1
    seed: int = 0
    num_workers: int = 0
    amp: bool = True
    device: str = "auto"
    monitor: str = "dice"
    monitor_mode: str = "max"  # max | min
    val_every: int = 1
    patience: int | None = None  # early stopping: epochs without a better monitored value; None = off
    keep: str = "best"  # best | last: which epoch is best.pt (module docstring, model selection)
    restore_best: bool = False  # load the best epoch's weights into the model when training ends (see train())
    max_steps_per_epoch: int | None = None
    grad_clip: float | None = None
    ema_decay: float | None = None  # exponential moving average of the weights (module docstring); None = off
    out_dir: str | None = None
    resume: str | None = None

    def __post_init__(self) -> None:
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise LungAIError(f"The weight-average decay (--ema) must be in [0, 1), not {self.ema_decay}.")
        if self.keep not in ("best", "last"):
            raise LungAIError(f"keep must be 'best' or 'last', not {self.keep!r}.")
        if self.keep == "last" and self.patience is not None:
            raise LungAIError("Early stopping (patience) chooses an epoch by validation; it cannot keep the last one.")


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
    stopped_epoch: int | None = None  # last epoch trained when early stopping ended the run, else None


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices); cuDNN picks deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


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


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> lr_scheduler.LRScheduler | None:
    """Per-epoch learning-rate schedule (see the module docstring); stepped once after each epoch."""
    name = config.scheduler.lower()
    warmup = max(0, config.warmup_epochs)
    if name == "none":
        schedule = None
    elif name == "cosine":
        schedule = lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(1, config.epochs - warmup), eta_min=config.min_lr
        )
    elif name == "sgdr":
        schedule = lr_scheduler.CosineAnnealingWarmRestarts(
            optimizer, T_0=max(1, config.sgdr_t0), T_mult=config.sgdr_t_mult, eta_min=config.min_lr
        )
    elif name == "step":
        schedule = lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma)
    else:
        raise LungAIError(f"Unknown scheduler '{config.scheduler}': choose none, cosine, sgdr or step.")
    if warmup == 0:
        return schedule
    ramp = lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup + 1), end_factor=1.0, total_iters=warmup)
    if schedule is None:
        return ramp
    return lr_scheduler.SequentialLR(optimizer, [ramp, schedule], milestones=[warmup])


class WeightAverage:
    """Exponential moving average of a network's parameters and buffers (see the module docstring).

    ``module`` is a copy of the network holding the average; ``updates`` counts the optimiser steps averaged.
    """

    def __init__(self, model: nn.Module, decay: float, updates: int = 0) -> None:
        self.decay = decay
        self.updates = updates
        self.module = copy.deepcopy(unwrap(model)).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    def current_decay(self) -> float:
        """``d_n``: the configured decay, capped by the warm-up term ``(1 + n) / (10 + n)``."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (call after each optimiser step)."""
        decay = self.current_decay()
        current = unwrap(model).state_dict()
        for key, average in self.module.state_dict().items():
            if average.is_floating_point():
                average.mul_(decay).add_(current[key].detach(), alpha=1.0 - decay)
            else:
                average.copy_(current[key])
        self.updates += 1


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
    training = model.training
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
    model.train(training)
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


def _out_of_patience(
    config: TrainConfig, epochs_done: int, best_epoch: int, validating: bool, ddp: _Distributed
) -> bool:
    """Early-stopping decision after ``epochs_done`` epochs, taken on rank 0 and shared with every rank."""
    stop = config.patience is not None and validating and best_epoch > 0 and epochs_done - best_epoch >= config.patience
    if ddp.world_size > 1 and config.patience is not None:
        flag = torch.tensor([int(stop)])
        dist.broadcast(flag, src=0)
        stop = bool(flag.item())
    return stop


def _set_epoch(datasets: tuple[Dataset | None, ...], epoch: int) -> None:
    """Tell datasets that draw per-epoch randomness (augmentation) which epoch starts."""
    for dataset in datasets:
        if dataset is not None and hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)


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
    the trainer seeds again per epoch for the data order and dropout and calls ``set_epoch(epoch)`` on datasets
    that define it, so resuming from ``last.pt`` continues exactly as the uninterrupted run would have.
    With ``config.restore_best`` the model ends with the best epoch's weights (after a resume: if no epoch improved,
    those of ``best.pt`` beside the resumed checkpoint); otherwise with the last epoch's.
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
        if state.training_state is None:
            raise LungAIError(
                f"Cannot resume from {config.resume}: it has no training state (use a last.pt checkpoint)."
            )
        # With weight averaging the checkpoint's weights are the average and the trained ones are kept apart.
        model.load_state_dict(state.training_state.get("weights", state.state_dict))
        optimizer.load_state_dict(state.training_state["optimizer"])
        if scheduler is not None and state.training_state.get("scheduler"):
            scheduler.load_state_dict(state.training_state["scheduler"])
        start_epoch = int(state.training_state["epoch"]) + 1
        best = float(state.training_state["best_metric"])
        best_epoch = int(state.training_state["best_epoch"])
        history = json.loads(state.training_state["history"])
    average = None
    if config.ema_decay is not None:
        average = WeightAverage(model, config.ema_decay)
        if config.resume:
            average.module.load_state_dict(state.state_dict)
            average.updates = int(state.training_state.get("ema_updates", 0))
    shipped = average.module if average is not None else model  # what is validated, saved and returned
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
    best_state = _resumed_best_state(config, best_epoch, device) if config.restore_best else None
    stopped_epoch = None
    for epoch in range(start_epoch, config.epochs):
        if _out_of_patience(config, epoch, best_epoch, val_loader is not None, ddp):
            stopped_epoch = epoch
            break
        started = time.perf_counter()
        # Per-epoch seeds make a resumed run draw the same batches, augmentations and dropout masks as an
        # uninterrupted one.
        generator.manual_seed(config.seed + epoch)
        torch.manual_seed(config.seed + epoch)
        if sampler is not None:
            sampler.set_epoch(epoch)
        _set_epoch((train_dataset, val_dataset), epoch)
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
            if average is not None:
                average.update(model)
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
        metrics = _validate(shipped, task, val_loader, device, cancel) if validate else {}
        row.update({f"val_{key}": value for key, value in metrics.items()})
        row["seconds"] = time.perf_counter() - started
        history.append(row)
        improved = False
        if val_loader is None or config.keep == "last":
            improved, best, best_epoch = True, metrics.get(config.monitor, float("nan")), epoch + 1
        elif validate:
            if config.monitor not in metrics:
                raise LungAIError(
                    f"Validation returned {sorted(metrics)}, but the monitored metric is '{config.monitor}'."
                )
            if _is_better(metrics[config.monitor], best, config.monitor_mode) or best_epoch < 0:
                improved, best, best_epoch = True, metrics[config.monitor], epoch + 1
        if improved and config.restore_best:
            best_state = _copy_state(shipped)
        if ddp.is_main and out_dir is not None:
            _write_log(out_dir / "log.csv", history)
            if improved:
                save_checkpoint(best_checkpoint, shipped, **header, metrics={**metrics, "epoch": epoch + 1})
            training_state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else {},
                "epoch": epoch,
                "best_metric": best,
                "best_epoch": best_epoch,
                "history": json.dumps(history),
                "config": json.dumps(asdict(config)),
            }
            if average is not None:
                training_state["weights"] = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
                training_state["ema_updates"] = average.updates
            save_checkpoint(
                last_checkpoint,
                shipped,
                **header,
                metrics={**metrics, "epoch": epoch + 1},
                training_state=training_state,
            )
        if ddp.world_size > 1:
            dist.barrier()
    if best_state is not None:
        unwrap(model).load_state_dict(best_state)
    elif average is not None:
        unwrap(model).load_state_dict(average.module.state_dict())
    unwrap(model).eval()
    return TrainResult(best, best_epoch, best_checkpoint, last_checkpoint, history, stopped_epoch)


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in unwrap(model).state_dict().items()}


def _resumed_best_state(config: TrainConfig, best_epoch: int, device: torch.device) -> dict[str, Any] | None:
    """Weights of the best epoch before a resume: ``best.pt`` beside the resumed ``last.pt``, if it is that epoch."""
    if not config.resume or best_epoch <= 0:
        return None
    path = Path(config.resume).with_name("best.pt")
    if not path.is_file():
        return None
    state = load_checkpoint(path, map_location=device)
    return state.state_dict if state.header.get("metrics", {}).get("epoch") == best_epoch else None


def _write_log(path: Path, history: list[dict[str, float]]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
