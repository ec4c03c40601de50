"""Seed 002's experiment: methods × scopes × ratios on one trained ViT, each result measured.

Every point builds a physically smaller ViT (no masks) and measures it: parameters and
their bytes, MACs (fvcore), top-1 on the test set, and CPU time for 1000 test images at
batch 100 and batch 1. Per-channel losses (the expensive part of importance and stability)
are computed once per sweep and cached on disk, and so is every finished point, so an
interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from vit_pytorch.vit import ViT

from splitbench.data import open_dataset
from splitbench.data.tensors import decode_dataset
from splitbench.errors import SplitbenchError
from splitbench.macs import count_macs
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
from splitbench.pruning.vit_channels import (
    ChannelGroup,
    channel_groups,
    prune_vit,
    save_pruned_vit,
)
from splitbench.results import atomic_open, write_json
from splitbench.timing import dataset_ms
from splitbench.training.augment import normalize
from splitbench.zoo.registry import ModelSpec
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


def load_sweep_data(spec: ModelSpec, root: Path | None, proxy: int, test_limit: int | None) -> tuple[SweepData, dict]:
    """Normalised test images and a proxy set spread evenly over the (class-sorted) training set."""
    if spec.dataset is None:
        raise SplitbenchError(f"{spec.name} has no data set to prune on")
    test_set = open_dataset(spec.dataset, split="test", root=root)
    if test_limit is not None and test_limit < len(test_set):
        test_set = test_set.evenly_spaced(test_limit)  # the test set is class-sorted: keep every class
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


class PointCache:
    """Finished sweep points as JSON files under one directory per (checkpoint, settings)."""

    def __init__(self, root: Path, checkpoint_sha256: str, settings: SweepSettings, test_images: int,
                 data: dict[str, Any] | None = None) -> None:
        identity = {**asdict(settings), "checkpoint": checkpoint_sha256, "test_images": test_images,
                    "version": CACHE_VERSION}
        if data is not None:  # which images (by content, not name): another data root is other data
            identity["data"] = {split: info.get("content_sha256") for split, info in data.items()}
        for key in ("methods", "scopes", "ratios"):  # a longer sweep reuses a shorter one's points
            identity.pop(key)
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = root / digest

    def _path(self, name: str) -> Path:
        return self.directory / f"{name}.json"

    def get(self, name: str) -> dict[str, Any] | None:
        path = self._path(name)
        return json.loads(path.read_text()) if path.is_file() else None

    def put(self, name: str, row: dict[str, Any]) -> None:
        write_json(self._path(name), row)

    def losses_path(self) -> Path:
        return self.directory / "channel_losses.pt"


def measure(model: nn.Module, data: SweepData, settings: SweepSettings) -> dict[str, Any]:
    """Size, MACs, top-1 and CPU time of ``model`` (eval mode)."""
    model = model.eval()
    params = count_parameters([model])
    timing = data.test_images[: settings.timing_images]
    return {
        "params": params,
        "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "macs": int(count_macs(model, data.test_images[:1]).total()),
        "top1": round(top1(model, data.test_images, data.test_labels), 2),
        "cpu_ms_1000_b100": dataset_ms(model, timing, 100, settings.timing_repeats),
        "cpu_ms_1000_b1": dataset_ms(model, timing, 1, settings.timing_repeats),
        "timing_images": len(timing),  # 1000 unless the test set is smaller
        "test_images": len(data.test_labels),
    }


def top1(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    with torch.inference_mode():
        hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in zip(images.split(batch_size), labels.split(batch_size)))
    return 100.0 * hits / len(labels)


def points(settings: SweepSettings) -> Iterator[tuple[str, str, float]]:
    for method in settings.methods:
        for scope in settings.scopes:
            for ratio in settings.ratios:
                yield method, scope, ratio


def run_sweep(
    teacher: ViT,
    data: SweepData,
    settings: SweepSettings,
    cache: PointCache,
    *,
    finetune: Callable[[nn.Module, str], None] | None = None,
    save_dir: Path | None = None,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    on_loss_progress: Callable[[int], None] | None = None,
) -> SweepResult:
    """Measure the unpruned model and every (method, scope, ratio) point.

    ``finetune(model, point_name)``, when given and ``settings.finetune_epochs > 0``, trains
    each pruned model in place before it is measured.
    """
    teacher = teacher.eval()
    groups = channel_groups(teacher, settings.targets)
    result = SweepResult(rows=[])
    result.scores["weight"] = weight_scores(teacher, groups)
    if {"importance", "stability"} & set(settings.methods):
        result.losses = cached_losses(teacher, data, groups, settings.estimator, cache, on_loss_progress)
        result.scores["importance"] = importance_scores(result.losses, settings.alpha)
        result.scores["stability"], result.fits = stability_scores(result.losses)

    base = _cached_point(cache, "original", lambda: {**_describe("original", "", 0.0, settings, teacher, groups),
                                                     **measure(teacher, data, settings)})
    result.rows.append(base)
    if on_point is not None:
        on_point(base)
    for method, scope, ratio in points(settings):
        name = f"{method}-{scope}-{ratio:g}"

        def pruned_model(method: str = method, scope: str = scope, ratio: float = ratio, name: str = name):
            keep = select_channels(result.scores[method], ratio, scope)
            pruned = prune_vit(teacher, keep)
            if finetune is not None and settings.finetune_epochs > 0:
                finetune(pruned, name)  # resumes from its own checkpoint when done before
            return pruned, keep

        def build(method: str = method, scope: str = scope, ratio: float = ratio) -> dict[str, Any]:
            pruned, keep = pruned_model()
            return {**_describe(method, scope, ratio, settings, pruned, groups, keep), **measure(pruned, data, settings)}

        row = _cached_point(cache, name, build)
        if save_dir is not None and not (save_dir / f"vit-{name}.safetensors").is_file():
            save_pruned_vit(*pruned_model(), save_dir / f"vit-{name}.safetensors")  # also for cached points
        result.rows.append(row)
        if on_point is not None:
            on_point(row)
    return result


def cached_losses(
    teacher: ViT, data: SweepData, groups: list[ChannelGroup], estimator: str, cache: PointCache,
    on_progress: Callable[[int], None] | None = None,
) -> ChannelLosses:
    """Per-channel losses by ``estimator``, from the cache when this sweep computed them before."""
    path = cache.losses_path().with_name(f"channel_losses-{estimator}.pt")
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


def _cached_point(cache: PointCache, name: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    row = cache.get(name)
    if row is None:
        row = build()
        cache.put(name, row)
    return row


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
