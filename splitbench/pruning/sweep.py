"""Seed 002's experiment: methods × scopes × ratios on one trained ViT, each result measured.

Every point builds a physically smaller ViT (no masks) and measures it: parameters and
their bytes, MACs (fvcore), top-1 on the test set, and CPU time for 1000 test images at
batch 100 and batch 1. Per-channel losses (the expensive part of importance and stability)
are computed once per sweep and cached on disk, and so is every finished point, so an
interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vit_pytorch.vit import ViT

from splitbench.data import ImageDataset, open_dataset
from splitbench.data.tensors import decode_dataset
from splitbench.errors import SplitbenchError
from splitbench.executors import InProcess, PointSweep, Task, run_points, shared
from splitbench.macs import count_macs
from splitbench.points import PointStore
from splitbench.metrics import classifier_top1, dataset_ms
from splitbench.pruning.scores import (
    DEFAULT_ALPHA,
    METHODS,
    ChannelLosses,
    Scores,
    StabilityFit,
    channel_losses,
    importance_scores,
    spearman,
    stability_scores,
    weight_scores,
)
from splitbench.pruning.select import select_channels
from splitbench.pruning.vit_channels import ChannelGroup, channel_groups
from splitbench.results import atomic_open
from splitbench.training.augment import normalize
from splitbench.zoo.registry import ModelSpec
from splitbench.zoo.vit_pruned import prune_vit, save_pruned_vit
from splitbench.zoo import count_parameters
from splitbench.weights import read_tensor_file

PRUNE_COLUMNS = [
    "method", "scope", "targets", "ratio", "estimator", "alpha", "proxy", "kept_channels", "params", "param_bytes",
    "macs", "top1", "cpu_ms_1000_b100", "cpu_ms_1000_b1", "timing_images", "finetune_epochs", "test_images",
]


@dataclass(frozen=True)
class SweepSettings:
    methods: tuple[str, ...] = METHODS
    scopes: tuple[str, ...] = ("uniform", "global")
    ratios: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    targets: tuple[str, ...] = ("attention",)
    estimator: str = "taylor"
    alpha: float = DEFAULT_ALPHA
    proxy: int = 512
    finetune_epochs: int = 0
    timing_images: int = 1000
    timing_repeats: int = 3


@dataclass
class SweepData:
    """Normalised float inputs: the test set, the proxy set (training images) and timing images."""

    test_images: torch.Tensor
    test_labels: torch.Tensor
    proxy_images: torch.Tensor
    proxy_labels: torch.Tensor


@dataclass
class SweepResult:
    rows: list[dict[str, Any]]
    losses: ChannelLosses | None = None
    fits: list[StabilityFit] = field(default_factory=list)
    scores: dict[str, Scores] = field(default_factory=dict)


def load_sweep_data(spec: ModelSpec, root: Path | None, proxy: int, test_limit: int | None, *,
                    test_set: ImageDataset | None = None, train_set: ImageDataset | None = None) -> tuple[SweepData, dict]:
    """Normalised test images and a proxy set spread evenly over the (class-sorted) training set.

    The data sets are the model's own (its test and train splits) unless given, opened.
    """
    if spec.dataset is None and (test_set is None or train_set is None):
        raise SplitbenchError(f"{spec.name} has no data set to prune on")
    if test_set is None:
        test_set = open_dataset(spec.dataset, split="test", root=root)
    test_set = test_set.limited(test_limit, "spread")  # the test set is class-sorted: keep every class
    if train_set is None:
        train_set = open_dataset(spec.dataset, split="train", root=root)
    if proxy > len(train_set):
        raise SplitbenchError(f"--proxy {proxy} is more than the {len(train_set)} training images")
    proxy_set = train_set.evenly_spaced(proxy)
    test_images, test_labels = decode_dataset(test_set)
    proxy_images, proxy_labels = decode_dataset(proxy_set)
    mean, std = spec.preprocessing.mean, spec.preprocessing.std
    data = SweepData(normalize(test_images, mean, std), test_labels, normalize(proxy_images, mean, std), proxy_labels)
    return data, {"test": test_set.provenance(), "proxy": proxy_set.provenance()}


CACHE_VERSION = 2  # part of every point's cache key: bump it when what a point measures changes


def prune_store(root: Path, checkpoint_sha256: str, settings: SweepSettings, test_images: int,
                data: dict[str, Any] | None = None) -> PointStore:
    """The store of one (checkpoint, settings, data) sweep's finished points, as JSON rows."""
    identity = {**asdict(settings), "checkpoint": checkpoint_sha256, "test_images": test_images}
    if data is not None:  # which images (by content, not name): another data root is other data
        identity["data"] = {split: info.get("content_sha256") for split, info in data.items()}
    for key in ("methods", "scopes", "ratios"):  # a longer sweep reuses a shorter one's points
        identity.pop(key)
    return PointStore.keyed(root, identity, version=CACHE_VERSION)


def measure(model: nn.Module, data: SweepData, settings: SweepSettings) -> dict[str, Any]:
    """Size, MACs, top-1 and CPU time of ``model`` (eval mode)."""
    model = model.eval()
    params = count_parameters([model])
    timing = data.test_images[: settings.timing_images]
    return {
        "params": params,
        "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "macs": int(count_macs(model, data.test_images[:1]).total()),
        "top1": round(classifier_top1(model, data.test_images, data.test_labels, batch_size=500), 2),
        "cpu_ms_1000_b100": dataset_ms(model, timing, 100, settings.timing_repeats),
        "cpu_ms_1000_b1": dataset_ms(model, timing, 1, settings.timing_repeats),
        "timing_images": len(timing),  # 1000 unless the test set is smaller
        "test_images": len(data.test_labels),
    }


def points(settings: SweepSettings) -> Iterator[tuple[str, str, float]]:
    for method in settings.methods:
        for scope in settings.scopes:
            for ratio in settings.ratios:
                yield method, scope, ratio


@dataclass(frozen=True)
class Finetune:
    """Fine-tuning of a pruned model on the full training set, resumable per point.

    A value, not a closure, so a task on another process or node can carry it; its
    checkpoints go under ``checkpoints`` (a shared file system on a multi-node cluster).
    """

    train: tuple[torch.Tensor, torch.Tensor]  # uint8 images and labels
    mean: tuple[float, ...]
    std: tuple[float, ...]
    epochs: int
    checkpoints: Path
    device: str = "cpu"

    def __call__(self, model: nn.Module, name: str) -> None:
        from splitbench.training import CifarAugment, TrainConfig, train_classifier
        from splitbench.training.trainer import pick_device

        config = TrainConfig(epochs=self.epochs, batch_size=128, lr=5e-5)
        train_classifier(model, self.train, None, mean=self.mean, std=self.std, config=config,
                         checkpoint_dir=self.checkpoints / f"finetune-{name}", device=pick_device(self.device),
                         augment=CifarAugment(randaugment_ops=0), progress=False)
        model.cpu().eval()


def point_name(method: str, scope: str, ratio: float) -> str:
    return f"{method}-{scope}-{ratio:g}"


def run_sweep(
    teacher: ViT,
    data: SweepData,
    settings: SweepSettings,
    cache: PointStore,
    *,
    finetune: Finetune | None = None,
    save_dir: Path | None = None,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    on_loss_progress: Callable[[int], None] | None = None,
    executor: Executor | None = None,
) -> SweepResult:
    """Measure the unpruned model and every (method, scope, ratio) point.

    ``finetune``, when given and ``settings.finetune_epochs > 0``, trains each pruned model
    before it is measured. The points run as tasks on ``executor`` (default: this process);
    the channel scores are computed here first, since every point ranks by them.
    """
    teacher = teacher.eval()
    groups = channel_groups(teacher, settings.targets)
    result = SweepResult(rows=[])
    result.scores["weight"] = weight_scores(teacher, groups)
    if {"importance", "stability"} & set(settings.methods):
        result.losses = cached_losses(teacher, data, groups, settings.estimator, cache, on_loss_progress)
        result.scores["importance"] = importance_scores(result.losses, settings.alpha)
        result.scores["stability"], result.fits = stability_scores(result.losses)
    if finetune is not None and settings.finetune_epochs == 0:
        finetune = None

    executor = executor or InProcess()
    teacher_ref, data_ref = shared(executor, teacher), shared(executor, data)
    finetune_ref = shared(executor, finetune) if finetune is not None else None

    def task(point: tuple[str, str, float]) -> Task:
        if point[0] == "original":
            return Task(measure_original, (teacher_ref, data_ref, settings))
        return Task(measure_pruned, (teacher_ref, data_ref, settings, result.scores, *point, finetune_ref))

    keys = [("original", "", 0.0), *points(settings)]
    result.rows = run_points(executor, keys, PointSweep(
        cached=lambda point: cache.get(_cache_name(point)), task=task,
        store=lambda point, row: cache.put(_cache_name(point), row),
        on_result=lambda point, row: on_point(row) if on_point is not None else None,
    ))
    if save_dir is not None:  # also for points measured before; rebuilding one is cheap (fine-tuning resumes)
        for method, scope, ratio in points(settings):
            path = save_dir / f"vit-{point_name(method, scope, ratio)}.safetensors"
            if not path.is_file():
                save_pruned_vit(*pruned_model(teacher, result.scores, method, scope, ratio, finetune), path)
    return result


def _cache_name(point: tuple[str, str, float]) -> str:
    return "original" if point[0] == "original" else point_name(*point)


def pruned_model(teacher: ViT, scores: dict[str, Scores], method: str, scope: str, ratio: float,
                 finetune: Finetune | None = None) -> tuple[ViT, dict[tuple[int, str], torch.Tensor]]:
    """The physically smaller ViT of one point (fine-tuned when ``finetune``), and its kept channels."""
    keep = select_channels(scores[method], ratio, scope)
    pruned = prune_vit(teacher, keep)
    if finetune is not None:
        finetune(pruned, point_name(method, scope, ratio))  # resumes from its own checkpoint when done before
    return pruned, keep


def measure_original(teacher: ViT, data: SweepData, settings: SweepSettings) -> dict[str, Any]:
    """The unpruned model's row (a task: runs wherever the executor puts it)."""
    groups = channel_groups(teacher, settings.targets)
    return {**_describe("original", "", 0.0, settings, teacher, groups), **measure(teacher, data, settings)}


def measure_pruned(teacher: ViT, data: SweepData, settings: SweepSettings, scores: dict[str, Scores], method: str,
                   scope: str, ratio: float, finetune: Finetune | None) -> dict[str, Any]:
    """One pruned point's row (a task: runs wherever the executor puts it)."""
    pruned, keep = pruned_model(teacher, scores, method, scope, ratio, finetune)
    groups = channel_groups(teacher, settings.targets)
    return {**_describe(method, scope, ratio, settings, pruned, groups, keep), **measure(pruned, data, settings)}


def cached_losses(
    teacher: ViT, data: SweepData, groups: list[ChannelGroup], estimator: str, cache: PointStore,
    on_progress: Callable[[int], None] | None = None,
) -> ChannelLosses:
    """Per-channel losses by ``estimator``, from the cache when this sweep computed them before."""
    path = cache.file(f"channel_losses-{estimator}", ".pt")
    if path.is_file():
        stored = read_tensor_file(path, "cached channel losses")
        by_name = {g.name: g for g in groups}
        return ChannelLosses(
            ce={by_name[k]: v for k, v in stored["ce"].items()}, kl={by_name[k]: v for k, v in stored["kl"].items()},
            base_ce=stored["base_ce"], estimator=estimator, proxy_images=stored["proxy_images"],
        )
    losses = channel_losses(teacher, data.proxy_images, data.proxy_labels, groups, estimator=estimator,
                            on_progress=on_progress)
    with atomic_open(path, "wb") as handle:
        torch.save({"ce": {g.name: v for g, v in losses.ce.items()}, "kl": {g.name: v for g, v in losses.kl.items()},
                    "base_ce": losses.base_ce, "proxy_images": losses.proxy_images}, handle)
    return losses


def estimator_agreement(a: ChannelLosses, b: ChannelLosses, alpha: float) -> list[dict[str, Any]]:
    """Spearman rank correlation of two estimators' L_CE, L_KL and importance, per group and overall."""
    importance_a, importance_b = importance_scores(a, alpha), importance_scores(b, alpha)
    selections: list[tuple[str, list[ChannelGroup]]] = [(g.name, [g]) for g in a.ce] + [("all", list(a.ce))]
    rows = []
    for name, members in selections:
        def joined(scores: Scores, members: list[ChannelGroup] = members) -> torch.Tensor:
            return torch.cat([scores[g] for g in members])

        rows.append({
            "group": name,
            "channels": len(joined(a.ce)),
            "spearman_ce": round(spearman(joined(a.ce), joined(b.ce)), 4),
            "spearman_kl": round(spearman(joined(a.kl), joined(b.kl)), 4),
            "spearman_importance": round(spearman(joined(importance_a), joined(importance_b)), 4),
        })
    return rows


def _describe(method: str, scope: str, ratio: float, settings: SweepSettings, model: ViT,
              groups: list[ChannelGroup], keep: dict[tuple[int, str], torch.Tensor] | None = None) -> dict[str, Any]:
    kept = sum(len(v) for v in keep.values()) if keep is not None else sum(g.size for g in groups)
    uses_losses = method in ("importance", "stability")
    return {
        "method": method, "scope": scope, "targets": "+".join(settings.targets), "ratio": ratio,
        "estimator": settings.estimator if uses_losses else "", "alpha": settings.alpha if method == "importance" else "",
        "proxy": settings.proxy if uses_losses else "", "kept_channels": kept,
        "finetune_epochs": settings.finetune_epochs if method != "original" else 0,
        "kept_per_block": _kept_per_block(keep, groups) if keep is not None else "",
    }


def _kept_per_block(keep: dict[tuple[int, str], torch.Tensor], groups: list[ChannelGroup]) -> str:
    return " ".join(f"{len(keep[(g.block, g.target)])}" for g in groups)
