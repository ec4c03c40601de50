"""``splitbench group``: seed 004's FLGC sweep over group counts, with and without duplication.

The command parses its options into a :class:`~splitbench.jobs.group.GroupJob`, which checks
them, resolves the runtime (device, precision, torchrun, executor), plans and runs the sweep;
this module only renders.
"""

from __future__ import annotations

from typing import Annotated

import typer

from splitbench.cli import app
from splitbench.cli.options import (CACHE, BatchSize, Cache, DataRoot, Dataset, Device, DryRun, ExecutorOption, Limit,
                                    OutDir, Precision, Repeats, Seed, TrainDataset, TrainLimit, Weights, float_option,
                                    split_numbers)
from splitbench.cli.render import console, show_plan, show_table, show_written
from splitbench.jobs.group import GroupJob

Model = Annotated[str, typer.Argument(help="A CIFAR-10 model: cifar_resnet20, cifar_resnet56 or cifar_resnet50.")]
Groups = Annotated[str, typer.Option("--groups", help="Group counts, e.g. 2,4,8,16 (1 = FLGC that keeps every "
                                     "connection).")]
DuplicateTop = Annotated[str, typer.Option("--duplicate-top", help="Seed 004's duplication: top-K maps set each "
                                           "group's threshold; 0 = plain FLGC.")]
Epochs = Annotated[int, typer.Option("--epochs", min=1, help="Fine-tuning epochs per point (Adam, cosine, crop+flip).")]
Lr = Annotated[float, float_option("--lr", minimum=0.0, help_text="Adam learning rate for weights and assignments.")]
SHOWN = ["groups", "duplicate_top", "duplicated_maps", "params", "macs", "top1", "cpu_ms_1000", "cpu_ms_1000_masked"]


def _counts(text: str, option: str, minimum: int) -> tuple[int, ...]:
    """A list option of whole numbers, duplicates dropped in order."""
    return tuple(dict.fromkeys(split_numbers(text, option, int, minimum)))


@app.command("group")
def group_command(
    model: Model,
    weights: Weights = "auto",
    groups: Groups = "2,4,8",
    duplicate_top: DuplicateTop = "0,3",
    epochs: Epochs = 1,
    lr: Lr = 1e-3,
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
    job = GroupJob(model=model, weights=weights, groups=_counts(groups, "--groups", 1),
                   duplicate_top=_counts(duplicate_top, "--duplicate-top", 0), epochs=epochs, lr=lr,
                   batch_size=batch_size, device=device, precision=precision, data=data, dataset=dataset,
                   train_dataset=train_dataset, train_limit=train_limit, limit=limit, repeats=repeats, seed=seed,
                   cache=cache, executor=executor, out=out)
    for note in job.notes:
        console.print(note)
    if dry_run:
        if job.runtime.main:  # one plan on screen, from rank 0
            show_plan(job.plan())
        job.runtime.leave()
        return
    result = job.run()
    if result is not None:  # rank 0 (or the only process) writes and shows the results
        show_table(result.table, title=f"FLGC on {model}", columns=SHOWN, source=result.out / "group.csv")
        show_written(result.written)
