"""``splitbench prune``: seed 002's ViT channel pruning sweep (weight, importance, stability)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import (CACHE, Cache, DataRoot, Dataset, Device, DryRun, ExecutorOption, Limit, OutDir,
                                    Repeats, TrainDataset, Weights, alone_timing_repeats, default_out, float_option,
                                    open_named)
from splitbench.preflight import Plan, writable_folder
from splitbench.progress import track
from splitbench.cli.render import console, show_plan, show_table, show_written
from splitbench.data.datasets import check_training_data
from splitbench.data.tensors import decode_dataset
from splitbench.errors import SplitbenchError
from splitbench.executors import ExecutorSpec, open_point_executor
from splitbench.pruning import SCOPES, TARGETS
from splitbench.pruning.report import channel_table, plot_prune, prune_markdown
from splitbench.pruning.scores import DEFAULT_ALPHA, ESTIMATORS, METHODS
from splitbench.pruning.select import check_ratio
from splitbench.pruning.sweep import (
    PRUNE_COLUMNS,
    Finetune,
    PointCache,
    SweepSettings,
    cached_losses,
    estimator_agreement,
    load_sweep_data,
    run_sweep,
)
from splitbench.pruning.vit_channels import channel_groups, parse_targets
from splitbench.results import result_set, write_csv, write_result
from splitbench.weights import AUTO
from splitbench.zoo import load_model
from splitbench.zoo.vit import REFERENCE_CHECKPOINT, reference_checkpoint

LOSS_UNITS = {"exact": "channels", "taylor": "images"}  # what each estimator's on_progress counts


def _choices(value: str, valid: tuple[str, ...], what: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in value.split(",") if v.strip()))
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        raise SplitbenchError(f"unknown {what} {','.join(unknown) or '(none)'}; valid: {', '.join(valid)}")
    return names


def _ratios(value: str) -> tuple[float, ...]:
    try:
        ratios = tuple(dict.fromkeys(float(v) for v in value.split(",") if v.strip()))
    except ValueError:
        ratios = ()
    if not ratios:
        raise SplitbenchError(f"--ratio takes numbers in [0, 1) separated by commas, got {value!r}")
    return tuple(check_ratio(r) for r in ratios)


def _estimator(value: str) -> str:
    chosen = _choices(value, ESTIMATORS, "estimator")
    if len(chosen) != 1:
        raise SplitbenchError(f"--estimator takes one of {', '.join(ESTIMATORS)} (--compare-estimators runs both)")
    return chosen[0]


@app.command("prune")
def prune_command(
    model: Annotated[str, typer.Argument(help="Model to prune: vit (seed 002's CIFAR-10 ViT).")],
    weights: Weights = "auto",
    ratio: Annotated[str, typer.Option("--ratio", help="Fraction(s) of channels to prune, e.g. 0.5 or 0.3,0.4,0.5.")] = "0.3,0.4,0.5,0.6,0.7",
    method: Annotated[str, typer.Option("--method", help=f"One or more of {', '.join(METHODS)}.")] = ",".join(METHODS),
    scope: Annotated[str, typer.Option("--scope", help="uniform (same ratio per block), global (one ranking), or both.")] = "uniform,global",
    targets: Annotated[str, typer.Option("--targets", help=f"Channels to prune: {', '.join(TARGETS)}.")] = "attention",
    estimator: Annotated[str, typer.Option("--estimator", help="Per-channel losses: exact or taylor.")] = "taylor",
    compare_estimators: Annotated[bool, typer.Option("--compare-estimators", help="Also run the other estimator and report rank correlations.")] = False,
    alpha: Annotated[float, float_option("--alpha", minimum=0.0, help_text="Weight of L_KL in the importance loss (eq. 1).")] = DEFAULT_ALPHA,
    proxy: Annotated[int, typer.Option("--proxy", min=1, help="Training images for importance/stability.")] = 512,
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", min=0, help="Epochs of fine-tuning after pruning (Adam, lr 5e-5 cosine, crop+flip; seed 002 reports none).")] = 0,
    device: Device = "auto",
    data: DataRoot = None,
    dataset: Dataset = None,
    train_dataset: TrainDataset = None,
    limit: Limit = None,
    repeats: Repeats = 3,
    cache: Cache = CACHE,
    save_models: Annotated[Path | None, typer.Option("--save-models", help="Write every pruned model here (safetensors).")] = None,
    executor: ExecutorOption = "local",
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Prune MODEL's channels by weight, importance or stability; measure size, MACs, accuracy and CPU time."""
    start = time.perf_counter()
    if model != "vit":
        raise SplitbenchError(f"channel pruning supports the model vit only, got {model!r}")
    reference_used = weights == AUTO  # prune's auto: the trained ViT this repository ships
    checkpoint = weights
    if reference_used:
        reference = reference_checkpoint()
        if reference is None:
            raise SplitbenchError(f"no --weights given and no reference checkpoint at {REFERENCE_CHECKPOINT}; "
                                  f"train one (splitbench train vit) or pass --weights PATH")
        checkpoint = str(reference)
        console.print(f"using the reference checkpoint {reference} (pass --weights to prune another)")
    executor_spec = ExecutorSpec.parse(executor)
    settings = SweepSettings(
        methods=_choices(method, METHODS, "method"), scopes=_choices(scope, SCOPES, "scope"), ratios=_ratios(ratio),
        targets=parse_targets(targets), estimator=_estimator(estimator), alpha=alpha,
        proxy=proxy, finetune_epochs=finetune_epochs, timing_repeats=alone_timing_repeats(repeats, executor),
    )
    zoo_model = load_model(model)
    spec = zoo_model.spec
    test_name, train_name = dataset or f"{spec.dataset}:test", train_dataset or f"{spec.dataset}:train"
    test_set, train_set = open_named(test_name, data), open_named(train_name, data)  # the proxy set's images
    if dataset is not None or train_dataset is not None:
        check_training_data(train_set, test_set, "--train-dataset")
    test_images = min(len(zoo_model.check_data(test_set)), limit or len(test_set))
    out = writable_folder(out or default_out("prune", f"{spec.name}-{'+'.join(settings.targets)}"), "--out")
    if save_models is not None:
        writable_folder(save_models, "--save-models")
    writable_folder(cache / "prune", "--cache")
    plan = Plan("prune").add("model", model).add("checkpoint", zoo_model.describe_weights(checkpoint))
    points = len(settings.methods) * len(settings.scopes) * len(settings.ratios)
    plan.add("points", f"{points}: {', '.join(settings.methods)} × {', '.join(settings.scopes)} × "
                       f"{', '.join(f'{r:g}' for r in settings.ratios)}, plus the unpruned model")
    plan.add("data", f"{proxy} proxy training images of {train_name}, {test_images:,} test images of {test_name}")
    plan.add("estimator", settings.estimator).add("executor", executor_spec)
    if plan.add("out", out).finish(dry_run, show_plan):
        return
    zoo_model.load_weights(checkpoint)
    sweep_data, data_provenance = load_sweep_data(spec, data, proxy, limit, test_set=test_set, train_set=train_set)

    cache = PointCache(cache / "prune", zoo_model.weights.sha256 or "none", settings, len(sweep_data.test_labels),
                       data_provenance)
    rows: list[dict] = []
    with track("pruned models", 1 + points, unit="models", transient=True) as bar, \
            track("per-channel losses", unit=LOSS_UNITS[settings.estimator], transient=True) as losses_bar:

        def point_done(row: dict) -> None:
            rows.append(row)
            bar.advance(info=f"last {row['method']} {row['scope']} {row['ratio']:g}")

        finetune = None
        if finetune_epochs:
            train = decode_dataset(open_named(train_name, data))
            finetune = Finetune(train, spec.preprocessing.mean, spec.preprocessing.std, finetune_epochs, cache.directory, device)
        with open_point_executor(executor_spec) as executor:
            result = run_sweep(zoo_model.model, sweep_data, settings, cache, finetune=finetune, save_dir=save_models,
                               on_point=point_done, on_loss_progress=losses_bar.advance,
                               executor=executor)
        agreement = None
        if compare_estimators:
            other = "exact" if settings.estimator == "taylor" else "taylor"
            groups = channel_groups(zoo_model.model, settings.targets)
            with track(f"per-channel losses ({other})", unit=LOSS_UNITS[other], transient=True) as other_bar:
                second = cached_losses(zoo_model.model, sweep_data, groups, other, cache, on_progress=other_bar.advance)
            first = result.losses or cached_losses(zoo_model.model, sweep_data, groups, settings.estimator, cache)
            agreement = pd.DataFrame(estimator_agreement(first, second, alpha))

    table = pd.DataFrame(result.rows)[PRUNE_COLUMNS + ["kept_per_block"]]
    meta = provenance.collect(
        "prune",
        {"model": model, "checkpoint": checkpoint, "checkpoint_default": reference_used, "settings": settings.__dict__, "limit": limit,
         "executor": str(executor_spec), "save_models": save_models, "out": out, "cache": cache.directory},
        weights=zoo_model.weights.describe(), data=data_provenance, wall_s=time.perf_counter() - start,
    )
    markdown = prune_markdown(table, meta, checkpoint_top1=None, fits=result.fits, agreement=agreement)
    with result_set(out):
        written = write_result(out, "prune", table, meta, markdown, optional=["cpu_ms_1000_b100", "cpu_ms_1000_b1"])  # untimed
        written.append(plot_prune(out / "prune.png", table))
        written.append(write_csv(out / "channel_scores.csv", channel_table(result.scores, result.losses)))
        if agreement is not None:
            written.append(write_csv(out / "estimators.csv", agreement))
    show_table(table, title="ViT channel pruning", columns=["method", "scope", "ratio", "params", "macs", "top1",
                                                            "cpu_ms_1000_b100", "cpu_ms_1000_b1"])
    show_written(written)
