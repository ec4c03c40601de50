"""How a model's outputs become figures: one small interface per task.

A sweep (``splitbench codec``) runs the tail on batches of reconstructed features and keeps,
per image, what scoring needs, so that a finished point can be cached as arrays and scored
again later over any prefix of its images:

* :class:`ClassificationScorer` keeps top-1 and top-5 hit masks (``hit1``, ``hit5``) and
  reports ``top1``/``top5`` in percent.
* :class:`DetectionScorer` keeps each image's detections (boxes, scores, classes and a count
  per image, as flat arrays) and reports COCOeval's ``map`` (AP@[.5:.95]) and ``map50`` in
  percent over the ground truth of exactly those images.

``score`` takes a batch's outputs and its labels (class indices, or COCO image ids);
``join`` concatenates batches, ``first`` keeps the first ``count`` images, ``summary``
turns the arrays into the task's figures.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from splitbench.errors import SplitbenchError
from splitbench.evaluation import class_scores, topk_hit_masks

if TYPE_CHECKING:
    from splitbench.data.datasets import ImageDataset
    from splitbench.detection.coco import CocoDataset
    from splitbench.detection.data import DetectionDataset
    from splitbench.detection.yolo import Detections
    from splitbench.zoo import ZooModel
    from splitbench.zoo.registry import DetectionDecoder

Arrays = dict[str, np.ndarray]


class Scorer(ABC):
    """A task's per-image record of a model's outputs, and the figures made from it."""

    task: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]  # the figures, in percent, as result columns
    arrays: ClassVar[tuple[str, ...]]  # what a point's cache stores
    # Part of a cached point's key where it is not empty; classification's is empty, so its
    # points keep the keys they had before scorers existed.
    cache_tag: str = ""

    @abstractmethod
    def score(self, outputs: Any, labels: torch.Tensor) -> Arrays:
        """Per-image records of one batch (``labels``: the batch's data set labels)."""

    def join(self, parts: Sequence[Arrays]) -> Arrays:
        return {name: np.concatenate([part[name] for part in parts]) for name in self.arrays}

    def first(self, arrays: Arrays, count: int) -> Arrays:
        """The records of the first ``count`` images."""
        return {name: arrays[name][:count] for name in self.arrays}

    @abstractmethod
    def summary(self, arrays: Arrays, labels: np.ndarray) -> dict[str, float]:
        """The task's figures (percent) over the images whose labels are ``labels``, in order."""


class ClassificationScorer(Scorer):
    task = "classification"
    metrics = ("top1", "top5")
    arrays = ("hit1", "hit5")

    def __init__(self, model_name: str = "the model") -> None:
        self.model_name = model_name

    def score(self, outputs: Any, labels: torch.Tensor) -> Arrays:
        hit1, hit5 = topk_hit_masks(class_scores(outputs, self.model_name), labels)
        return {"hit1": hit1.cpu().numpy(), "hit5": hit5.cpu().numpy()}

    def summary(self, arrays: Arrays, labels: np.ndarray) -> dict[str, float]:
        return {"top1": 100.0 * float(arrays["hit1"].mean()), "top5": 100.0 * float(arrays["hit5"].mean())}


class DetectionScorer(Scorer):
    """Detections kept per image, scored by COCOeval against ``dataset``'s ground truth.

    ``decode`` (the model spec's ``decode_detections``) turns the outputs of ``model`` (or of
    a tail cut from it) into detections in each original image's pixels.
    """

    task = "detection"
    metrics = ("map", "map50")
    arrays = ("det_count", "det_boxes", "det_scores", "det_classes")

    def __init__(self, model: nn.Module, decode: DetectionDecoder, dataset: DetectionDataset | None) -> None:
        from splitbench.detection.yolo import CONF_THRESHOLD, NMS_IOU

        self.model, self.decode, self.dataset = model, decode, dataset
        # Thresholds decide what a point stores: points kept under others are other points.
        self.cache_tag = f"detection conf {CONF_THRESHOLD} nms {NMS_IOU} {getattr(decode, '__qualname__', decode)}"

    def score(self, outputs: Any, labels: torch.Tensor) -> Arrays:
        found = self.decode(self.model, outputs, self.dataset.image_sizes(labels.tolist()))
        return {
            "det_count": np.array([len(d) for d in found], dtype=np.int64),
            "det_boxes": _stacked([d.boxes.numpy() for d in found], (0, 4), np.float32),
            "det_scores": _stacked([d.scores.numpy() for d in found], (0,), np.float32),
            "det_classes": _stacked([d.classes.numpy() for d in found], (0,), np.int64),
        }

    def first(self, arrays: Arrays, count: int) -> Arrays:
        counts = arrays["det_count"][:count]
        total = int(counts.sum())
        return {"det_count": counts, **{name: arrays[name][:total] for name in self.arrays[1:]}}

    def detections(self, arrays: Arrays) -> list[Detections]:
        """The stored arrays as one :class:`~splitbench.detection.yolo.Detections` per image."""
        from splitbench.detection.yolo import Detections

        bounds = np.concatenate([[0], np.cumsum(arrays["det_count"])])
        return [Detections(torch.from_numpy(np.array(arrays["det_boxes"][a:b], dtype=np.float32)),
                           torch.from_numpy(np.array(arrays["det_scores"][a:b], dtype=np.float32)),
                           torch.from_numpy(np.array(arrays["det_classes"][a:b], dtype=np.int64)))
                for a, b in zip(bounds[:-1], bounds[1:])]

    def summary(self, arrays: Arrays, labels: np.ndarray) -> dict[str, float]:
        return coco_figures(self.detections(arrays), [int(i) for i in labels], self.dataset.ground_truth)


def coco_figures(detections: Sequence[Detections], image_ids: Sequence[int], ground_truth: CocoDataset) -> dict[str, float]:
    """``map`` and ``map50`` in percent (COCOeval over exactly ``image_ids``), then COCOeval's
    other summary numbers as fractions under their own names."""
    if len(detections) != len(image_ids):
        raise SplitbenchError(f"{len(detections)} detection lists for {len(image_ids)} images")
    results = [record for found, image_id in zip(detections, image_ids) for record in found.to_coco(image_id)]
    return coco_record_figures(results, image_ids, ground_truth)


def coco_record_figures(records: list[dict], image_ids: Sequence[int], ground_truth: CocoDataset) -> dict[str, float]:
    """:func:`coco_figures` of COCO results records (what ``Detections.to_coco`` makes, and what
    ``link`` rebuilds from a detector server's replies) over exactly ``image_ids``."""
    from splitbench.detection.coco import evaluate_results

    stats = evaluate_results(records, ground_truth.subset(image_ids))
    return {"map": 100.0 * stats["map"], "map50": 100.0 * stats["map50"],
            **{f"coco_{name}": value for name, value in stats.items()}}


def _stacked(parts: list[np.ndarray], empty: tuple[int, ...], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(empty, dtype=dtype)


def scorer_for(model: ZooModel, data: ImageDataset | None) -> Scorer:
    """The scorer of a zoo model's task on ``data`` (a DetectionDataset for a detector; ``None``
    only checks that the model's outputs can be scored)."""
    spec = model.spec
    if spec.task == "classification":
        return ClassificationScorer(spec.name)
    if spec.task == "detection" and spec.decode_detections is not None:
        return DetectionScorer(model.model, spec.decode_detections, data)  # type: ignore[arg-type]
    raise SplitbenchError(f"{spec.name} is a {spec.task} model whose outputs splitbench cannot score "
                          "(classifiers by top-1/top-5; detectors that decode to boxes: yolov4_tiny, "
                          "torchvision's detection models)")
