"""``splitbench eval`` as a library call: :class:`EvalJob` checks its options, plans, then scores.

>>> EvalJob(model="mobilenet_v2", weights="default", limit=100).run().table   # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from splitbench import provenance
from splitbench.data import ImageDataset
from splitbench.data.datasets import dataset_and_split, open_dataset
from splitbench.detection.evaluate import detection_transform, evaluate_detection
from splitbench.errors import SplitbenchError, unknown_name
from splitbench.evaluation import evaluate_topk
from splitbench.jobs import paths_as_paths
from splitbench.preflight import Plan, worker_count, writable_folder
from splitbench.results import markdown_table, result_set, write_result
from splitbench.runs import run_folder
from splitbench.scoring import scorer_for
from splitbench.zoo import ZooModel, load_model

TASKS = ("classification", "detection")


@dataclass(frozen=True)
class EvalJob:
    """The options of ``splitbench eval``, parsed; constructing one makes every check the command makes.

    ``mean``/``std`` replace the model's normalisation; ``task=None`` is the model's own.
    """

    model: str
    weights: str = "auto"
    dataset: str | None = None
    split: str | None = None
    data: Path | None = None
    limit: int | None = None
    batch_size: int = 32
    loader_workers: int | None = 2
    task: str | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    out: Path | None = None

    def __post_init__(self) -> None:
        """Model, task, data and out folder: a problem in one line, before any image is scored."""
        paths_as_paths(self)
        started = time.perf_counter()
        zoo_model = load_model(self.model, mean=self.mean, std=self.std)
        task = check_task(zoo_model, self.task)
        scorer_for(zoo_model, None)  # a model whose outputs cannot be scored fails before any data is read
        name, split = dataset_and_split(self.model, self.dataset, self.split, zoo_model.spec.dataset)
        transform = detection_transform(zoo_model.spec) if task == "detection" else zoo_model.spec.preprocessing.transform()
        images = zoo_model.check_data(open_dataset(name, split=split, root=self.data, limit=self.limit,
                                                   transform=transform))
        workers = worker_count(self.loader_workers, len(images), "--loader-workers")
        out = writable_folder(self.out or run_folder("eval", f"{zoo_model.spec.name}-{name}"), "--out")
        object.__setattr__(self, "_resolved", _Resolved(started, zoo_model, task, name, split, images, workers, out))

    @property
    def title(self) -> str:
        return f"{self.model} on {self._resolved.name}"

    def plan(self) -> Plan:
        r = self._resolved
        plan = Plan("eval").add("model", f"{self.model} ({r.zoo_model.spec.source})")
        plan.add("weights", r.zoo_model.describe_weights(self.weights, pretrained=True))
        plan.add("task", r.task).add("data", f"{r.name}: {len(r.images):,} images")
        plan.add("preprocessing", preprocessing_of(r.zoo_model))
        plan.estimate(r.zoo_model.model, r.zoo_model.example_input(), len(r.images))
        return plan.add("out", r.out)

    def run(self) -> EvalOutcome:
        """Load the weights, score every image, write eval.csv/.md/.json."""
        r = self._resolved
        r.zoo_model.load_weights(self.weights, pretrained=True)
        row: dict[str, Any] = {"model": self.model, "dataset": r.name, "split": r.images.provenance()["split"]}
        if r.task == "detection":
            found = evaluate_detection(r.zoo_model, r.images, batch_size=self.batch_size, workers=r.workers)
            row |= {"images": found.images, "detections": found.detections, "map": round(found.figures["map"], 3),
                    "map50": round(found.figures["map50"], 3), "wall_s": round(found.wall_s, 2)}
        else:
            result = evaluate_topk(r.zoo_model.model, r.images, batch_size=self.batch_size, workers=r.workers)
            row |= {"images": result.images, "top1": round(result.top1, 3), "top5": round(result.top5, 3),
                    "wall_s": round(result.wall_s, 2)}
        table = pd.DataFrame([row])
        arguments = {**asdict(self), "task": r.task, "dataset": r.name, "split": r.split, "loader_workers": r.workers,
                     "out": r.out, "preprocessing": preprocessing_of(r.zoo_model)}
        meta = provenance.collect("eval", arguments, weights=r.zoo_model.weights.describe(),
                                  data=r.images.provenance(), wall_s=time.perf_counter() - r.started)
        with result_set(r.out):
            written = write_result(r.out, "eval", table, meta, f"# {self.title}\n\n{markdown_table(table)}\n")
        return EvalOutcome(table, written, r.out / "eval.csv")


def check_task(zoo_model: ZooModel, task: str | None) -> str:
    """``task``, which must be the model's own (default); one line otherwise."""
    if task is not None and task not in TASKS:
        raise unknown_name("task", task, TASKS)
    own = zoo_model.spec.task
    if task is not None and task != own:
        raise SplitbenchError(f"--task {task}: {zoo_model.spec.name} is a {own} model")
    if own not in TASKS:
        raise SplitbenchError(f"eval scores classifiers and detectors; {zoo_model.spec.name} is a {own} model")
    return own


def preprocessing_of(zoo_model: ZooModel) -> dict | str:
    """How an image becomes the model's input, for the plan and the provenance."""
    if zoo_model.spec.image_list_input:
        return "the image at its own size, [0, 1]; the model resizes and normalises it"
    return zoo_model.spec.preprocessing.describe()


@dataclass(frozen=True)
class _Resolved:
    """What a job's checks worked out from its options."""

    started: float  # perf_counter when the job was made: the run's wall time counts from here
    zoo_model: ZooModel
    task: str
    name: str
    split: str | None
    images: ImageDataset
    workers: int
    out: Path


@dataclass
class EvalOutcome:
    """The one-row table and the files written."""

    table: pd.DataFrame
    written: list[Path]
    source: Path  # eval.csv
