"""mAP of a zoo detector on a :class:`~splitbench.detection.data.DetectionDataset`.

The same scoring as the codec sweep's (:class:`splitbench.scoring.DetectionScorer`): each
batch's outputs decoded to detections in the original images' pixels, then COCOeval once
over all of them. A batched detector (yolov4_tiny) takes its preprocessing's stacked
tensors; torchvision's detectors take a list of [0, 1] images at their own sizes and resize
and normalise them inside their forward.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader
from torchvision import transforms

from splitbench.data.datasets import worker_errors_unwrapped
from splitbench.detection.data import DetectionDataset
from splitbench.errors import SplitbenchError
from splitbench.evaluation import progress_bar
from splitbench.scoring import Arrays, DetectionScorer

if TYPE_CHECKING:
    from splitbench.zoo import ZooModel
    from splitbench.zoo.registry import ModelSpec


@dataclass
class DetectionEval:
    """COCOeval's figures (``map``, ``map50`` in percent, ``coco_*`` fractions) over ``images``."""

    figures: dict[str, float]
    images: int
    detections: int
    wall_s: float


def detection_transform(spec: ModelSpec) -> transforms.Compose:
    """What the detector's forward takes for one image."""
    if spec.image_list_input:
        return transforms.Compose([transforms.ToTensor()])
    return spec.preprocessing.transform()


def _as_list(batch: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Collate images of different sizes as a list (torchvision's detectors take one)."""
    return [image for image, _ in batch], torch.tensor([label for _, label in batch])


def evaluate_detection(zoo_model: ZooModel, dataset: DetectionDataset, *, batch_size: int = 8, workers: int = 2,
                       device: str | torch.device = "cpu", progress: bool = True) -> DetectionEval:
    """Detect in every image of ``dataset`` (transformed by :func:`detection_transform`) and score."""
    if len(dataset) == 0:
        raise SplitbenchError("cannot evaluate on an empty dataset")
    spec, device = zoo_model.spec, torch.device(device)
    if spec.decode_detections is None:
        raise SplitbenchError(f"{spec.name} has no decoder for its outputs: its detections cannot be scored")
    model = zoo_model.model.to(device).eval()
    scorer = DetectionScorer(model, spec.decode_detections, dataset)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_as_list if spec.image_list_input else None)
    parts: list[Arrays] = []
    start = time.perf_counter()
    with progress_bar(enabled=progress) as bar, worker_errors_unwrapped(), torch.inference_mode():
        task = bar.add_task("detecting", total=len(dataset))
        for images, labels in loader:
            images = [i.to(device) for i in images] if isinstance(images, list) else images.to(device)
            parts.append(scorer.score(model(images), labels))
            bar.update(task, advance=len(labels))
    arrays = scorer.join(parts)
    ids = [label for _, label in dataset.samples]
    figures = scorer.summary(arrays, ids)
    return DetectionEval(figures, len(ids), int(arrays["det_count"].sum()), time.perf_counter() - start)
