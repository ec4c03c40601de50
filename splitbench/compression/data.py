"""The tensors a compression model trains and tests on, computed once and cached.

The backbone is frozen, so the head's output at the split point and the uncompressed
model's logits (the distillation targets) do not change between steps, variants or λ:
they are computed once per data set and kept in ``<cache>/rd-data/<key>.pt`` (tensors
only; loaded with ``weights_only=True``). Training then runs only codec and tail. With no
augmentation this is exact; it is the reason the recipe uses none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader
from torchvision.transforms.functional import pil_to_tensor

from splitbench.compression.curves import INPUT
from splitbench.compression.train import TrainingSet
from splitbench.data.datasets import ImageDataset, open_named, worker_errors_unwrapped
from splitbench.data.transforms import Preprocessing
from splitbench.evaluation import progress_bar
from splitbench.points import content_key
from splitbench.results import atomic_open
from splitbench.zoo import ZooModel
from splitbench.weights import read_tensor_file

# The version of the keys of rd's caches (prepared data here, trained points in compression.sweep).
CACHE_VERSION = 1


@dataclass
class PreparedData:
    data: TrainingSet
    provenance: dict[str, Any]


def prepare(zoo_model: ZooModel, at: str, dataset: str, *, root: Path | None, limit: int | None, cache: Path,
            image_size: int | None = None, progress: bool = True) -> PreparedData:
    """Split features (or uint8 images for ``at == 'input'``), teacher logits and labels of a data set.

    ``dataset`` is a manifest name, optionally with a split (``cifar10:train``); ``limit`` takes
    that many images spread evenly over the set.
    """
    images = at == INPUT
    preprocessing = image_preprocessing(zoo_model, image_size) if images else zoo_model.spec.preprocessing
    opened = open_named(dataset, root)
    opened = opened.limited(limit, "spread")  # class-folder sets are sorted: a prefix holds a few classes
    weights = zoo_model.weights
    fields = {"model": zoo_model.spec.name, "weights_sha256": weights.sha256 or f"{weights.source}:{weights.name}", "at": at,
              "data": opened.provenance(), "preprocessing": preprocessing.describe()}  # content included
    path = cache / "rd-data" / f"{content_key(fields, version=CACHE_VERSION, digits=20)}.pt"
    provenance = {**opened.provenance(), "images": len(opened), "preprocessing": preprocessing.describe(),
                  "cache": path.name}
    if path.exists():
        return PreparedData(TrainingSet(**read_tensor_file(path, "cached training data")), provenance)
    data = _compute(zoo_model, at, opened, preprocessing, images, progress)
    with atomic_open(path, "wb") as handle:
        torch.save({"inputs": data.inputs, "teacher": data.teacher, "labels": data.labels}, handle)
    return PreparedData(data, provenance)


def image_preprocessing(zoo_model: ZooModel, size: int | None) -> Preprocessing:
    """The model's own preprocessing scaled to ``size`` (resize : crop kept at 256 : 224)."""
    base = zoo_model.spec.preprocessing
    if size is None or size == base.crop:
        return base
    return Preprocessing(crop=size, resize=round(size * (base.resize or base.crop) / base.crop), mean=base.mean,
                         std=base.std, interpolation=base.interpolation)


def _compute(zoo_model: ZooModel, at: str, opened: ImageDataset, preprocessing: Preprocessing, images: bool,
             progress: bool) -> TrainingSet:
    geometry = preprocessing.geometry()
    decoded = ImageDataset(opened.samples, transform=lambda image: pil_to_tensor(geometry(image)))
    mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std).view(1, 3, 1, 1)
    head = None if images else zoo_model.cuts().head(at)
    inputs, teacher, labels = [], [], []
    loader = DataLoader(decoded, batch_size=50, num_workers=2, shuffle=False)
    with torch.inference_mode(), progress_bar(enabled=progress) as bar, worker_errors_unwrapped():
        task = bar.add_task(f"{'images' if images else 'features at ' + at}, teacher logits", total=len(decoded))
        for batch, batch_labels in loader:
            x = (batch.float() / 255.0 - mean) / std
            inputs.append(batch if images else head(x))
            teacher.append(zoo_model.model(x))
            labels.append(batch_labels)
            bar.update(task, advance=len(batch))
    return TrainingSet(torch.cat(inputs), torch.cat(teacher), torch.cat(labels).long())
