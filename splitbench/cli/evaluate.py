"""``splitbench eval``: top-1/top-5 of a zoo model on a data set."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import pandas as pd
import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import (DataRoot, Dataset, DryRun, Mean, ModelArgument, ModelOption, OutDir, Std, Weights,
                                    dataset_name, default_out, normalisation, pick_model)
from splitbench.cli.render import show_table, show_written
from splitbench.data import open_dataset
from splitbench.data.datasets import check_label_space
from splitbench.errors import SplitbenchError
from splitbench.evaluation import evaluate_topk
from splitbench.preflight import Plan, worker_count, writable_folder
from splitbench.results import markdown_table, write_result
from splitbench.zoo import load_model


@app.command("eval")
def eval_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    weights: Weights = "default",
    dataset: Dataset = None,
    split: Annotated[Optional[str], typer.Option("--split", help="Data set split (default: the manifest's).")] = None,
    data: DataRoot = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Evaluate the first N images only.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    workers: Annotated[int, typer.Option("--workers", min=0, help="Data-loading processes.")] = 2,
    mean: Mean = None,
    std: Std = None,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Top-1 and top-5 accuracy of MODEL with WEIGHTS on a data set."""
    start = time.perf_counter()
    model = pick_model(model, model_option)
    zoo_model = load_model(model, mean=normalisation(mean, "--mean"), std=normalisation(std, "--std"))
    if zoo_model.spec.task != "classification":
        raise SplitbenchError(f"eval scores classifiers by top-1/top-5; {model} is a {zoo_model.spec.task} model")
    name = dataset_name(model, dataset, zoo_model.spec.dataset)
    images = open_dataset(name, split=split, root=data, limit=limit,
                          transform=zoo_model.spec.preprocessing.transform())
    check_label_space(zoo_model.output_classes(), images, model)
    workers = worker_count(workers, len(images))
    out = writable_folder(out or default_out("eval", f"{zoo_model.spec.name}-{name}"), "--out")
    plan = Plan("eval").add("model", f"{model} ({zoo_model.spec.source})").add("weights", zoo_model.describe_weights(weights))
    plan.add("data", f"{name}: {len(images):,} images").add("preprocessing", zoo_model.spec.preprocessing.describe())
    if plan.add("out", out).finish(dry_run):
        return
    zoo_model.load_weights(weights)
    result = evaluate_topk(zoo_model.model, images, batch_size=batch_size, workers=workers)
    table = pd.DataFrame([{
        "model": model, "dataset": name, "split": images.provenance()["split"], "images": result.images,
        "top1": round(result.top1, 3), "top5": round(result.top5, 3), "wall_s": round(result.wall_s, 2),
    }])
    meta = provenance.collect(
        "eval",
        {"model": model, "weights": weights, "dataset": name, "split": split, "limit": limit,
         "batch_size": batch_size, "workers": workers, "out": out,
         "preprocessing": zoo_model.spec.preprocessing.describe()},
        weights=zoo_model.weights.describe(),
        data=images.provenance(),
        wall_s=time.perf_counter() - start,
    )
    markdown = f"# {model} on {name}\n\n{markdown_table(table)}\n"
    written = write_result(out, "eval", table, meta, markdown)
    show_table(table, title=f"{model} on {name}")
    show_written(written)
