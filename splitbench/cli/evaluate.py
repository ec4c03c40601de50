"""``splitbench eval``: top-1/top-5 of a classifier, or COCO mAP of a detector, on a data set."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from splitbench.cli import app
from splitbench.cli.options import (BatchSize, DataRoot, Dataset, DryRun, Limit, LoaderWorkers, Mean, ModelArgument,
                                    ModelOption, OutDir, Split, Std, Weights, normalisation, pick_model)
from splitbench.cli.render import show_plan, show_table, show_written
from splitbench.jobs.evaluate import EvalJob

Task = Annotated[Optional[str], typer.Option(
    "--task", help="classification (top-1/top-5) or detection (COCO mAP@[.5:.95] and mAP@.5); default: the model's.")]


@app.command("eval")
def eval_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    weights: Weights = "auto",
    dataset: Dataset = None,
    split: Split = None,
    data: DataRoot = None,
    limit: Limit = None,
    batch_size: BatchSize = 32,
    loader_workers: LoaderWorkers = 2,
    task: Task = None,
    mean: Mean = None,
    std: Std = None,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Top-1 and top-5 accuracy of a classifier, or COCO mAP of a detector, with WEIGHTS on a data set."""
    job = EvalJob(model=pick_model(model, model_option), weights=weights, dataset=dataset, split=split, data=data,
                  limit=limit, batch_size=batch_size, loader_workers=loader_workers, task=task,
                  mean=normalisation(mean, "--mean"), std=normalisation(std, "--std"), out=out)
    if job.plan().finish(dry_run, show_plan):
        return
    outcome = job.run()
    show_table(outcome.table, title=job.title, source=outcome.source)
    show_written(outcome.written)
