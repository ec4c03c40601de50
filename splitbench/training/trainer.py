"""A resumable classifier training loop over tensors held on the training device.

One epoch = one pass over a random permutation of the training set in batches of
``batch_size`` (the last, partial batch is kept). After every epoch the full state —
model, optimizer, schedule, RNGs, history — is written atomically to ``last.pt`` in the
checkpoint directory, so an interrupted run continues from the last finished epoch with
the same result it would have had uninterrupted (up to nondeterministic GPU kernels).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn

from splitbench.errors import SplitbenchError
from splitbench.results import atomic_open
from splitbench.training.augment import CifarAugment, normalize
from splitbench.weights import read_tensor_file

CHECKPOINT_NAME = "last.pt"


@dataclass(frozen=True)
class TrainConfig:
    """The recipe; it is stored in every checkpoint and a resumed run must match it."""

    epochs: int = 200
    batch_size: int = 512
    lr: float = 1e-4
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine annealing to 0 over `epochs`, stepped once per epoch
    label_smoothing: float = 0.0
    seed: int = 0
    amp: bool = True  # bf16 autocast on CUDA; ignored on CPU
    compile: bool = False
    eval_every: int = 1


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    test_top1: float | None = None
    epochs_run_now: int = 0
    resumed_from_epoch: int = 0


def pick_device(device: str) -> torch.device:
    """``auto`` = the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise SplitbenchError(f"unknown device {device!r}; use auto, cpu or cuda[:N]") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise SplitbenchError(f"--device {device}: no CUDA device is available here")
    return chosen


def train_classifier(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor] | None,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    config: TrainConfig,
    checkpoint_dir: Path,
    device: torch.device,
    augment: CifarAugment | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place on uint8 ``train`` images; resume from ``checkpoint_dir`` if it holds a run."""
    augment = augment or CifarAugment()
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    result = TrainResult()
    start_epoch = _resume(checkpoint_dir, model, optimizer, scheduler, config, result)
    if start_epoch == 0:
        torch.manual_seed(config.seed)

    images, labels = train[0].to(device), train[1].to(device)
    test_on_device = None if test is None else (test[0].to(device), test[1].to(device))
    step = _compiled_step(model, config, device)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)

    with _progress(progress) as bar:
        epochs_task = bar.add_task("epochs", total=config.epochs, completed=start_epoch, info="")
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            loss, top1 = _train_epoch(step, model, optimizer, loss_fn, images, labels, augment, mean, std, config, device, bar)
            scheduler.step()
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss, "train_top1": top1}
            if test_on_device is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
                row["test_top1"] = accuracy(model, *test_on_device, mean=mean, std=std, config=config)
            row["epoch_s"] = time.perf_counter() - started
            row["images_per_s"] = len(images) / row["epoch_s"]
            result.history.append(row)
            result.epochs_run_now += 1
            _save(checkpoint_dir, model, optimizer, scheduler, config, result)
            bar.update(epochs_task, advance=1, info=_describe(row))
            if on_epoch is not None:
                on_epoch(row)
    result.test_top1 = next((row["test_top1"] for row in reversed(result.history) if "test_top1" in row), None)
    return result


def accuracy(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, mean: tuple[float, ...], std: tuple[float, ...],
    config: TrainConfig, batch_size: int = 1000,
) -> float:
    """Top-1 in percent of ``model`` on uint8 ``images`` (no augmentation)."""
    was_training = model.training
    model.eval()
    hits = 0
    with torch.inference_mode(), _autocast(config, images.device):
        for batch, batch_labels in zip(images.split(batch_size), labels.split(batch_size)):
            hits += int((model(normalize(batch, mean, std)).argmax(1) == batch_labels).sum())
    model.train(was_training)
    return 100.0 * hits / len(labels)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int = 250) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics from ``images`` (ready model inputs).

    For a network whose structure changed while it trained (learned groups that still
    flipped): the running averages mix statistics of assignments it no longer has.
    Cumulative averages (momentum None) over the given images replace them.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    for batch in images.split(batch_size):
        model(batch)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    return model.train(was_training)


def _train_epoch(step, model, optimizer, loss_fn, images, labels, augment, mean, std, config, device, bar) -> tuple[float, float]:
    model.train()
    order = torch.randperm(len(images), device=device)
    task = bar.add_task("  images", total=len(images), info="")
    loss_sum = torch.zeros((), device=device)
    hits = torch.zeros((), device=device, dtype=torch.long)
    for index in order.split(config.batch_size):
        batch = normalize(augment(images[index]), mean, std)
        target = labels[index]
        loss, logits = step(batch, target, loss_fn)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # Summed on the device: a .item() per batch would synchronise every step.
        loss_sum += loss.detach() * len(index)
        hits += (logits.detach().argmax(1) == target).sum()
        bar.update(task, advance=len(index))
    bar.remove_task(task)
    return float(loss_sum) / len(images), 100.0 * int(hits) / len(images)


def _compiled_step(model: nn.Module, config: TrainConfig, device: torch.device):
    forward = torch.compile(model) if config.compile else model

    def step(batch: torch.Tensor, target: torch.Tensor, loss_fn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        with _autocast(config, device):
            logits = forward(batch)
            return loss_fn(logits.float(), target), logits

    return step


def _autocast(config: TrainConfig, device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.amp and device.type == "cuda")


def _save(directory: Path, model, optimizer, scheduler, config: TrainConfig, result: TrainResult) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "config": asdict(config),
        "history": result.history,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    with atomic_open(directory / CHECKPOINT_NAME, "wb") as handle:
        torch.save(state, handle)


def _resume(directory: Path, model, optimizer, scheduler, config: TrainConfig, result: TrainResult) -> int:
    path = directory / CHECKPOINT_NAME
    if not path.is_file():
        return 0
    state: dict[str, Any] = read_tensor_file(path, "training checkpoint")
    stored = state["config"]
    recipe = {k: v for k, v in asdict(config).items() if k not in ("compile", "eval_every")}
    changed = {k: (stored.get(k), v) for k, v in recipe.items() if stored.get(k) != v}
    if changed:
        raise SplitbenchError(
            f"{path} was trained with another recipe ({', '.join(f'{k}: {a} -> {b}' for k, (a, b) in changed.items())}); "
            "use another --out or the same options"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng_cpu"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    result.history = list(state["history"])
    result.resumed_from_epoch = len(result.history)
    return len(result.history)


def _describe(row: dict[str, float]) -> str:
    test = f" test {row['test_top1']:.2f} %" if "test_top1" in row else ""
    return f"loss {row['train_loss']:.3f} train {row['train_top1']:.2f} %{test} {row['images_per_s']:,.0f} images/s"


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not enabled,
    )
