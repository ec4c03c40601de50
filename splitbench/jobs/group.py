"""``splitbench group`` as a library call: seed 004's FLGC sweep over group counts, with and without duplication.

>>> job = GroupJob("cifar_resnet20", groups=(4,), duplicate_top=(0, 3), device="cpu")   # doctest: +SKIP
>>> job.plan()                     # what a dry run shows                                  # doctest: +SKIP
>>> result = job.run()             # the table and the files written (None on a torchrun rank > 0)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from splitbench import provenance
from splitbench.data.datasets import ImageDataset, check_training_data, open_named
from splitbench.errors import SplitbenchError
from splitbench.executors import alone_timing_repeats, open_point_executor
from splitbench.grouping.flgc import check_groups_fit
from splitbench.jobs import check_at_least, check_finite, paths_as_paths
from splitbench.grouping.report import duplication_table, group_markdown, plot_group
from splitbench.grouping.sweep import GROUP_COLUMNS, GroupSettings, group_store, load_group_data, run_group_sweep
from splitbench.preflight import Plan, writable_folder
from splitbench.progress import say
from splitbench.results import result_set, write_csv, write_result
from splitbench.runs import run_folder
from splitbench.training.runtime import Runtime
from splitbench.values import whole_numbers
from splitbench.zoo import ZooModel, load_model

CACHE = Path("cache")
# Names of data that is not a manifest: the part after the colon is a path, not a split.


class GroupResult(NamedTuple):
    """What a finished sweep shows: its table, the files written and their folder."""

    table: pd.DataFrame
    written: list[Path]
    out: Path


@dataclass(frozen=True)
class GroupJob:
    """The options of ``splitbench group``; building one checks them all (one-line :class:`SplitbenchError`).

    ``groups`` and ``duplicate_top`` take a tuple of whole numbers or the command line's
    comma-separated text. Building the job also resolves the :class:`Runtime`, joining
    torchrun's process group where the environment names one: every rank then calls
    :meth:`run` (or, after a dry run, ``job.runtime.leave()``).
    """

    model: str
    weights: str = "auto"
    groups: tuple[int, ...] = (2, 4, 8)
    duplicate_top: tuple[int, ...] = (0, 3)
    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 128
    device: str = "auto"
    precision: str = "auto"
    data: Path | None = None
    dataset: str | None = None
    train_dataset: str | None = None
    train_limit: int | None = None
    limit: int | None = None
    repeats: int = 3
    seed: int = 0
    cache: Path = CACHE
    executor: str = "local"
    out: Path | None = None

    def __post_init__(self) -> None:
        paths_as_paths(self)
        started = time.perf_counter()
        object.__setattr__(self, "groups", whole_numbers(self.groups, "--groups", 1))
        object.__setattr__(self, "duplicate_top", whole_numbers(self.duplicate_top, "--duplicate-top", 0))
        check_at_least({"--epochs": (self.epochs, 1), "--batch-size": (self.batch_size, 1), "--repeats": (self.repeats, 0),
                        "--seed": (self.seed, 0), "--train-limit": (self.train_limit, 1), "--limit": (self.limit, 1)})
        check_finite("--lr", self.lr, 0.0)
        dense = load_model(self.model)
        if dense.spec.dataset != "cifar10":
            raise SplitbenchError(f"group trains on CIFAR-10; {self.model} is not a CIFAR-10 model "
                                  "(use cifar_resnet20, cifar_resnet56 or cifar_resnet50)")
        check_groups_fit(dense.model, self.groups)
        runtime = Runtime.resolve(self.device, self.precision, self.executor)  # joins torchrun's ranks
        repeats, note = alone_timing_repeats(self.repeats, self.executor, runtime.ranks.world) if runtime.main else (0, None)
        settings = GroupSettings(groups=self.groups, duplicate_tops=self.duplicate_top, epochs=self.epochs, lr=self.lr,
                                 batch_size=self.batch_size, seed=self.seed, timing_repeats=repeats,
                                 precision=runtime.precision)
        test_name = self.dataset or f"{dense.spec.dataset}:test"
        train_name = self.train_dataset or f"{dense.spec.dataset}:train"
        train_set, test_set = open_named(train_name, self.data), open_named(test_name, self.data)
        if self.dataset is not None or self.train_dataset is not None:
            check_training_data(train_set, test_set, "--train-dataset")
        test_images = len(dense.check_data(test_set))
        out = self.out or run_folder("group", self.model + (f"-seed{self.seed}" if self.seed else ""))
        out = writable_folder(out, "--out")
        writable_folder(self.cache, "--cache")
        object.__setattr__(self, "_resolved", _Resolved(
            started, dense, runtime, settings, train_name, test_name, train_set, test_set, test_images, out,
            dense.describe_weights(self.weights), (note,) if note else ()))

    @property
    def runtime(self) -> Runtime:
        """Where the sweep runs: device, precision, torchrun's ranks and the executor."""
        return self._resolved.runtime

    @property
    def notes(self) -> tuple[str, ...]:
        """Lines for the user about how the options were read (CPU-time columns left empty on Ray or torchrun)."""
        return self._resolved.notes

    def plan(self) -> Plan:
        """The dry run's rows."""
        r = self._resolved
        train_images = len(r.train_set)
        ranks = r.runtime.ranks
        plan = Plan("group").add("model", self.model).add("weights", r.weights)
        plan.add("points", f"{1 + len(list(r.settings.points()))}: the dense model, groups {','.join(map(str, self.groups))} × "
                           f"duplicate top {','.join(map(str, self.duplicate_top))}")
        plan.add("data", f"{min(self.train_limit or train_images, train_images):,} training images of {r.train_name}, "
                         f"{min(self.limit or r.test_images, r.test_images):,} test images of {r.test_name}")
        processes = f", {ranks.world} processes (DDP)" if ranks.distributed else ""
        plan.add("training", f"{self.epochs} epoch(s) per point on {r.runtime.device}{processes}")
        return plan.add("executor", r.runtime.executor).add("out", r.out)

    def arguments(self, **resolved: Any) -> dict[str, Any]:
        """The provenance's arguments: the request, the runtime as resolved, the sweep's settings and ``resolved``."""
        r = self._resolved
        return {**dataclasses.asdict(self), **r.runtime.provenance(), "settings": dataclasses.asdict(r.settings),
                "out": r.out, **resolved}

    def run(self) -> GroupResult | None:
        """Fine-tune and measure every point (cached points are read back), write the result set.

        Every torchrun rank calls it and trains its share; rank 0 alone writes and gets the
        result, the others None.
        """
        r = self._resolved
        runtime, settings, dense = r.runtime, r.settings, r.dense
        if runtime.ranks.distributed and runtime.device.type == "cpu":
            runtime.use_threads()  # the ranks share the cores
        dense.load_weights(self.weights)
        sweep_data, data_provenance = load_group_data(dense.spec, self.data, self.train_limit, self.limit,
                                                      test_set=r.test_set, train_set=r.train_set)
        store = group_store(self.cache / "group" / self.model, dense.weights.sha256 or "none", settings, sweep_data,
                            data_provenance)
        total, done = 1 + len(list(settings.points())), []

        def point_done(row: dict) -> None:  # the trainer's own bars show each point's epochs and images/s
            done.append(row)
            if runtime.main:
                say(f"[{len(done)}/{total}] groups {row['groups']}, duplicate top {row['duplicate_top']}: "
                    f"top-1 {row['top1']:.2f} %, {row['macs'] / 1e6:.2f} M MACs, {row['cpu_ms_1000']} ms")

        with open_point_executor(runtime.executor) as pool:  # training bars from this process only
            rows = run_group_sweep(dense, sweep_data, settings, store, runtime.device, on_point=point_done,
                                   progress=runtime.in_process, executor=pool, ranks=runtime.ranks)
        runtime.leave()
        if not runtime.main:  # rank 0 writes the results
            return None
        table = pd.DataFrame(rows).assign(seed=self.seed)
        meta = provenance.collect("group", self.arguments(cache=store.directory), weights=dense.weights.describe(),
                                  data=data_provenance, wall_s=time.perf_counter() - r.started)
        with result_set(r.out):
            written = write_result(r.out, "group", table[GROUP_COLUMNS], meta, group_markdown(table, meta),
                                   optional=["cpu_ms_1000_masked", "train_top1"])  # the dense row's
            written.append(write_csv(r.out / "duplication.csv", duplication_table(rows)))
            written.append(plot_group(r.out / "group.png", table))
        return GroupResult(table, written, r.out)


@dataclass(frozen=True)
class _Resolved:
    """What building a :class:`GroupJob` resolved and checked, kept for :meth:`~GroupJob.plan` and :meth:`~GroupJob.run`."""

    started: float
    dense: ZooModel
    runtime: Runtime
    settings: GroupSettings
    train_name: str
    test_name: str
    train_set: ImageDataset
    test_set: ImageDataset
    test_images: int
    out: Path
    weights: str  # what the weights option loads, in words
    notes: tuple[str, ...]


