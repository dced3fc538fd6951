"""One training loop for every model: Adam with a constant or cosine learning rate, early stopping on
the validation metric (patience, and the median rule against earlier candidates), progress with loss
and speed, per-epoch checkpoints, resume without losing finished epochs, data parallel under
``torchrun``, mixed precision on GPU."""

from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from ctscreen.training.config import OptimiserConfig
from ctscreen.training.stopping import below_median

Batch = tuple[torch.Tensor, torch.Tensor]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def distributed() -> tuple[int, int]:
    """(rank, world size); starts the process group when launched by ``torchrun``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def default_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


@dataclass
class EpochRecord:
    epoch: int
    loss: float
    seconds: float
    samples_per_second: float
    validation: dict = field(default_factory=dict)
    lr: float | None = None  # the learning rate the epoch trained at


@dataclass
class TrainingResult:
    history: list[EpochRecord]
    best_epoch: int | None
    best_metric: float | None
    checkpoint: Path | None
    stopped_early: bool = False  # ``patience`` epochs passed without a better validation metric, or the median rule ended it


def fit(
    model: nn.Module,
    loss_fn: Callable[[object, torch.Tensor], torch.Tensor],
    batches: Callable[[int, int, int], Iterable[Batch]],
    optimiser: OptimiserConfig,
    checkpoint_dir: str | Path,
    validate: Callable[[nn.Module], dict] | None = None,
    metric: str | None = None,
    validate_every: int = 1,
    description: str = "train",
    progress: bool = True,
    device: torch.device | None = None,
    peers: Sequence[Sequence[EpochRecord]] = (),
) -> TrainingResult:
    """Train for ``optimiser.epochs`` epochs, resuming from ``checkpoint_dir/last.pt`` if present.

    ``batches(epoch, rank, world)`` yields this rank's (input, target) batches for an epoch;
    ``validate(model)`` returns metrics every ``validate_every`` epochs and at the last, and
    ``metric`` (higher is better) picks ``best.pt``; with ``optimiser.patience`` training stops once
    that many epochs have passed since the best one (the cosine schedule still spans every epoch);
    with ``optimiser.median_stop_from`` it stops where its best metric trails the median of the
    ``peers`` (the histories of candidates trained before it) at the same epoch.
    """
    rank, world = distributed()
    device = device or default_device()
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=optimiser.lr, weight_decay=optimiser.weight_decay)
    schedule = _schedule(opt, optimiser)
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    checkpoint_dir = Path(checkpoint_dir)
    last, best = checkpoint_dir / "last.pt", checkpoint_dir / "best.pt"
    history: list[EpochRecord] = []
    best_epoch, best_metric, stopped = None, None, False
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimiser"])
        scaler.load_state_dict(state["scaler"])
        schedule.load_state_dict(state["schedule"])
        stopped = state["stopped_early"]
        history = [EpochRecord(**r) for r in state["history"]]
        best_epoch, best_metric = state["best_epoch"], state["best_metric"]
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
    trained = nn.parallel.DistributedDataParallel(model) if world > 1 else model

    for epoch in range(len(history) + 1, optimiser.epochs + 1):
        if stopped:
            break
        trained.train()
        start, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(batches(epoch, rank, world), desc=f"{description} epoch {epoch}/{optimiser.epochs}", unit="batch",
                   disable=not progress or rank != 0, leave=False)
        for inputs, targets in bar:
            inputs, targets = inputs.to(device), targets.to(device)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                loss = loss_fn(trained(inputs), targets)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            total += float(loss.detach()) * len(inputs)
            seen += len(inputs)
            bar.set_postfix(loss=f"{total / seen:.4f}", samples_per_s=f"{seen / (time.perf_counter() - start):.2f}")
        if world > 1:
            sums = torch.tensor([total, seen], dtype=torch.float64, device=device)
            dist.all_reduce(sums)
            total, seen = float(sums[0]), int(sums[1])
        seconds = time.perf_counter() - start
        record = EpochRecord(epoch, total / max(seen, 1), round(seconds, 3), round(seen / seconds, 3) if seconds else 0.0,
                             lr=opt.param_groups[0]["lr"])
        schedule.step()
        if validate is not None and rank == 0 and (epoch % validate_every == 0 or epoch == optimiser.epochs):
            model.eval()
            with torch.no_grad():
                record.validation = validate(model)
        history.append(record)
        if rank == 0:
            value = record.validation.get(metric) if metric else None
            if value is not None and (best_metric is None or value > best_metric):
                best_epoch, best_metric = epoch, float(value)
                _save_atomic({"model": model.state_dict(), "epoch": epoch, "metric": best_metric}, best)
            patience_spent = optimiser.patience is not None and best_epoch is not None and epoch - best_epoch >= optimiser.patience
            trailing = (not patience_spent and optimiser.median_stop_from is not None and bool(record.validation)
                        and below_median(epoch, best_metric, peers, metric, optimiser.median_stop_from))
            stopped = patience_spent or trailing
            _save_atomic(
                {
                    "model": model.state_dict(),
                    "optimiser": opt.state_dict(),
                    "scaler": scaler.state_dict(),
                    "schedule": schedule.state_dict(),
                    "stopped_early": stopped,
                    "history": [r.__dict__ for r in history],
                    "best_epoch": best_epoch,
                    "best_metric": best_metric,
                    "torch_rng": torch.get_rng_state(),
                    "numpy_rng": np.random.get_state(),
                },
                last,
            )
            if progress:
                shown = ", ".join(f"{k} {v:.4f}" for k, v in record.validation.items() if isinstance(v, float))
                tqdm.write(f"{description} epoch {epoch}/{optimiser.epochs}: loss {record.loss:.4f}, "
                           f"{record.samples_per_second:.2f} samples/s" + (f", {shown}" if shown else ""), file=sys.stderr)
                if patience_spent:
                    tqdm.write(f"{description}: stopped early after epoch {epoch}, no better {metric} since epoch {best_epoch}", file=sys.stderr)
                if trailing:
                    tqdm.write(f"{description}: stopped after epoch {epoch}, its best {metric} {best_metric:.4f} below the median "
                               "of the earlier candidates' running averages", file=sys.stderr)
        if world > 1:
            stop = torch.tensor([float(stopped)], device=device)
            dist.broadcast(stop, 0)  # every rank leaves the loop together
            stopped = bool(stop.item())
            dist.barrier()
    return TrainingResult(history, best_epoch, best_metric, best if best.exists() else last if last.exists() else None, stopped)


def _schedule(opt: torch.optim.Optimizer, optimiser: OptimiserConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """Stepped once an epoch: constant, or cosine from ``lr`` to zero over ``epochs`` (large steps
    while the loss falls fast, small ones to settle: short runs need both)."""
    if optimiser.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(optimiser.epochs, 1))
    return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)


def _save_atomic(state: dict, path: Path) -> None:
    """Write beside the target and rename, so an interruption never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    partial.replace(path)
