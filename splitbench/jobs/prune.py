"""``splitbench prune`` as a library call: seed 002's ViT channel pruning sweep (weight, importance, stability).

>>> job = PruneJob("vit", ratios=(0.5,), method="stability")   # doctest: +SKIP
>>> job.plan()                     # what a dry run shows          # doctest: +SKIP
>>> result = job.run()             # the table and the files written   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from splitbench import provenance
from splitbench.data.datasets import ImageDataset, check_training_data
from splitbench.data.tensors import decode_dataset
from splitbench.errors import SplitbenchError
from splitbench.executors import ExecutorSpec, alone_timing_repeats, open_point_executor
from splitbench.data.datasets import open_named
from splitbench.jobs import check_at_least, check_finite, paths_as_paths
from splitbench.jobs.group import CACHE
from splitbench.preflight import Plan, writable_folder
from splitbench.progress import track
from splitbench.pruning import SCOPES
from splitbench.pruning.report import channel_table, plot_prune, prune_markdown
from splitbench.pruning.scores import DEFAULT_ALPHA, ESTIMATORS, METHODS
from splitbench.pruning.select import check_ratio
from splitbench.pruning.sweep import (
    PRUNE_COLUMNS,
    Finetune,
    SweepSettings,
    cached_losses,
    estimator_agreement,
    load_sweep_data,
    prune_store,
    run_sweep,
)
from splitbench.pruning.vit_channels import channel_groups, parse_targets
from splitbench.results import result_set, write_csv, write_result
from splitbench.runs import run_folder
from splitbench.weights import AUTO
from splitbench.zoo import ZooModel, load_model
from splitbench.zoo.vit import REFERENCE_CHECKPOINT, reference_checkpoint

LOSS_UNITS = {"exact": "channels", "taylor": "images"}  # what each estimator's on_progress counts


class PruneResult(NamedTuple):
    """What a finished sweep shows: its table and the files written."""

    table: pd.DataFrame
    written: list[Path]


@dataclass(frozen=True)
class PruneJob:
    """The options of ``splitbench prune``; building one checks them all (one-line :class:`SplitbenchError`).

    ``ratios``, ``method``, ``scope`` and ``targets`` take a tuple or the command line's
    comma-separated text (``method="stability"``); the job holds them as tuples, duplicates dropped.
    ``weights="auto"`` is the reference ViT this repository ships.
    """

    model: str = "vit"
    weights: str = AUTO
    ratios: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
    method: tuple[str, ...] = METHODS
    scope: tuple[str, ...] = SCOPES
    targets: tuple[str, ...] = ("attention",)
    estimator: str = "taylor"
    compare_estimators: bool = False
    alpha: float = DEFAULT_ALPHA
    proxy: int = 512
    finetune_epochs: int = 0
    device: str = "auto"
    data: Path | None = None
    dataset: str | None = None
    train_dataset: str | None = None
    limit: int | None = None
    repeats: int = 3
    cache: Path = CACHE
    save_models: Path | None = None
    executor: str = "local"
    out: Path | None = None

    def __post_init__(self) -> None:
        paths_as_paths(self)
        started = time.perf_counter()
        if self.model != "vit":
            raise SplitbenchError(f"channel pruning supports the model vit only, got {self.model!r}")
        notes, checkpoint = [], self.weights
        if self.weights == AUTO:  # prune's auto: the trained ViT this repository ships
            reference = reference_checkpoint()
            if reference is None:
                raise SplitbenchError(f"no --weights given and no reference checkpoint at {REFERENCE_CHECKPOINT}; "
                                      f"train one (splitbench train vit) or pass --weights PATH")
            checkpoint = str(reference)
            notes.append(f"using the reference checkpoint {reference} (pass --weights to prune another)")
        executor = ExecutorSpec.parse(self.executor)
        object.__setattr__(self, "method", choices(self.method, METHODS, "method"))
        object.__setattr__(self, "scope", choices(self.scope, SCOPES, "scope"))
        object.__setattr__(self, "ratios", parse_ratios(self.ratios))
        object.__setattr__(self, "targets", parse_targets(self.targets))
        object.__setattr__(self, "estimator", parse_estimator(self.estimator))
        check_finite("--alpha", self.alpha, 0.0)
        check_at_least({"--proxy": (self.proxy, 1), "--finetune-epochs": (self.finetune_epochs, 0),
                        "--limit": (self.limit, 1), "--repeats": (self.repeats, 0)})
        repeats, note = alone_timing_repeats(self.repeats, self.executor)
        settings = SweepSettings(methods=self.method, scopes=self.scope, ratios=self.ratios, targets=self.targets,
                                 estimator=self.estimator, alpha=self.alpha, proxy=self.proxy,
                                 finetune_epochs=self.finetune_epochs, timing_repeats=repeats)
        zoo_model = load_model(self.model)
        spec = zoo_model.spec
        test_name = self.dataset or f"{spec.dataset}:test"
        train_name = self.train_dataset or f"{spec.dataset}:train"
        test_set, train_set = open_named(test_name, self.data), open_named(train_name, self.data)  # the proxy set's images
        if self.dataset is not None or self.train_dataset is not None:
            check_training_data(train_set, test_set, "--train-dataset")
        test_images = min(len(zoo_model.check_data(test_set)), self.limit or len(test_set))
        out = writable_folder(self.out or run_folder("prune", f"{spec.name}-{'+'.join(settings.targets)}"), "--out")
        if self.save_models is not None:
            writable_folder(self.save_models, "--save-models")
        writable_folder(self.cache / "prune", "--cache")
        object.__setattr__(self, "_resolved", _Resolved(
            started, checkpoint, executor, settings, zoo_model, train_name, test_name, train_set, test_set, test_images,
            out, zoo_model.describe_weights(checkpoint), tuple(notes) + ((note,) if note else ())))

    @property
    def notes(self) -> tuple[str, ...]:
        """Lines for the user about how the options were read (the reference checkpoint, untimed points on Ray)."""
        return self._resolved.notes

    def points(self) -> int:
        """Pruned models in the sweep (the unpruned one aside)."""
        settings = self._resolved.settings
        return len(settings.methods) * len(settings.scopes) * len(settings.ratios)

    def plan(self) -> Plan:
        """The dry run's rows."""
        r = self._resolved
        settings = r.settings
        plan = Plan("prune").add("model", self.model).add("checkpoint", r.weights)
        plan.add("points", f"{self.points()}: {', '.join(settings.methods)} × {', '.join(settings.scopes)} × "
                           f"{', '.join(f'{x:g}' for x in settings.ratios)}, plus the unpruned model")
        plan.add("data", f"{self.proxy} proxy training images of {r.train_name}, {r.test_images:,} test images of "
                         f"{r.test_name}")
        return plan.add("estimator", settings.estimator).add("executor", r.executor).add("out", r.out)

    def arguments(self, **resolved: Any) -> dict[str, Any]:
        """The provenance's arguments: the request, the checkpoint and settings as resolved, and ``resolved``."""
        r = self._resolved
        return {**dataclasses.asdict(self), "checkpoint": r.checkpoint, "checkpoint_default": self.weights == AUTO,
                "settings": dataclasses.asdict(r.settings), "executor": str(r.executor), "out": r.out, **resolved}

    def run(self) -> PruneResult:
        """Prune and measure every point (cached points are read back), write the result set."""
        r = self._resolved
        settings, zoo_model = r.settings, r.zoo_model
        zoo_model.load_weights(r.checkpoint)
        sweep_data, data_provenance = load_sweep_data(zoo_model.spec, self.data, self.proxy, self.limit,
                                                      test_set=r.test_set, train_set=r.train_set)
        cache = prune_store(self.cache / "prune", zoo_model.weights.sha256 or "none", settings,
                            len(sweep_data.test_labels), data_provenance)
        with track("pruned models", 1 + self.points(), unit="models", transient=True) as bar, \
                track("per-channel losses", unit=LOSS_UNITS[settings.estimator], transient=True) as losses_bar:
            finetune = None
            if self.finetune_epochs:
                train = decode_dataset(open_named(r.train_name, self.data))
                preprocessing = zoo_model.spec.preprocessing
                finetune = Finetune(train, preprocessing.mean, preprocessing.std, self.finetune_epochs, cache.directory,
                                    self.device)
            with open_point_executor(r.executor) as executor:
                result = run_sweep(zoo_model.model, sweep_data, settings, cache, finetune=finetune,
                                   save_dir=self.save_models, executor=executor, on_loss_progress=losses_bar.advance,
                                   on_point=lambda row: bar.advance(
                                       info=f"last {row['method']} {row['scope']} {row['ratio']:g}"))
            agreement = self._agreement(result.losses, sweep_data, cache) if self.compare_estimators else None
        table = pd.DataFrame(result.rows)[PRUNE_COLUMNS + ["kept_per_block"]]
        meta = provenance.collect("prune", self.arguments(cache=cache.directory), weights=zoo_model.weights.describe(),
                                  data=data_provenance, wall_s=time.perf_counter() - r.started)
        markdown = prune_markdown(table, meta, checkpoint_top1=None, fits=result.fits, agreement=agreement)
        with result_set(r.out):
            written = write_result(r.out, "prune", table, meta, markdown,
                                   optional=["cpu_ms_1000_b100", "cpu_ms_1000_b1"])  # untimed
            written.append(plot_prune(r.out / "prune.png", table))
            written.append(write_csv(r.out / "channel_scores.csv", channel_table(result.scores, result.losses)))
            if agreement is not None:
                written.append(write_csv(r.out / "estimators.csv", agreement))
        return PruneResult(table, written)

    def _agreement(self, losses: Any, sweep_data: Any, cache: Any) -> pd.DataFrame:
        """Rank correlations of the two estimators' per-channel losses (``--compare-estimators``)."""
        model, estimator = self._resolved.zoo_model.model, self.estimator
        other = "exact" if estimator == "taylor" else "taylor"
        groups = channel_groups(model, self.targets)
        with track(f"per-channel losses ({other})", unit=LOSS_UNITS[other], transient=True) as other_bar:
            second = cached_losses(model, sweep_data, groups, other, cache, on_progress=other_bar.advance)
        first = losses or cached_losses(model, sweep_data, groups, estimator, cache)
        return pd.DataFrame(estimator_agreement(first, second, self.alpha))


@dataclass(frozen=True)
class _Resolved:
    """What building a :class:`PruneJob` resolved and checked, kept for :meth:`~PruneJob.plan` and :meth:`~PruneJob.run`."""

    started: float
    checkpoint: str  # the weights option, auto resolved to the reference checkpoint's path
    executor: ExecutorSpec
    settings: SweepSettings
    zoo_model: ZooModel
    train_name: str
    test_name: str
    train_set: ImageDataset
    test_set: ImageDataset
    test_images: int
    out: Path
    weights: str  # what the checkpoint is, in words
    notes: tuple[str, ...]


def choices(value: str | tuple[str, ...], valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    """Names from ``valid`` (text: comma-separated), duplicates dropped in order."""
    names = value.split(",") if isinstance(value, str) else value
    names = tuple(dict.fromkeys(v.strip() for v in names if v.strip()))
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise SplitbenchError(f"unknown {what} {','.join(unknown) or '(none)'}; valid: {', '.join(valid)}")
    return names


def parse_ratios(value: str | tuple[float, ...]) -> tuple[float, ...]:
    """Pruning ratios in [0, 1) (text: comma-separated), duplicates dropped in order."""
    try:
        parts = [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value
        numbers = tuple(dict.fromkeys(float(v) for v in parts))
    except (ValueError, TypeError):
        numbers = ()
    if not numbers:
        raise SplitbenchError(f"--ratio takes numbers in [0, 1) separated by commas, got {value!r}")
    return tuple(check_ratio(r) for r in numbers)


def parse_estimator(value: str) -> str:
    """One estimator of the per-channel losses (``--compare-estimators`` runs the other too)."""
    chosen = choices(value, ESTIMATORS, "estimator")
    if len(chosen) != 1:
        raise SplitbenchError(f"--estimator takes one of {', '.join(ESTIMATORS)} (--compare-estimators runs both)")
    return chosen[0]
