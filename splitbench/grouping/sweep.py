"""Seed 004's experiment: FLGC at several group counts, with and without duplication.

Every point starts from the same dense checkpoint and the same random assignment logits,
swaps the 3×3 convolutions of the residual blocks for FLGC layers (``groups`` groups,
``duplicate_top`` for the seed's rule, 0 = plain FLGC), fine-tunes weights and assignments
together on CIFAR-10, freezes the assignment, converts the layers to real grouped
convolutions and measures that smaller model: parameters and MACs of the kept connections,
duplicated maps per layer, top-1 and CPU time (grouped and, for comparison, masked dense).

Each finished point is cached as JSON and each point's training resumes from its own
checkpoint, so an interrupted sweep loses at most one epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from splitbench.data import ImageDataset, open_dataset
from splitbench.data.tensors import decode_dataset
from splitbench.errors import SplitbenchError
from splitbench.executors import InProcess, PointSweep, Task, run_points, shared
from splitbench.grouping.flgc import (
    GroupedConv2d,
    check_groups_fit,
    duplication_counts,
    effective_counts,
    replace_convolutions,
    to_grouped,
)
from splitbench.macs import count_macs
from splitbench.metrics import classifier_top1, dataset_ms
from splitbench.points import PointStore
from splitbench.training import CifarAugment, TrainConfig, train_classifier
from splitbench.training.augment import normalize
from splitbench.training.distributed import Group
from splitbench.training.trainer import recalibrate_batchnorm
from splitbench.zoo import ModelSpec, ZooModel

GROUP_COLUMNS = ["model", "groups", "duplicate_top", "duplicated_maps", "params", "macs", "macs_executed", "top1",
                 "cpu_ms_1000", "cpu_ms_1000_masked", "epochs", "train_top1", "train_s", "train_images", "test_images",
                 "seed"]

CACHE_VERSION = 1  # part of the cache folder's key: bump it when a point's training changes
MEASURE_VERSION = 4  # part of every point's file name: bump it when what is measured changes (keeps training)
CALIBRATION_IMAGES = 2000  # training images (evenly spread) that re-estimate BatchNorm after training


@dataclass(frozen=True)
class GroupSettings:
    """The sweep: group counts × duplication settings, and the fine-tuning recipe of every point."""

    groups: tuple[int, ...] = (2, 4, 8)
    duplicate_tops: tuple[int, ...] = (0, 3)
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    precision: str = "fp32"  # training precision, "bf16" or "fp32" (resolve_precision picks for "auto")
    timing_images: int = 1000
    timing_repeats: int = 3

    def points(self) -> Iterator[tuple[int, int]]:
        """(groups, duplicate_top) pairs; with one group duplication has nothing to add, so it runs once."""
        for groups in self.groups:
            for top in self.duplicate_tops if groups > 1 else self.duplicate_tops[:1]:
                yield groups, top


@dataclass
class GroupData:
    """uint8 training images and normalised test images, decoded once."""

    train: tuple[torch.Tensor, torch.Tensor]
    test_images: torch.Tensor
    test_labels: torch.Tensor


def load_group_data(spec: ModelSpec, root: Path | None, train_limit: int | None, test_limit: int | None, *,
                    train_set: ImageDataset | None = None,
                    test_set: ImageDataset | None = None) -> tuple[GroupData, dict[str, Any]]:
    """Training and test images of ``spec``'s data set (or the opened ``train_set`` and
    ``test_set``), each optionally thinned evenly over its classes."""
    if spec.dataset is None and (train_set is None or test_set is None):
        raise SplitbenchError(f"{spec.name} has no data set to train on")
    splits = {}
    given = {"train": train_set, "test": test_set}
    for split, limit in (("train", train_limit), ("test", test_limit)):
        dataset = given[split] if given[split] is not None else open_dataset(spec.dataset, split=split, root=root)
        splits[split] = dataset.limited(limit, "spread")
    test_images, test_labels = decode_dataset(splits["test"])
    data = GroupData(decode_dataset(splits["train"]), normalize(test_images, spec.preprocessing.mean,
                                                                 spec.preprocessing.std), test_labels)
    return data, {split: dataset.provenance() for split, dataset in splits.items()}


def group_store(root: Path, checkpoint_sha256: str, settings: GroupSettings, data: GroupData,
                provenance: dict[str, Any] | None = None) -> PointStore:
    """The store of one (checkpoint, recipe, data) sweep's finished points, as JSON rows."""
    identity = {**asdict(settings), "checkpoint": checkpoint_sha256, "train_images": len(data.train[1]),
                "test_images": len(data.test_labels)}
    if provenance is not None:  # which images (by content, not name): another data root is other data
        identity["data"] = {split: info.get("content_sha256") for split, info in provenance.items()}
    for key in ("groups", "duplicate_tops"):  # a longer sweep reuses a shorter one's points
        identity.pop(key)
    if settings.precision == "fp32":  # points cached before precision was a setting were fp32
        identity.pop("precision")
    return PointStore.keyed(root, identity, version=CACHE_VERSION)


def measure(model: nn.Module, data: GroupData, settings: GroupSettings) -> dict[str, Any]:
    """Size, MACs (kept connections, and what actually runs), top-1 and CPU ms of ``model``."""
    model = model.eval()
    example = data.test_images[:1]
    params, macs = effective_counts(model, example)
    return {
        "params": params,
        "macs": macs,
        "macs_executed": int(count_macs(model, example).total()),
        "top1": round(classifier_top1(model, data.test_images, data.test_labels, batch_size=500), 2),
        "cpu_ms_1000": dataset_ms(model, data.test_images[: settings.timing_images], 100, settings.timing_repeats),
    }


def run_group_sweep(
    dense: ZooModel,
    data: GroupData,
    settings: GroupSettings,
    cache: PointStore,
    device: torch.device,
    on_point: Callable[[dict[str, Any]], None] | None = None,
    progress: bool = False,
    executor: Executor | None = None,
    ranks: Group = Group(),
) -> list[dict[str, Any]]:
    """The dense model, then every (groups, duplicate_top) point, as table rows (``progress``: training bars).

    Each point is a task on ``executor`` (default: one after another here). Its training
    checkpoints go under ``cache.directory``, which a multi-node cluster shares. Under
    torchrun (``ranks``), every rank runs the sweep in this process and trains each point's
    share of every batch; rank 0 alone stores the points.
    """
    check_groups_fit(dense.model, settings.groups)
    executor = executor or InProcess()
    if ranks.distributed and not isinstance(executor, InProcess):
        raise SplitbenchError("under torchrun the points train in the ranks' own processes: use --executor local")
    dense_ref, data_ref = shared(executor, dense), shared(executor, data)

    def task(point: tuple[int, int]) -> Task:
        if point == DENSE:  # nothing to train: rank 0 measures it alone
            return Task(measure_dense, (dense_ref, data_ref, settings)) if ranks.main else Task(dict)
        return Task(train_point, (dense_ref, data_ref, settings, cache.directory, device, *point, progress, ranks))

    ranks.barrier()  # rank 0 stores nothing before every rank has read the cache: all train the same points
    return run_points(executor, [DENSE, *settings.points()], PointSweep(
        cached=lambda point: cache.get(_point_name(point)), task=task,
        store=lambda point, row: cache.put(_point_name(point), row) if ranks.main else None,
        on_result=lambda point, row: on_point(row) if on_point is not None else None))


DENSE = (1, -1)  # the key of the unmodified model's row (no FLGC point has a negative duplicate_top)


def _point_name(point: tuple[int, int]) -> str:
    """The point's file in the store; the measure's version is part of it (a new measure keeps the training)."""
    return ("dense" if point == DENSE else f"g{point[0]}-d{point[1]}") + f".v{MEASURE_VERSION}"


def _common(dense: ZooModel, data: GroupData) -> dict[str, Any]:
    return {"model": dense.spec.name, "train_images": len(data.train[1]), "test_images": len(data.test_labels)}


def measure_dense(dense: ZooModel, data: GroupData, settings: GroupSettings) -> dict[str, Any]:
    """The dense model's row (a task)."""
    return {**_common(dense, data), "groups": 1, "duplicate_top": 0, "duplicated_maps": 0, "duplicated_per_layer": {},
            "epochs": 0, "train_top1": None, "train_s": 0.0, **measure(dense.model, data, settings),
            "cpu_ms_1000_masked": None}


def train_point(dense: ZooModel, data: GroupData, settings: GroupSettings, checkpoints: Path, device: torch.device,
                groups: int, top: int, progress: bool = False, ranks: Group = Group()) -> dict[str, Any]:
    """One (groups, duplicate_top) point fine-tuned from the dense weights and measured (a task): its row."""
    model = dense.spec.build()
    model.load_state_dict(dense.model.state_dict())
    torch.manual_seed(settings.seed)  # the same assignment logits for every duplication setting
    replace_convolutions(model, groups, top)
    return {**_common(dense, data),
            **_train_and_measure(model, dense.spec, data, settings, checkpoints, device, groups, top, progress, ranks)}


def _evenly_spaced(total: int, count: int) -> torch.Tensor:
    return torch.linspace(0, total - 1, min(count, total)).round().long()


def calibrate(model: nn.Module, spec: ModelSpec, train_images: torch.Tensor, seed: int = 0) -> nn.Module:
    """Freeze-time BatchNorm statistics: re-estimated on CALIBRATION_IMAGES uint8 training images.

    The running averages were collected while the assignment still moved. The images are
    augmented as in training, the distribution the weights were fitted to: clean images cost
    ResNet-20 3 points at one group, augmented ones nothing.
    """
    calibration = train_images[_evenly_spaced(len(train_images), CALIBRATION_IMAGES)]
    augmented = CifarAugment(randaugment_ops=0)(calibration, torch.Generator().manual_seed(seed))
    return recalibrate_batchnorm(model, normalize(augmented, spec.preprocessing.mean, spec.preprocessing.std)).eval()


def _train_and_measure(model: nn.Module, spec: ModelSpec, data: GroupData, settings: GroupSettings,
                       checkpoints: Path, device: torch.device, groups: int, top: int,
                       progress: bool, ranks: Group = Group()) -> dict[str, Any]:
    config = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr, seed=settings.seed,
                         precision=settings.precision)
    mean, std = spec.preprocessing.mean, spec.preprocessing.std
    result = train_classifier(model, data.train, None, mean=mean, std=std, config=config,
                              checkpoint_dir=checkpoints / f"train-g{groups}-d{top}", device=device,
                              augment=CifarAugment(randaugment_ops=0), progress=progress, group=ranks)
    if not ranks.main:  # rank 0 measures and keeps the point; the others go on to train the next one
        return {}
    calibrate(model.cpu(), spec, data.train[0], settings.seed)
    masked_ms = dataset_ms(model, data.test_images[: settings.timing_images], 100, settings.timing_repeats)
    per_layer = duplication_counts(model)
    grouped = to_grouped(model)
    padded = sum(m.padded for m in grouped.modules() if isinstance(m, GroupedConv2d))
    return {"groups": groups, "duplicate_top": top, "duplicated_maps": sum(per_layer.values()),
            "duplicated_per_layer": per_layer, "epochs": settings.epochs,
            "train_top1": round(result.history[-1]["train_top1"], 2) if result.history else None,
            "train_s": round(sum(row["epoch_s"] for row in result.history), 1),
            **measure(grouped, data, settings), "cpu_ms_1000_masked": masked_ms, "padded_layers": padded}
