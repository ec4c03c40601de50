"""Seed 004's experiment: FLGC at several group counts, with and without duplication.

Each point starts from the same dense checkpoint, swaps the 3×3 convolutions of the residual
blocks for FLGC layers (``groups`` groups, ``duplicate_top`` for the seed's rule, 0 = plain
FLGC), fine-tunes on CIFAR-10 (assignments and weights together), freezes the assignment,
converts the layers to real grouped convolutions and measures the smaller model: parameters,
MACs, duplicated maps, top-1 and CPU time. Every finished point is cached as JSON, so an
interrupted sweep resumes; each point's training resumes from its own checkpoint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from splitbench.grouping.flgc import (
    duplication_counts,
    replace_convolutions,
    to_grouped,
)
from splitbench.macs import count_macs
from splitbench.pruning.sweep import top1
from splitbench.results import write_json
from splitbench.timing import dataset_ms
from splitbench.training import CifarAugment, TrainConfig, train_classifier
from splitbench.zoo import load_model
from splitbench.zoo.trunk import count_parameters

GROUP_COLUMNS = ["model", "groups", "duplicate_top", "duplicated_maps", "params", "macs", "top1",
                 "cpu_ms_1000", "cpu_ms_1000_masked", "epochs", "train_images", "test_images"]


@dataclass(frozen=True)
class GroupSettings:
    groups: tuple[int, ...] = (2, 4, 8)
    duplicate_tops: tuple[int, ...] = (0, 3)
    epochs: int = 2
    lr: float = 1e-3
    batch_size: int = 128
    timing_images: int = 1000
    timing_repeats: int = 3


@dataclass
class GroupData:
    """uint8 training images and normalised test images (decoded once)."""

    train: tuple[torch.Tensor, torch.Tensor]
    test_images: torch.Tensor
    test_labels: torch.Tensor


def measure(model: nn.Module, data: GroupData, settings: GroupSettings) -> dict[str, Any]:
    model = model.eval()
    timing = data.test_images[: settings.timing_images]
    return {
        "params": count_parameters([model]),
        "macs": int(count_macs(model, data.test_images[:1]).total()),
        "top1": round(top1(model, data.test_images, data.test_labels), 2),
        "cpu_ms_1000": dataset_ms(model, timing, 100, settings.timing_repeats),
    }


def run_group_sweep(
    model_name: str,
    weights: str,
    data: GroupData,
    settings: GroupSettings,
    cache_dir: Path,
    device: torch.device,
    on_point: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """The dense model, then every (groups, duplicate_top) point, as table rows."""
    dense = load_model(model_name, weights)
    mean, std = dense.spec.preprocessing.mean, dense.spec.preprocessing.std
    identity = {"model": model_name, "weights": dense.weights.sha256, "settings": asdict(settings),
                "train_images": len(data.train[1]), "test_images": len(data.test_labels)}
    folder = cache_dir / hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    common = {"model": model_name, "train_images": len(data.train[1]), "test_images": len(data.test_labels)}

    def cached(name: str, build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        path = folder / f"{name}.json"
        row = json.loads(path.read_text()) if path.is_file() else None
        if row is None:
            row = build()
            write_json(path, row)
        if on_point:
            on_point(row)
        return row

    rows = [cached("dense", lambda: {**common, "groups": 1, "duplicate_top": 0, "duplicated_maps": 0, "epochs": 0,
                                     **measure(dense.model, data, settings), "cpu_ms_1000_masked": None})]
    for groups in settings.groups:
        for top in settings.duplicate_tops:
            def build(groups: int = groups, top: int = top) -> dict[str, Any]:
                model = load_model(model_name, weights).model
                replace_convolutions(model, groups, top)
                config = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr)
                train_classifier(model, data.train, None, mean=mean, std=std, config=config,
                                 checkpoint_dir=folder / f"train-g{groups}-d{top}", device=device,
                                 augment=CifarAugment(randaugment_ops=0), progress=False)
                model.cpu().eval()
                masked_ms = dataset_ms(model, data.test_images[: settings.timing_images], 100, settings.timing_repeats)
                duplicated = sum(duplication_counts(model).values())
                grouped = to_grouped(model)
                return {**common, "groups": groups, "duplicate_top": top, "duplicated_maps": duplicated,
                        "epochs": settings.epochs, **measure(grouped, data, settings), "cpu_ms_1000_masked": masked_ms}

            rows.append(cached(f"g{groups}-d{top}", build))
    return rows

