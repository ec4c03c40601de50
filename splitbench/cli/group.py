"""``splitbench group``: seed 004's FLGC sweep over group counts, with and without duplication."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Annotated

import pandas as pd
import torch
import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import (CACHE, BatchSize, Cache, DataRoot, Dataset, Device, DryRun, ExecutorOption, Limit,
                                    OutDir, Precision, Repeats, Seed, TrainDataset, TrainLimit, Weights,
                                    alone_timing_repeats, default_out, float_option, open_named, split_numbers)
from splitbench.data.datasets import check_training_data
from splitbench.preflight import Plan, physical_cores, writable_folder
from splitbench.cli.render import console, show_plan, show_table, show_written
from splitbench.errors import SplitbenchError
from splitbench.executors import ExecutorSpec, open_point_executor
from splitbench.grouping.flgc import check_groups_fit
from splitbench.grouping.report import duplication_table, group_markdown, plot_group
from splitbench.grouping.sweep import (
    GROUP_COLUMNS,
    GroupCache,
    GroupSettings,
    load_group_data,
    run_group_sweep,
)
from splitbench.results import result_set, write_csv, write_result
from splitbench.training import distributed
from splitbench.training.trainer import pick_device, resolve_precision
from splitbench.zoo import load_model


def _counts(text: str, option: str, minimum: int) -> tuple[int, ...]:
    """A list option of whole numbers, duplicates dropped in order."""
    return tuple(dict.fromkeys(split_numbers(text, option, int, minimum)))


@app.command("group")
def group_command(
    model: Annotated[str, typer.Argument(help="A CIFAR-10 model: cifar_resnet20, cifar_resnet56 or cifar_resnet50.")],
    weights: Weights = "auto",
    groups: Annotated[str, typer.Option("--groups", help="Group counts, e.g. 2,4,8,16 (1 = FLGC that keeps every connection).")] = "2,4,8",
    duplicate_top: Annotated[str, typer.Option("--duplicate-top", help="Seed 004's duplication: top-K maps set each group's threshold; 0 = plain FLGC.")] = "0,3",
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Fine-tuning epochs per point (Adam, cosine, crop+flip).")] = 1,
    lr: Annotated[float, float_option("--lr", minimum=0.0, help_text="Adam learning rate for weights and assignments.")] = 1e-3,
    batch_size: BatchSize = 128,
    device: Device = "auto",
    precision: Precision = "auto",
    data: DataRoot = None,
    dataset: Dataset = None,
    train_dataset: TrainDataset = None,
    train_limit: TrainLimit = None,
    limit: Limit = None,
    repeats: Repeats = 3,
    seed: Seed = 0,
    cache: Cache = CACHE,
    executor: ExecutorOption = "local",
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Fine-tune MODEL with FLGC at each group count, with and without duplication; measure the grouped models."""
    start = time.perf_counter()
    executor_spec = ExecutorSpec.parse(executor)
    chosen_device = pick_device(device)
    settings = GroupSettings(groups=_counts(groups, "--groups", 1), duplicate_tops=_counts(duplicate_top, "--duplicate-top", 0),
                             epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, timing_repeats=repeats,
                             precision=resolve_precision(precision, chosen_device))
    dense = load_model(model)
    if dense.spec.dataset != "cifar10":
        raise SplitbenchError(f"group trains on CIFAR-10; {model} is not a CIFAR-10 model "
                              "(use cifar_resnet20, cifar_resnet56 or cifar_resnet50)")
    check_groups_fit(dense.model, settings.groups)
    if executor_spec.kind == "ray" and chosen_device.type == "cuda":
        raise SplitbenchError("--executor ray runs each point on one CPU of a Ray worker; train on the GPU with --executor local "
                              "(or torchrun), or pass --device cpu")
    ranks = distributed.from_environment(chosen_device)  # torchrun's environment, or one process
    settings = replace(settings, timing_repeats=alone_timing_repeats(repeats, executor, ranks.world)
                       if ranks.main else 0)
    if ranks.distributed and executor_spec.kind != "local":
        distributed.leave(ranks)
        raise SplitbenchError("under torchrun every point trains in the ranks' own processes: use --executor local")
    test_name, train_name = dataset or f"{dense.spec.dataset}:test", train_dataset or f"{dense.spec.dataset}:train"
    train_set, test_set = open_named(train_name, data), open_named(test_name, data)
    if dataset is not None or train_dataset is not None:
        check_training_data(train_set, test_set, "--train-dataset")
    train_images, test_images = len(train_set), len(dense.check_data(test_set))
    out = writable_folder(out or default_out("group", model + (f"-seed{seed}" if seed else "")), "--out")
    writable_folder(cache, "--cache")
    plan = Plan("group").add("model", model).add("weights", dense.describe_weights(weights))
    plan.add("points", f"{1 + len(list(settings.points()))}: the dense model, groups {groups} × duplicate top {duplicate_top}")
    plan.add("data", f"{min(train_limit or train_images, train_images):,} training images of {train_name}, "
                     f"{min(limit or test_images, test_images):,} test images of {test_name}")
    processes = f", {ranks.world} processes (DDP)" if ranks.distributed else ""
    plan.add("training", f"{epochs} epoch(s) per point on {chosen_device}{processes}").add("executor", executor_spec)
    if dry_run:
        if ranks.main:  # one plan on screen, from rank 0
            plan.add("out", out).finish(dry_run, show_plan)
        distributed.leave(ranks)
        return
    if ranks.distributed and chosen_device.type == "cpu":
        torch.set_num_threads(max(1, physical_cores() // ranks.world))
    dense.load_weights(weights)
    sweep_data, data_provenance = load_group_data(dense.spec, data, train_limit, limit, test_set=test_set,
                                                  train_set=train_set)
    point_cache = GroupCache(cache / "group" / model, dense.weights.sha256 or "none", settings, sweep_data,
                             data_provenance)

    total = 1 + len(list(settings.points()))
    done: list[dict] = []

    def point_done(row: dict) -> None:  # the trainer's own bars show each point's epochs and images/s
        done.append(row)
        if not ranks.main:
            return
        console.print(f"[{len(done)}/{total}] groups {row['groups']}, duplicate top {row['duplicate_top']}: "
                      f"top-1 {row['top1']:.2f} %, {row['macs'] / 1e6:.2f} M MACs, {row['cpu_ms_1000']} ms")

    with open_point_executor(executor_spec) as pool:  # training bars from this process only
        rows = run_group_sweep(dense, sweep_data, settings, point_cache, chosen_device, on_point=point_done,
                               progress=executor_spec.kind == "local", executor=pool, ranks=ranks)
    distributed.leave(ranks)
    if not ranks.main:  # rank 0 writes the results
        return

    table = pd.DataFrame(rows).assign(seed=seed)
    meta = provenance.collect(
        "group",
        {"model": model, "weights": weights, "settings": settings.__dict__, "device": str(chosen_device),
         "train_limit": train_limit, "limit": limit, "executor": str(executor_spec), "processes": ranks.world, "out": out, "cache": point_cache.directory},
        weights=dense.weights.describe(), data=data_provenance, wall_s=time.perf_counter() - start,
    )
    with result_set(out):
        written = write_result(out, "group", table[GROUP_COLUMNS], meta, group_markdown(table, meta),
                               optional=["cpu_ms_1000_masked", "train_top1"])  # the dense row's
        written.append(write_csv(out / "duplication.csv", duplication_table(rows)))
        written.append(plot_group(out / "group.png", table))
    show_table(table, title=f"FLGC on {model}", columns=["groups", "duplicate_top", "duplicated_maps", "params", "macs",
                                                           "top1", "cpu_ms_1000", "cpu_ms_1000_masked"],
               source=out / "group.csv")
    show_written(written)
