"""A resumable classifier training loop over tensors held on the training device.

One epoch = one pass over a random permutation of the training set in batches of
``batch_size`` (the last, partial batch is kept). The full state — model, optimizer,
schedule, RNGs, history, and inside an epoch its permutation, step and running sums — is
written atomically to ``last.pt`` in the checkpoint directory after every epoch and every
``checkpoint_s`` seconds within one. An interrupted run continues from the last checkpoint
with the same result it would have had uninterrupted (up to nondeterministic GPU kernels),
so a stop loses at most ``checkpoint_s`` of work. A run whose loss or weights stop being
finite stops in one line before its next checkpoint (:mod:`splitbench.training.guard`).

Precision: ``auto`` is bf16 autocast where the hardware computes bf16 natively (a CUDA
device; a CPU with AVX512_BF16 or AMX) and fp32 elsewhere. On a CPU without native bf16
(AVX2 only) oneDNN emulates bf16 matrix products, which measured 37× *slower* than fp32
for the seed 002 ViT, so ``auto`` never picks it there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from splitbench.errors import SplitbenchError
from splitbench.metrics import classifier_top1, percent, top1_hits
from splitbench.progress import track
from splitbench.training.augment import CifarAugment, normalize
from splitbench.training.distributed import Group, global_batchnorm, local_batchnorm
from splitbench.training.guard import DivergenceGuard
from splitbench.weights import read_tensor_file, write_tensor_file

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
    precision: str = "fp32"  # "bf16" (autocast) or "fp32"; resolve "auto" with resolve_precision first
    compile: bool = False
    eval_every: int = 1
    checkpoint_s: float = 600.0  # seconds between checkpoints inside an epoch


# Settings that change how a run proceeds but not what it computes: a resumed run may differ in them.
RESUMABLE_SETTINGS = ("compile", "eval_every", "checkpoint_s")
PRECISIONS = ("auto", "bf16", "fp32")


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


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 matrix products in hardware (so autocast speeds training up)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: ask oneDNN, which knows the ISA it dispatches to
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, device: torch.device) -> str:
    """``auto`` → bf16 where :func:`native_bf16`, fp32 elsewhere; ``bf16``/``fp32`` as asked."""
    if requested not in PRECISIONS:
        raise SplitbenchError(f"unknown precision {requested!r}; use {', '.join(PRECISIONS)}")
    if requested == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return requested


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
    on_step: Callable[[int, int], None] | None = None,
    progress: bool = True,
    group: Group = Group(),
) -> TrainResult:
    """Train ``model`` in place on uint8 ``train`` images; resume from ``checkpoint_dir`` if it holds a run.

    ``on_step(epoch, step)`` is called after every optimizer step (``epoch`` counts from 0,
    ``step`` from 1), ``on_epoch(row)`` after every epoch. Under ``torchrun`` (``group`` with
    more than one rank) each rank trains on its share of every batch; only rank 0 saves and
    evaluates, and checkpoints come once per epoch (a mid-epoch one would need every rank's sums).
    """
    if config.precision not in ("bf16", "fp32"):
        raise ValueError(f"TrainConfig.precision must be 'bf16' or 'fp32' (resolve 'auto' first), got {config.precision!r}")
    augment = augment or CifarAugment()
    model.to(device)
    if group.distributed:
        # BatchNorm over the global batch, as one process computes it, not over each rank's share.
        # Swapped in before the optimizer is built: the new modules' weights are the ones that train.
        global_batchnorm(model, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    result = TrainResult()
    start_epoch, partial = _resume(checkpoint_dir, model, optimizer, scheduler, config, result)
    if start_epoch == 0 and partial is None:
        torch.manual_seed(config.seed)
    saver = _Saver(checkpoint_dir, model, optimizer, scheduler, config, result, enabled=group.main,
                   within_epochs=not group.distributed)

    images, labels = train[0].to(device), train[1].to(device)
    test_on_device = None if test is None or not group.main else (test[0].to(device), test[1].to(device))
    trained = model
    if group.distributed:  # gradients averaged over ranks; parameters broadcast from rank 0 at the start
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    step = _compiled_step(trained, config, device)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    # Built after the BatchNorm swap: its tensors are the ones that train (buffers too: they are exported).
    guard = DivergenceGuard([*model.named_parameters(), *model.named_buffers()], checkpoint_dir / CHECKPOINT_NAME,
                            device, ranks_agree=not group.distributed)

    shown = progress and group.main
    with track("epochs", config.epochs, unit="epochs", enabled=shown, completed=start_epoch) as bar:
        for epoch in range(start_epoch, config.epochs):
            started = time.perf_counter()
            loss, top1 = _train_epoch(step, model, optimizer, loss_fn, images, labels, augment, mean, std, config, device,
                                      shown, epoch=epoch, partial=partial, saver=saver, on_step=on_step, group=group,
                                      guard=guard)
            guard.check(epoch, None, loss)  # the epoch's loss is summed over the ranks: they agree on it
            partial = None
            scheduler.step()
            row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": loss, "train_top1": top1}
            if test_on_device is not None and ((epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs):
                row["test_top1"] = _test_top1(model, *test_on_device, mean=mean, std=std, config=config)
            row["epoch_s"] = time.perf_counter() - started
            row["images_per_s"] = len(images) / row["epoch_s"]
            result.history.append(row)
            result.epochs_run_now += 1
            saver.save()
            bar.advance(info=_describe(row))
            if on_epoch is not None:
                on_epoch(row)
    if group.distributed:
        local_batchnorm(model)  # what runs next runs in this process alone: no rank to sum statistics with
    result.test_top1 = next((row["test_top1"] for row in reversed(result.history) if "test_top1" in row), None)
    return result


def _test_top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, mean: tuple[float, ...],
               std: tuple[float, ...], config: TrainConfig) -> float:
    """Top-1 in percent of ``model`` (in eval mode for it) on uint8 ``images``, no augmentation, at the run's precision."""
    was_training = model.training
    model.eval()
    with _autocast(config, images.device):
        top1 = classifier_top1(model, images, labels, batch_size=1000, transform=lambda batch: normalize(batch, mean, std))
    model.train(was_training)
    return top1


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


def _train_epoch(step, model, optimizer, loss_fn, images, labels, augment, mean, std, config, device, shown, *,
                 epoch: int, partial: dict[str, Any] | None, saver: _Saver, on_step, guard: DivergenceGuard,
                 group: Group = Group()) -> tuple[float, float]:
    model.train()
    if partial is None:
        order = torch.randperm(len(images), device=device)
        done = 0
        loss_sum = torch.zeros((), device=device)
        hits = torch.zeros((), device=device, dtype=torch.long)
    else:  # resuming inside this epoch: its permutation, the steps taken and the sums so far
        order, done = partial["order"].to(device), partial["step"]
        loss_sum, hits = partial["loss_sum"].to(device), partial["hits"].to(device)
    batches = order.split(config.batch_size)
    with track(f"epoch {epoch + 1}", len(images), unit="images", enabled=shown, transient=True,
               completed=sum(len(b) for b in batches[:done])) as bar:
        for number, index in enumerate(batches[done:], start=done + 1):
            # Every rank augments the whole batch (the same random draws as one process) and keeps its share.
            mine = group.shard(len(index), device)
            batch = normalize(augment(images[index]), mean, std)[mine]
            target = labels[index][mine]
            loss, logits = step(batch, target, loss_fn)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # Summed on the device: a .item() per batch would synchronise every step.
            loss_sum += loss.detach() * len(mine)
            hits += top1_hits(logits.detach(), target).sum()
            bar.advance(len(index))
            saving = number < len(batches) and saver.due()
            guard.after_step(loss, epoch, number, force=saving)
            if saving:
                saver.save({"epoch": epoch, "step": number, "order": order.cpu(), "loss_sum": loss_sum.cpu(),
                            "hits": hits.cpu()})
            if on_step is not None:
                on_step(epoch, number)
    if group.distributed:
        group.sum(loss_sum)
        group.sum(hits)
    return float(loss_sum) / len(images), percent(int(hits), len(images))


def _compiled_step(model: nn.Module, config: TrainConfig, device: torch.device):
    forward = torch.compile(model) if config.compile else model

    def step(batch: torch.Tensor, target: torch.Tensor, loss_fn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        with _autocast(config, device):
            logits = forward(batch)
            return loss_fn(logits.float(), target), logits

    return step


def _autocast(config: TrainConfig, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")


class _Saver:
    """Writes the full training state atomically; knows when the next in-epoch checkpoint is due."""

    def __init__(self, directory: Path, model, optimizer, scheduler, config: TrainConfig, result: TrainResult, *,
                 enabled: bool = True, within_epochs: bool = True) -> None:
        self.directory, self.model, self.optimizer, self.scheduler = directory, model, optimizer, scheduler
        self.config, self.result = config, result
        self.enabled, self.within_epochs = enabled, within_epochs
        self.last = time.monotonic()

    def due(self) -> bool:
        return self.within_epochs and time.monotonic() - self.last >= self.config.checkpoint_s

    def save(self, partial: dict[str, Any] | None = None) -> None:
        if not self.enabled:  # another rank's process: rank 0 writes
            return
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "config": asdict(self.config),
            "history": self.result.history,
            "partial_epoch": partial,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }
        write_tensor_file(self.directory / CHECKPOINT_NAME, state, "training checkpoint")
        self.last = time.monotonic()


def _resume(directory: Path, model, optimizer, scheduler, config: TrainConfig,
            result: TrainResult) -> tuple[int, dict[str, Any] | None]:
    """The epoch to start from and, when the checkpoint was taken inside it, that epoch's state."""
    path = directory / CHECKPOINT_NAME
    if not path.is_file():
        return 0, None
    state: dict[str, Any] = read_tensor_file(path, "training checkpoint")
    if not isinstance(state, dict) or not {"config", "model", "optimizer", "scheduler", "history"} <= state.keys():
        raise SplitbenchError(f"{path} is not a splitbench training checkpoint; remove it or use another --checkpoint-dir")
    stored = state["config"]
    recipe = {k: v for k, v in asdict(config).items() if k not in RESUMABLE_SETTINGS}
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
    partial = state.get("partial_epoch")
    return (partial["epoch"] if partial else len(result.history)), partial


def _describe(row: dict[str, float]) -> str:
    test = f" test {row['test_top1']:.2f} %" if "test_top1" in row else ""
    return f"loss {row['train_loss']:.3f} train {row['train_top1']:.2f} %{test} {row['images_per_s']:,.0f} images/s"
