"""What a split model's server answers, per task, and how ``link`` scores the answers.

* classification: the server replies the five most probable classes (``top5``); link counts a
  hit where the first is the label and reports ``top1`` (percent).
* detection: the server runs the detector's own post-processing on the tail's outputs, the
  decoder that ``eval`` and ``codec`` score (yolov4_tiny's is darknet's: scores above 0.005,
  per-class NMS at IoU 0.45, COCO category ids, boxes in the original image's pixels), keeps
  what COCOeval can count (:func:`~splitbench.detection.coco.coco_countable`) and replies
  COCO results rows (``detections``; :mod:`splitbench.link.protocol`). Link rebuilds the
  records and scores each setup and link condition with COCOeval through
  :func:`splitbench.scoring.coco_record_figures`, the code that ``eval``'s and ``codec``'s mAP
  come from: ``map``, ``map50`` (percent) and ``detections`` (the mean count per image).

The edge (``--at edge``) runs the same post-processing on the whole model's outputs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pandas as pd
import torch

from splitbench.errors import SplitbenchError
from splitbench.metrics import percent
from splitbench.link.protocol import ProtocolError, float32_numbers, read_detections

if TYPE_CHECKING:
    from splitbench.data.datasets import ImageDataset
    from splitbench.zoo import ZooModel

NOT_FINITE = "the model's output is not finite for these features (NaN or Infinity)"


class Answers(ABC):
    """One task's answer to a picture (the server's reply fields) and its scoring on the edge."""

    task: ClassVar[str]
    metrics: ClassVar[tuple[str, ...]]  # link's summary columns, in percent
    hidden: ClassVar[tuple[str, ...]] = ()  # per-image columns kept for scoring, not written

    @abstractmethod
    def reply(self, outputs: Any, image_size: tuple[int, int] | None) -> dict[str, Any]:
        """The reply's fields for the model's (or tail's) ``outputs`` on one picture; a
        :class:`ProtocolError` where the outputs are not finite."""

    @abstractmethod
    def local(self, outputs: Any, image_size: tuple[int, int] | None) -> dict[str, Any]:
        """``edge``: the same answer, made on the edge from the whole model's outputs."""

    @abstractmethod
    def row(self, fields: dict[str, Any], label: int) -> dict[str, Any]:
        """A picture's per-image columns, from a reply (or the edge's answer) and its label."""

    @abstractmethod
    def figures(self, rows: pd.DataFrame) -> dict[str, float]:
        """The task's figures over ``rows`` (one setup under one link condition)."""


class ClassificationAnswers(Answers):
    task = "classification"
    metrics = ("top1",)

    def reply(self, outputs: Any, image_size: tuple[int, int] | None = None) -> dict[str, Any]:
        probabilities = torch.softmax(outputs[0].float(), dim=0)
        if not torch.isfinite(probabilities).all():  # finite but huge features can overflow the tail
            raise ProtocolError(NOT_FINITE)
        top = torch.topk(probabilities, 5)
        return {"top5": [[int(c), round(float(p), 6)] for p, c in zip(top.values, top.indices)]}

    def local(self, outputs: Any, image_size: tuple[int, int] | None = None) -> dict[str, Any]:
        return {"predicted": int(outputs[0].argmax())}

    def row(self, fields: dict[str, Any], label: int) -> dict[str, Any]:
        predicted = int(fields["top5"][0][0]) if "top5" in fields else int(fields["predicted"])
        return {"predicted": predicted, "hit1": predicted == label}

    def figures(self, rows: pd.DataFrame) -> dict[str, float]:
        return {"top1": round(percent(int(rows["hit1"].sum()), len(rows)), 2)}


class DetectionAnswers(Answers):
    """A detector's answers: its own decoder's detections, scored against ``data``'s boxes."""

    task = "detection"
    metrics = ("map", "map50")
    hidden = ("found",)

    def __init__(self, model: ZooModel, data: ImageDataset | None = None) -> None:
        self.model, self.decode = model.model, model.spec.decode_detections
        self.ground_truth = getattr(data, "ground_truth", None)

    def reply(self, outputs: Any, image_size: tuple[int, int] | None) -> dict[str, Any]:
        if image_size is None:
            raise ProtocolError("a detector's request names the original image's image_size [height, width]")
        heads = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        if not all(bool(torch.isfinite(head).all()) for head in heads):
            raise ProtocolError(NOT_FINITE)
        return self.local(outputs, image_size)

    def local(self, outputs: Any, image_size: tuple[int, int] | None) -> dict[str, Any]:
        from splitbench.detection.coco import coco_countable

        found = coco_countable(self.decode(self.model, outputs, [tuple(image_size)])[0])  # type: ignore[arg-type,misc]
        # COCO results rows as Detections.to_coco writes them for eval: x, y, w, h, score, category id
        records = found.to_coco(0)
        numbers = float32_numbers([v for r in records for v in (*r["bbox"], r["score"])])
        return {"detections": [[*numbers[5 * i: 5 * i + 5], r["category_id"]] for i, r in enumerate(records)]}

    def row(self, fields: dict[str, Any], label: int) -> dict[str, Any]:
        try:
            found = read_detections(fields.get("detections"))
        except ProtocolError as error:
            raise SplitbenchError(f"the server sent a malformed reply: {error}") from None
        return {"detections": len(found), "found": found}

    def figures(self, rows: pd.DataFrame) -> dict[str, float]:
        from splitbench.scoring import coco_record_figures

        if self.ground_truth is None:
            raise SplitbenchError("detections are scored against a detection data set's boxes; this one has none")
        labels = [int(label) for label in rows["label"]]
        records = [{"image_id": image_id, "category_id": int(found[5]), "bbox": [float(v) for v in found[:4]],
                    "score": float(found[4])}
                   for image_id, image_found in zip(labels, rows["found"]) for found in image_found]
        figures = coco_record_figures(records, labels, self.ground_truth)
        return {"map": round(figures["map"], 3), "map50": round(figures["map50"], 3),
                "detections": round(float(np.mean(rows["detections"])), 1)}


def answers_for(model: ZooModel, data: ImageDataset | None = None, command: str = "link") -> Answers:
    """The answers of ``model``'s task (scored against ``data``); one line for a model that
    ``serve``/``link``/``plan`` cannot split and score."""
    spec = model.spec
    if spec.task == "classification":
        return ClassificationAnswers()
    if spec.task == "detection" and spec.decode_detections is not None and not spec.cut_module \
            and not spec.image_list_input:
        return DetectionAnswers(model, data)
    raise SplitbenchError(f"{command} splits classifiers (top-1) and detectors whose tail ends in outputs their "
                          f"decoder turns into boxes (mAP: yolov4_tiny); {spec.name} is a {spec.task} model"
                          + (f" cut in its {spec.cut_module}" if spec.cut_module else ""))
