"""``splitbench split`` as a library call: :class:`SplitJob` checks its options, plans, then accounts.

>>> SplitJob(model="vgg16", at="pool4", tasks=("classification", "detection")).run()   # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

from splitbench import provenance
from splitbench.cuts import Cut
from splitbench.errors import SplitbenchError
from splitbench.jobs import paths_as_paths
from splitbench.preflight import Plan, writable_folder
from splitbench.reporting import split_markdown
from splitbench.results import result_set, write_csv, write_result
from splitbench.runs import run_folder
from splitbench.split import SplitAccount, account_split, task_models
from splitbench.zoo import ZooModel, load_model


@dataclass(frozen=True)
class SplitJob:
    """The options of ``splitbench split``, parsed; constructing one makes every check the command makes.

    ``tasks=None`` is the model's own task alone.
    """

    model: str
    at: str = ""
    leaf: tuple[str, ...] | None = None
    tasks: tuple[str, ...] | None = None
    weights: str = "auto"
    input_size: int | None = None
    repeats: int = 3
    out: Path | None = None

    def __post_init__(self) -> None:
        """Cut, tasks and out folder: a problem in one line, before any timing."""
        paths_as_paths(self)
        started = time.perf_counter()
        if not self.at:
            raise SplitbenchError("--at is required: the cut to split at (splitbench profile MODEL lists them)")
        zoo_model = load_model(self.model, leaf_modules=self.leaf or ())
        tasks = list(self.tasks) if self.tasks is not None else [zoo_model.spec.task]
        cut = zoo_model.cuts(self.input_size).resolve(self.at)
        task_models(zoo_model, tasks)  # a task without a model fails before any timing
        out = writable_folder(self.out or run_folder("split", f"{zoo_model.spec.name}-{self.at}"), "--out")
        object.__setattr__(self, "_resolved", _Resolved(started, zoo_model, tasks, cut, out))

    def plan(self) -> Plan:
        r = self._resolved
        plan = Plan("split").add("model", f"{self.model} ({r.zoo_model.spec.source})")
        plan.add("weights", r.zoo_model.describe_weights(self.weights))
        plan.add("cut", f"{self.at} = {r.cut.name}, {'x'.join(map(str, r.cut.shape))}").add("tasks", ", ".join(r.tasks))
        return plan.add("timed runs", self.repeats).add("out", r.out)

    def run(self) -> SplitOutcome:
        """Load the weights, account and time the split, write split.csv/.md/.json and split_tasks.csv."""
        r = self._resolved
        r.zoo_model.load_weights(self.weights)
        account = account_split(r.zoo_model, self.at, r.tasks, repeats=self.repeats, input_size=self.input_size)
        meta = provenance.collect(
            "split",
            {**asdict(self), "tasks": r.tasks, "out": r.out},
            weights=r.zoo_model.weights.describe(),
            wall_s=time.perf_counter() - r.started,
        )
        with result_set(r.out):
            written = write_result(r.out, "split", account.summary(), meta, split_markdown(account, meta))
            written.append(write_csv(r.out / "split_tasks.csv", account.per_task()))
        return SplitOutcome(account, written, r.out / "split_tasks.csv")


@dataclass(frozen=True)
class _Resolved:
    """What a job's checks worked out from its options."""

    started: float  # perf_counter when the job was made: the run's wall time counts from here
    zoo_model: ZooModel
    tasks: list[str]
    cut: Cut
    out: Path


@dataclass
class SplitOutcome:
    """The accounting (head, tails, transfer, shared-head reduction) and the files written."""

    account: SplitAccount
    written: list[Path]
    source: Path  # split_tasks.csv
