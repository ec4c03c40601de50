"""``splitbench train`` as a library call: :class:`TrainJob` checks its options, plans, then trains.

>>> TrainJob(model="cifar_resnet20", epochs=1, train_limit=256, device="cpu").run()   # doctest: +SKIP

Under torchrun every rank makes the same job (constructing it joins the process group) and
calls :meth:`TrainJob.run`; rank 0 writes the results, the other ranks get ``None``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from splitbench import provenance
from splitbench.data import ImageDataset
from splitbench.data.datasets import check_training_data, open_named
from splitbench.data.tensors import decode_dataset
from splitbench.errors import SplitbenchError
from splitbench.jobs import paths_as_paths
from splitbench.preflight import Plan, worker_count, writable_file, writable_folder
from splitbench.progress import say
from splitbench.reporting import plot_training, training_markdown
from splitbench.results import result_set, write_result
from splitbench.runs import folder_name, run_folder
from splitbench.training import CifarAugment, TrainConfig, train_classifier
from splitbench.training.runtime import Runtime
from splitbench.weights import save_safetensors
from splitbench.zoo import ZooModel, load_model

# Data names whose part after the colon is a path, not a manifest's split (as the command line reads them).


@dataclass(frozen=True)
class TrainJob:
    """The options of ``splitbench train``, parsed; constructing one makes every check the command makes.

    ``dataset``/``train_dataset`` default to the model's own data set's test/train split; they take
    ``MANIFEST[:SPLIT]``, ``imagefolder:DIR`` or ``csv:FILE``.
    """

    model: str
    weights: str = "auto"
    data: Path | None = None
    dataset: str | None = None
    train_dataset: str | None = None
    epochs: int = 200
    batch_size: int = 512
    lr: float = 1e-4
    randaugment: int = 2
    magnitude: int = 14
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    compile_model: bool = False
    eval_every: int = 1
    train_limit: int | None = None
    limit: int | None = None
    loader_workers: int = 2
    checkpoint_minutes: float = 10.0
    cache: Path = Path("cache")
    checkpoint_dir: Path | None = None
    export: Path | None = None
    out: Path | None = None

    def __post_init__(self) -> None:
        """Model, device, data and folders, in the command's order: a problem in one line.

        Under torchrun this joins the process group: every rank then calls :meth:`run`, or
        ``runtime.leave()`` where it stops (a dry run).
        """
        paths_as_paths(self)
        started = time.perf_counter()
        zoo_model = load_model(self.model)
        spec = zoo_model.spec
        if spec.task != "classification" or spec.dataset is None:
            raise SplitbenchError(f"{self.model} is not a classifier with a training set; try vit or cifar_resnet20")
        runtime = Runtime.resolve(self.device, self.precision)  # torchrun's environment, or one process
        train_set = open_named(self.train_dataset or f"{spec.dataset}:train", self.data)
        test_set = open_named(self.dataset or f"{spec.dataset}:test", self.data)
        if self.train_dataset is not None or self.dataset is not None:
            check_training_data(train_set, test_set, "--train-dataset")
        # class-sorted folders: a prefix is one class
        train_set, test_set = train_set.limited(self.train_limit, "spread"), test_set.limited(self.limit, "spread")
        workers = worker_count(self.loader_workers, len(train_set), "--loader-workers")
        # other training data is another run: its checkpoints must not resume this one's
        run = f"{spec.name}-{spec.dataset if self.train_dataset is None else folder_name(self.train_dataset)}"
        out = writable_folder(self.out or run_folder("train", run), "--out")
        checkpoint_dir = writable_folder(self.checkpoint_dir or self.cache / "train" / run, "--checkpoint-dir")
        export = writable_file(self.export or out / f"{run}-fp16.safetensors", "--export")
        object.__setattr__(self, "_resolved", _Resolved(started, zoo_model, runtime, train_set, test_set, workers, out,
                                                        checkpoint_dir, export))

    @property
    def runtime(self) -> Runtime:
        """Device, precision, threads and torchrun's ranks, resolved."""
        return self._resolved.runtime

    def config(self) -> TrainConfig:
        """The recipe that checkpoints store (a resumed run must match it)."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                           precision=self.runtime.precision, compile=self.compile_model, eval_every=self.eval_every,
                           checkpoint_s=60.0 * self.checkpoint_minutes)

    def augment(self) -> CifarAugment:
        """The training images' augmentation (RandAugment ops and magnitude)."""
        return CifarAugment(randaugment_ops=self.randaugment, randaugment_magnitude=self.magnitude)

    def plan(self) -> Plan:
        """The dry run's rows (show them from rank 0 only)."""
        r, runtime = self._resolved, self.runtime
        spec = r.zoo_model.spec
        plan = Plan("train").add("model", f"{self.model} ({spec.source})")
        plan.add("weights", r.zoo_model.describe_weights(self.weights))
        plan.add("data", f"{spec.dataset}: {len(r.train_set):,} training, {len(r.test_set):,} test images")
        plan.add("recipe", f"{self.epochs} epochs, batch {self.batch_size}, Adam lr {self.lr:g}, "
                           f"RandAugment {self.randaugment}")
        processes, _, how = runtime.processes().partition(" ")
        ranks = f", {processes} processes {how}" if processes else ""
        plan.add("device", f"{runtime.device}, {runtime.precision} ({self.precision}), {runtime.threads} threads{ranks}")
        return plan.add("checkpoints", r.checkpoint_dir).add("export", r.export).add("out", r.out)

    def recipe(self) -> dict[str, Any]:
        """The recipe as the export's metadata, the report and the provenance record it."""
        runtime = self.runtime
        gpu = torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else None
        return {**self.config().__dict__, "precision_requested": self.precision, "threads": runtime.threads,
                "processes": runtime.ranks.world, "optimizer": "Adam", "augmentation": self.augment().describe(),
                "device": str(runtime.device), "gpu": gpu}

    def run(self) -> TrainOutcome | None:
        """Train (resuming from the checkpoints), then export and write train.csv/.md/.json/.png.

        Every rank trains and leaves the process group; rank 0 writes and gets the outcome, the others None.
        """
        r, runtime = self._resolved, self.runtime
        spec = r.zoo_model.spec
        r.zoo_model.load_weights(self.weights)
        runtime.use_threads()
        say(f"decoding {len(r.train_set):,} training and {len(r.test_set):,} test images once")
        train, test = decode_dataset(r.train_set, workers=r.workers), decode_dataset(r.test_set, workers=r.workers)
        result = train_classifier(
            r.zoo_model.model, train, test, mean=spec.preprocessing.mean, std=spec.preprocessing.std,
            config=self.config(), checkpoint_dir=r.checkpoint_dir, device=runtime.device, augment=self.augment(),
            group=runtime.ranks,
        )
        runtime.leave()
        if not runtime.main:  # rank 0 writes the results
            return None
        recipe = self.recipe()
        save_safetensors(r.zoo_model.model, r.export, dtype=torch.float16, metadata={
            "model": spec.name, "dataset": spec.dataset, "recipe": json.dumps(recipe),
            "test_top1": f"{result.test_top1:.2f}" if result.test_top1 is not None else "",
            # a warm restart's weights carry where they started from (source and sha256)
            "init_weights": json.dumps(r.zoo_model.weights.describe()),
        })
        meta = provenance.collect(
            "train",
            {**asdict(self), **runtime.provenance(), "recipe": recipe, "out": r.out, "checkpoint_dir": r.checkpoint_dir,
             "export": r.export, "resumed_from_epoch": result.resumed_from_epoch,
             "epochs_run_now": result.epochs_run_now},
            weights=r.zoo_model.weights.describe(),
            data={"train": r.train_set.provenance(), "test": r.test_set.provenance()},
            wall_s=time.perf_counter() - r.started,
        )
        history = pd.DataFrame(result.history)
        with result_set(r.out):
            written = write_result(r.out, "train", history, meta, training_markdown(spec.name, history, recipe, meta),
                                   optional=["test_top1"])  # epochs not tested
            written.append(plot_training(r.out / "train.png", history, title=f"{spec.name} on {spec.dataset}"))
        written.append(r.export)
        return TrainOutcome(spec.name, history, result.test_top1, written)


@dataclass(frozen=True)
class _Resolved:
    """What a job's checks worked out from its options."""

    started: float  # perf_counter when the job was made: the run's wall time counts from here
    zoo_model: ZooModel
    runtime: Runtime
    train_set: ImageDataset
    test_set: ImageDataset
    workers: int  # processes decoding the images
    out: Path
    checkpoint_dir: Path
    export: Path


@dataclass
class TrainOutcome:
    """What a training run wrote: its history (one row an epoch), the final test top-1, the files."""

    model: str
    history: pd.DataFrame
    test_top1: float | None
    written: list[Path]
