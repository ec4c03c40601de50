"""``rd`` as a library call: learned compression trained per λ; RD curves, BD-rate, cost (seeds 000 and 001).

>>> job = RdJob(model="mobilenet_v2", lambdas=(0.5, 4.0), epochs=(1,), train_limit=32, limit=24)  # doctest: +SKIP
>>> job.plan().lines()  # what a dry run shows                                                      # doctest: +SKIP
>>> job.run().written   # rd.csv, bd.csv, rd.png, … in job.out                                      # doctest: +SKIP

Building the job makes every check the command line makes, in the same order and with the same
one-line :class:`~splitbench.errors.SplitbenchError`: the options, the model and its cut (random
weights: no network), the data, the folders and the device. Under torchrun it joins the process
group; :meth:`RdJob.run` (or, without running, :meth:`RdJob.leave`) leaves it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from splitbench import provenance
from splitbench.compression.data import INPUT, prepare
from splitbench.data.datasets import open_named
from splitbench.compression.models import ENTROPY_MODELS
from splitbench.compression.pipeline import TARGETS
from splitbench.compression.report import (bd_against_baseline, bd_for_table, bit_allocation_figure, load_baseline,
                                           plot_rd, rd_markdown)
from splitbench.compression.sweep import RDRequest, check_lambdas, check_variants, run_rd
from splitbench.compression.train import RDSettings
from splitbench.data.datasets import check_training_data
from splitbench.errors import SplitbenchError
from splitbench.executors import ExecutorSpec, open_point_executor
from splitbench.jobs import Shown, check_at_least, check_finite, paths_as_paths
from splitbench.preflight import Plan, writable_folder
from splitbench.progress import say
from splitbench.results import result_set, warm_up_plotting, write_csv, write_result
from splitbench.runs import run_folder
from splitbench.training.runtime import Runtime
from splitbench.zoo import ZooModel, get_spec, load_model

MIN_IMAGE_SIZE = 16  # input_size of the image codec (at="input")
SEED000_FEATURE_SHAPE = (256, 56, 56)
FEATURE_VARIANTS = ("none", "attention1", "attention2")
IMAGE_VARIANTS = ("cheng2020_attn",)
SHOWN = ["variant", "alpha", "lambda", "epochs", "bpp_estimated", "bpp_actual", "top1", "top5", "agreement", "step_s"]
BD_SHOWN = ["anchor", "test", "method", "bd_rate_percent", "bd_top1", "warning"]


@dataclass
class RdResult:
    """What a run wrote and the tables it shows (both empty on torchrun's ranks other than 0)."""

    written: list[Path] = field(default_factory=list)
    tables: list[Shown] = field(default_factory=list)


@dataclass(frozen=True)
class RdJob:
    """The options of ``splitbench rd``, parsed. ``None`` means the default the command line names.

    ``__post_init__`` checks them and fills the defaults in (``at``, ``variants``, ``aux_alpha``,
    the data sets, ``out``); ``epochs`` becomes its sorted distinct budgets.
    """

    model: str = "mobilenet_v2"
    at: str | None = None  # a split point, or "input" for an image codec (seed 001); default: the model's
    variants: tuple[str, ...] | None = None  # default: none, attention1, attention2 (features); cheng2020_attn (input)
    lambdas: tuple[float, ...] = (0.05, 0.2, 1.0, 4.0)
    aux_alpha: tuple[float, ...] | None = None  # at="input" only; default (0, 0.1): without and with
    entropy: str = "factorized"
    target: str = "distill"
    channels: int = 32
    weights: str = "auto"
    leaf: tuple[str, ...] = ()
    train_dataset: str | None = None
    dataset: str | None = None
    data: Path | None = None
    train_limit: int | None = None
    limit: int | None = None
    input_size: int | None = None
    epochs: tuple[int, ...] = (2,)
    warmup_epochs: int = 4
    warmup_rate_weight: float = 0.01
    batch_size: int = 16
    lr: float = 1e-3
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"
    baseline: Path | None = None
    cost_only: bool = False
    cache: Path = Path("cache")
    executor: str = "local"
    out: Path | None = None

    def __post_init__(self) -> None:
        paths_as_paths(self)
        self._set(_started=time.perf_counter())
        executor = ExecutorSpec.parse(self.executor)
        spec = get_spec(self.model)
        at = self.at or spec.default_cut("rd")
        if at is None:
            raise SplitbenchError(f"{self.model} has no seed split point; pass --at")
        variants, lambdas, alphas, budgets = self._check_recipe(at)
        baseline_table = load_baseline(self.baseline, spec.name, at) if self.baseline is not None else None
        # The cost depends on shapes only: cost_only needs no weights (and no network).
        zoo_model = load_model(self.model, leaf_modules=list(self.leaf) if self.leaf else ())
        if at != INPUT:
            if len(zoo_model.cuts().resolve(at).shape) != 3:
                raise SplitbenchError(f"the tensor at {at} is not C×H×W feature maps that a feature codec can take")
        elif self.cost_only:
            raise SplitbenchError("--cost-only applies to feature codecs (a split point), not --at input")
        seed_suffix = f"-seed{self.seed}" if self.seed else ""  # a seed run goes beside the seed-0 sweep, not over it
        out = writable_folder(self.out or run_folder("rd", f"{spec.name}-{at}{seed_suffix}"), "--out")
        self._set(at=at, variants=variants, lambdas=lambdas, aux_alpha=alphas, epochs=budgets, out=out,
                  executor=str(executor))
        plan = Plan("rd").add("model", f"{self.model} ({spec.source})").add("at", at).add("variants", ", ".join(variants))
        plan.add("λ", ", ".join(f"{lam:g}" for lam in lambdas)).add("α", ", ".join(f"{a:g}" for a in alphas))
        self._set(_spec=spec, _zoo_model=zoo_model, _baseline_table=baseline_table, _runtime=None, _plan=plan)
        if not self.cost_only:
            zoo_model.require_classifier("rd")  # its cost table is shapes only, for any model
            writable_folder(self.cache, "--cache")
            runtime = Runtime.resolve(self.device, self.precision, self.executor)  # joins torchrun's ranks
            self._set(_runtime=runtime)
            try:
                self._check_data(plan)
            except BaseException:
                runtime.leave()
                raise
            if runtime.processes():
                plan.add("processes", runtime.processes())
        plan.add("out", out)

    def _check_recipe(self, at: str) -> tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...], tuple[int, ...]]:
        """The variants, λ's, α's and epoch budgets, each checked (with the numbers and names of the
        recipe) for the codec at ``at``: a feature codec, or the image codec at ``input``."""
        variants = self.variants if self.variants is not None else IMAGE_VARIANTS if at == INPUT else FEATURE_VARIANTS
        if not variants:
            raise SplitbenchError("--variant names nothing: got ''")
        variants = tuple(check_variants(list(variants), at))
        lambdas = tuple(check_lambdas([float(lam) for lam in self.lambdas]))
        alphas = self.aux_alpha if self.aux_alpha is not None else ((0.0, 0.1) if at == INPUT else (0.0,))
        alphas = tuple(float(alpha) for alpha in alphas)
        budgets = tuple(sorted(set(self.epochs)))
        check_at_least({"--channels": (self.channels, 1), "--warmup-epochs": (self.warmup_epochs, 0),
                        "--batch-size": (self.batch_size, 1), "--seed": (self.seed, 0),
                        "--train-limit": (self.train_limit, 1), "--limit": (self.limit, 1)})
        check_finite("--warmup-rate-weight", self.warmup_rate_weight, 0.0)
        check_finite("--lr", self.lr, 0.0)
        if not budgets or min(budgets) < 1:
            raise SplitbenchError(f"--epochs takes comma-separated integers ≥ 1, got {self.epochs!r}")
        if at != INPUT and any(alphas):
            raise SplitbenchError("--aux-alpha applies to an image codec (--at input) only")
        if self.input_size is not None and at != INPUT:
            raise SplitbenchError("--input-size applies to an image codec (--at input) only; features keep the model's")
        if self.input_size is not None and self.input_size < MIN_IMAGE_SIZE:
            raise SplitbenchError(f"--input-size {self.input_size}: the image codec takes {MIN_IMAGE_SIZE} pixels or more")
        if self.entropy not in ENTROPY_MODELS:
            raise SplitbenchError(f"unknown --entropy '{self.entropy}'; valid: {', '.join(ENTROPY_MODELS)}")
        if self.target not in TARGETS:
            raise SplitbenchError(f"unknown --target '{self.target}'; valid: {', '.join(TARGETS)}")
        return variants, lambdas, alphas, budgets

    def _check_data(self, plan: Plan) -> None:
        """The data sets (opened, not decoded) against the model, and the plan's rows about training."""
        spec, zoo_model, runtime = self._spec, self._zoo_model, self._runtime
        test_data = self.dataset or spec.dataset
        train_data = self.train_dataset or spec.train_dataset or (spec.dataset and f"{spec.dataset}:train")
        if test_data is None or train_data is None:
            raise SplitbenchError(f"{self.model} has no data set of its own; pass --dataset and --train-dataset")
        train_set, test_set = open_named(train_data, self.data), open_named(test_data, self.data)
        check_training_data(train_set, test_set, "--train-dataset")
        for images in (train_set, test_set) if self.target == "labels" else (test_set,):  # distill: no training labels
            zoo_model.check_data(images)
        self._set(train_dataset=train_data, dataset=test_data)
        train_images, test_images = len(train_set), len(test_set)
        plan.add("weights", zoo_model.describe_weights(self.weights, pretrained=True)).add("device", runtime.device)
        plan.add("data", f"train {train_data} ({min(self.train_limit or train_images, train_images):,} images), "
                         f"test {test_data} ({min(self.limit or test_images, test_images):,} images)")
        plan.add("training", f"{self.warmup_epochs} warm-up + {', '.join(map(str, self.epochs))} epochs per λ, "
                             f"batch {self.batch_size}, {runtime.precision} ({self.precision})").add("cache", self.cache)
        plan.add("executor", runtime.executor)

    @property
    def main(self) -> bool:
        """Whether this process writes the results and shows them (rank 0 under torchrun, else always)."""
        return self._runtime is None or self._runtime.main

    def plan(self) -> Plan:
        """What :meth:`run` would do, row by row (what ``--dry-run`` shows)."""
        return Plan(self._plan.command, list(self._plan.rows))

    def leave(self) -> None:
        """Leave torchrun's process group without running (after a dry run); nothing in one process."""
        if self._runtime is not None:
            self._runtime.leave()

    def arguments(self) -> dict[str, Any]:
        """The provenance's arguments: the job's resolved fields, and where it runs (device, precision, ranks)."""
        found = dataclasses.asdict(self)
        found["precision_requested"] = found.pop("precision")
        if self._runtime is None:  # cost_only: nothing trains, nothing was resolved
            return {**found, "precision": None, "executor": self.executor, "processes": 1}
        return {**found, "device_requested": self.device, **self._runtime.provenance()}

    def run(self, on_table: Callable[[Shown], None] | None = None) -> RdResult:
        """Write the cost table (feature codecs), then train, evaluate and write every point; once per job.

        ``on_table`` receives each table as soon as it is ready (the cost table before training).
        """
        runtime, zoo_model = self._runtime, self._zoo_model
        if runtime is not None and runtime.ranks.distributed and runtime.device.type == "cpu":
            runtime.use_threads()  # its share of the cores
        plotting = warm_up_plotting()
        if not self.cost_only:  # the cost depends on shapes only: cost_only needs no weights (and no network)
            zoo_model.load_weights(self.weights, pretrained=True)
        arguments = self.arguments()
        result = RdResult()

        def show(shown: Shown) -> None:
            result.tables.append(shown)
            if on_table is not None:
                on_table(shown)

        if self.at != INPUT and self.main:
            result.written += self._write_costs(arguments, show)
            if self.cost_only:
                return result
        return self._train(arguments, plotting, result, show)

    def _train(self, arguments: dict[str, Any], plotting: Any, result: RdResult,
               show: Callable[[Shown], None]) -> RdResult:
        runtime, zoo_model, at, out, data = self._runtime, self._zoo_model, self.at, self.out, self.data
        ranks = runtime.ranks
        settings = RDSettings(epochs=self.epochs[-1], warmup_epochs=self.warmup_epochs, batch_size=self.batch_size,
                              lr=self.lr, warmup_rate_weight=self.warmup_rate_weight, target=self.target, seed=self.seed,
                              precision=runtime.precision)
        size = self.input_size if at == INPUT else None
        if not ranks.main:
            ranks.barrier()  # rank 0 computes the features into the cache; the others then read them
        train_set = prepare(zoo_model, at, self.train_dataset, root=data, limit=self.train_limit, cache=self.cache,
                            image_size=size, progress=ranks.main)
        test_set = prepare(zoo_model, at, self.dataset, root=data, limit=self.limit, cache=self.cache, image_size=size,
                           progress=ranks.main)
        if ranks.main:
            ranks.barrier()
        in_process = runtime.in_process  # a Ray worker's bars would interleave in the log: a line per point
        request = RDRequest(zoo_model, at, list(self.variants), list(self.lambdas), list(self.aux_alpha), self.channels,
                            self.entropy, settings, train_set, test_set, self.cache, runtime.device,
                            progress=in_process and ranks.main, group=ranks, epochs=self.epochs)

        def point_done(row: dict) -> None:
            if not in_process:
                say(f"{row['variant']} α={row['alpha']:g} λ={row['lambda']:g}, {row['epochs']} epochs: "
                    f"{row['bpp_actual']:.4f} bpp, top-1 {row['top1']:.2f} %")

        with open_point_executor(runtime.executor) as pool:
            table = run_rd(request, pool, on_point=point_done)
        runtime.leave()
        if not ranks.main:  # rank 0 writes the results
            return result
        meta = provenance.collect("rd", arguments, weights=zoo_model.weights.describe(),
                                  data={"train": train_set.provenance, "test": test_set.provenance},
                                  wall_s=time.perf_counter() - self._started)
        # The sidecar's wall time is this run's; the points' own compute (perhaps from earlier
        # runs, read from the cache) is summed here and itemised per point in rd.csv. Each row
        # repeats its variant's shared warm-up, and a budget's train_s includes the shorter ones'.
        longest = table[table["epochs"] == table["epochs"].max()]
        compute = {"warmup_s": table.groupby("variant")["warmup_s"].first().sum(), "train_s": longest["train_s"].sum(),
                   "eval_s": table["eval_s"].sum()}
        meta["points_compute_s"] = {key: round(float(value), 1) for key, value in compute.items()}
        plotting.join()
        bd = bd_for_table(table)
        baseline = self._baseline_table
        bd_bpg = bd_against_baseline(table, baseline) if baseline is not None else None
        written = result.written
        with result_set(out):
            written += write_result(out, "rd", table, meta, rd_markdown(table, bd, baseline, bd_bpg, meta))
            written.append(write_csv(out / "bd.csv", bd, optional=["bd_rate_percent", "bd_top1"]))  # curves too short
            if bd_bpg is not None:
                written.append(write_csv(out / "bd_vs_bpg.csv", bd_bpg))
            written.append(plot_rd(table, baseline, out / "rd.png"))
            if at == INPUT:
                written.append(bit_allocation_figure(request, out / "bit_allocation.png"))
        show(Shown(table, f"{self._spec.name} at {at}: learned compression", SHOWN, out / "rd.csv"))
        show(Shown(bd, "BD-rate and BD-accuracy", BD_SHOWN, out / "bd.csv"))
        return result

    def _write_costs(self, arguments: dict[str, Any], show: Callable[[Shown], None]) -> list[Path]:
        """The cost table of each variant's codec at the split (seed 000 Table 1): shapes only."""
        from splitbench.split import feature_shape
        from splitbench.compression.costs import cost_table
        from splitbench.compression.report import cost_markdown
        from splitbench.references import load_reference

        started = time.perf_counter()
        zoo_model: ZooModel = self._zoo_model
        shape = feature_shape(zoo_model, self.at, zoo_model.spec.preprocessing)
        # The paper's Table 1 is for ResNet50's conv2_x output; beside any other shape it would mislead.
        reference = load_reference("seed000_compression_model_cost") if shape == SEED000_FEATURE_SHAPE else None
        table = cost_table(*shape, self.channels, self.entropy, self.variants, reference)
        meta = provenance.collect("rd --cost-only", arguments, wall_s=time.perf_counter() - started)
        show(Shown(table, source=self.out / "cost.csv",
                   heading=f"cost of the compression model on a {'x'.join(map(str, shape))} feature (N = {self.channels})"))
        return write_result(self.out, "cost", table, meta, cost_markdown(table, meta))

    def _set(self, **values: Any) -> None:
        """Resolved values into the (frozen) fields, and what the checks built for ``run`` (the model,
        the runtime: ``_`` attributes, not fields, so neither equality nor provenance sees them)."""
        for name, value in values.items():
            object.__setattr__(self, name, value)
