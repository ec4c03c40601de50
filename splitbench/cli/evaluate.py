"""``splitbench eval``: top-1/top-5 of a classifier, or COCO mAP of a detector, on a data set."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import pandas as pd
import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import (BatchSize, DataRoot, Dataset, DryRun, Limit, LoaderWorkers, Mean, ModelArgument,
                                    ModelOption, OutDir, Split, Std, Weights, dataset_and_split, default_out,
                                    normalisation, pick_model)
from splitbench.cli.render import show_plan, show_table, show_written
from splitbench.data import open_dataset
from splitbench.detection.evaluate import detection_transform, evaluate_detection
from splitbench.errors import SplitbenchError, unknown_name
from splitbench.evaluation import evaluate_topk
from splitbench.scoring import scorer_for
from splitbench.preflight import Plan, worker_count, writable_folder
from splitbench.results import markdown_table, result_set, write_result
from splitbench.zoo import ZooModel, load_model

TASKS = ("classification", "detection")


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
    task: Annotated[Optional[str], typer.Option(
        "--task", help="classification (top-1/top-5) or detection (COCO mAP@[.5:.95] and mAP@.5); "
        "default: the model's.")] = None,
    mean: Mean = None,
    std: Std = None,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Top-1 and top-5 accuracy of a classifier, or COCO mAP of a detector, with WEIGHTS on a data set."""
    start = time.perf_counter()
    model = pick_model(model, model_option)
    zoo_model = load_model(model, mean=normalisation(mean, "--mean"), std=normalisation(std, "--std"))
    task = check_task(zoo_model, task)
    scorer_for(zoo_model, None)  # a model whose outputs cannot be scored fails before any data is read
    name, split = dataset_and_split(model, dataset, split, zoo_model.spec.dataset)
    transform = detection_transform(zoo_model.spec) if task == "detection" else zoo_model.spec.preprocessing.transform()
    images = zoo_model.check_data(open_dataset(name, split=split, root=data, limit=limit, transform=transform))
    workers = worker_count(loader_workers, len(images), "--loader-workers")
    out = writable_folder(out or default_out("eval", f"{zoo_model.spec.name}-{name}"), "--out")
    plan = Plan("eval").add("model", f"{model} ({zoo_model.spec.source})")
    plan.add("weights", zoo_model.describe_weights(weights, pretrained=True))
    plan.add("task", task).add("data", f"{name}: {len(images):,} images").add("preprocessing", _preprocessing(zoo_model))
    plan.estimate(zoo_model.model, zoo_model.example_input(), len(images))
    if plan.add("out", out).finish(dry_run, show_plan):
        return
    zoo_model.load_weights(weights, pretrained=True)
    row = {"model": model, "dataset": name, "split": images.provenance()["split"]}
    if task == "detection":
        found = evaluate_detection(zoo_model, images, batch_size=batch_size, workers=workers)
        row |= {"images": found.images, "detections": found.detections, "map": round(found.figures["map"], 3),
                "map50": round(found.figures["map50"], 3), "wall_s": round(found.wall_s, 2)}
    else:
        result = evaluate_topk(zoo_model.model, images, batch_size=batch_size, workers=workers)
        row |= {"images": result.images, "top1": round(result.top1, 3), "top5": round(result.top5, 3),
                "wall_s": round(result.wall_s, 2)}
    table = pd.DataFrame([row])
    meta = provenance.collect(
        "eval",
        {"model": model, "weights": weights, "task": task, "dataset": name, "split": split, "limit": limit,
         "batch_size": batch_size, "loader_workers": workers, "out": out,
         "preprocessing": _preprocessing(zoo_model)},
        weights=zoo_model.weights.describe(),
        data=images.provenance(),
        wall_s=time.perf_counter() - start,
    )
    markdown = f"# {model} on {name}\n\n{markdown_table(table)}\n"
    with result_set(out):
        written = write_result(out, "eval", table, meta, markdown)
    show_table(table, title=f"{model} on {name}", source=out / "eval.csv")
    show_written(written)


def check_task(zoo_model: ZooModel, task: str | None) -> str:
    """``--task``, which must be the model's own (default); one line otherwise."""
    if task is not None and task not in TASKS:
        raise unknown_name("task", task, TASKS)
    own = zoo_model.spec.task
    if task is not None and task != own:
        raise SplitbenchError(f"--task {task}: {zoo_model.spec.name} is a {own} model")
    if own not in TASKS:
        raise SplitbenchError(f"eval scores classifiers and detectors; {zoo_model.spec.name} is a {own} model")
    return own


def _preprocessing(zoo_model: ZooModel) -> dict | str:
    if zoo_model.spec.image_list_input:
        return "the image at its own size, [0, 1]; the model resizes and normalises it"
    return zoo_model.spec.preprocessing.describe()
