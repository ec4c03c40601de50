"""``splitbench train``: train a zoo classifier (the CIFAR-10 ViT of seed 002) reproducibly."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import pandas as pd
import torch
import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import (CACHE, BatchSize, Cache, DataRoot, Dataset, Device, DryRun, Limit, LoaderWorkers,
                                    OutDir, Precision, Seed, TrainDataset, TrainLimit, Weights, default_out, float_option,
                                    folder_name, open_named)
from splitbench.preflight import Plan, physical_cores, worker_count, writable_file, writable_folder
from splitbench.cli.render import console, show_plan, show_written
from splitbench.data.datasets import check_training_data
from splitbench.data.tensors import decode_dataset
from splitbench.errors import SplitbenchError
from splitbench.reporting import plot_training, training_markdown
from splitbench.results import result_set, write_result
from splitbench.training import CifarAugment, TrainConfig, distributed, train_classifier
from splitbench.training.trainer import pick_device, resolve_precision
from splitbench.weights import save_safetensors
from splitbench.zoo import load_model


@app.command("train")
def train_command(
    model: Annotated[str, typer.Argument(help="Zoo classifier to train (e.g. vit).")],
    weights: Weights = "auto",
    data: DataRoot = None,
    dataset: Dataset = None,
    train_dataset: TrainDataset = None,
    epochs: Annotated[int, typer.Option("--epochs", min=1, help="Training epochs (seed 002's recipe: 200).")] = 200,
    batch_size: BatchSize = 512,
    lr: Annotated[float, float_option("--lr", minimum=0.0, help_text="Adam learning rate (cosine-annealed to 0).")] = 1e-4,
    randaugment: Annotated[int, typer.Option("--randaugment", min=0, help="RandAugment ops per image; 0 disables.")] = 2,
    magnitude: Annotated[int, typer.Option("--magnitude", min=0, max=30, help="RandAugment magnitude.")] = 14,
    seed: Seed = 0,
    device: Device = "auto",
    precision: Precision = "auto",
    compile_model: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the model.")] = False,
    eval_every: Annotated[int, typer.Option("--eval-every", min=1, help="Test accuracy every N epochs.")] = 1,
    train_limit: TrainLimit = None,
    limit: Limit = None,
    loader_workers: LoaderWorkers = 2,
    checkpoint_minutes: Annotated[float, float_option(
        "--checkpoint-minutes", minimum=0.0, help_text="Minutes between checkpoints inside an epoch (0: every step).")] = 10.0,
    cache: Cache = CACHE,
    checkpoint_dir: Annotated[
        Path | None, typer.Option("--checkpoint-dir", help="Resumable state of this run (default: "
                                  "<--cache>/train/<model>-<data set>).")
    ] = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="fp16 safetensors of the final model (default: in --out).")
    ] = None,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Train MODEL on its data set; checkpoints every epoch and resumes where it stopped."""
    start = time.perf_counter()
    zoo_model = load_model(model)
    spec = zoo_model.spec
    if spec.task != "classification" or spec.dataset is None:
        raise SplitbenchError(f"{model} is not a classifier with a training set; try vit or cifar_resnet20")
    chosen = pick_device(device)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                         precision=resolve_precision(precision, chosen), compile=compile_model,
                         eval_every=eval_every, checkpoint_s=60.0 * checkpoint_minutes)
    group = distributed.from_environment(chosen)  # torchrun's environment, or one process
    threads = max(1, physical_cores() // group.world) if chosen.type == "cpu" else physical_cores()
    augment = CifarAugment(randaugment_ops=randaugment, randaugment_magnitude=magnitude)

    train_set = open_named(train_dataset or f"{spec.dataset}:train", data)
    test_set = open_named(dataset or f"{spec.dataset}:test", data)
    if train_dataset is not None or dataset is not None:
        check_training_data(train_set, test_set, "--train-dataset")
    if train_limit is not None and train_limit < len(train_set):
        train_set = train_set.evenly_spaced(train_limit)  # class-sorted folders: a prefix is one class
    if limit is not None and limit < len(test_set):
        test_set = test_set.evenly_spaced(limit)
    workers = worker_count(loader_workers, len(train_set), "--loader-workers")
    # other training data is another run: its checkpoints must not resume this one's
    run = f"{spec.name}-{spec.dataset if train_dataset is None else folder_name(train_dataset)}"
    out = writable_folder(out or default_out("train", run), "--out")
    checkpoint_dir = writable_folder(checkpoint_dir or cache / "train" / run, "--checkpoint-dir")
    export = writable_file(export or out / f"{run}-fp16.safetensors", "--export")
    plan = Plan("train").add("model", f"{model} ({spec.source})").add("weights", zoo_model.describe_weights(weights))
    plan.add("data", f"{spec.dataset}: {len(train_set):,} training, {len(test_set):,} test images")
    plan.add("recipe", f"{epochs} epochs, batch {batch_size}, Adam lr {lr:g}, RandAugment {randaugment}")
    ranks = f", {group.world} processes (DDP, {'nccl' if chosen.type == 'cuda' else 'gloo'})" if group.distributed else ""
    plan.add("device", f"{chosen}, {config.precision} ({precision}), {threads} threads{ranks}").add("checkpoints", checkpoint_dir).add("export", export).add("out", out)
    if dry_run:
        if group.main:  # one plan on screen, from rank 0
            plan.finish(dry_run, show_plan)
        distributed.leave(group)
        return
    zoo_model.load_weights(weights)
    torch.set_num_threads(threads)
    console.print(f"decoding {len(train_set):,} training and {len(test_set):,} test images once")
    train, test = decode_dataset(train_set, workers=workers), decode_dataset(test_set, workers=workers)

    result = train_classifier(
        zoo_model.model, train, test, mean=spec.preprocessing.mean, std=spec.preprocessing.std,
        config=config, checkpoint_dir=checkpoint_dir, device=chosen, augment=augment, group=group,
    )
    distributed.leave(group)
    if not group.main:  # rank 0 writes the results
        return
    recipe = {**config.__dict__, "precision_requested": precision, "threads": threads, "processes": group.world,
              "optimizer": "Adam",
              "augmentation": augment.describe(), "device": str(chosen), "gpu": torch.cuda.get_device_name(chosen) if chosen.type == "cuda" else None}
    save_safetensors(zoo_model.model, export, dtype=torch.float16, metadata={
        "model": spec.name, "dataset": spec.dataset, "recipe": json.dumps(recipe),
        "test_top1": f"{result.test_top1:.2f}" if result.test_top1 is not None else "",
        # a warm restart's weights carry where they started from (source and sha256)
        "init_weights": json.dumps(zoo_model.weights.describe()),
    })
    meta = provenance.collect(
        "train",
        {"model": model, "weights": weights, "recipe": recipe, "train_limit": train_limit, "limit": limit, "out": out,
         "checkpoint_dir": checkpoint_dir, "export": export,
         "resumed_from_epoch": result.resumed_from_epoch, "epochs_run_now": result.epochs_run_now},
        weights=zoo_model.weights.describe(),
        data={"train": train_set.provenance(), "test": test_set.provenance()},
        wall_s=time.perf_counter() - start,
    )
    history = pd.DataFrame(result.history)
    with result_set(out):
        written = write_result(out, "train", history, meta, training_markdown(spec.name, history, recipe, meta),
                               optional=["test_top1"])  # epochs not tested
        written.append(plot_training(out / "train.png", history, title=f"{spec.name} on {spec.dataset}"))
    written.append(export)
    top1 = "n/a" if result.test_top1 is None else f"{result.test_top1:.2f} %"
    console.print(f"{spec.name}: {len(history)} epochs, test top-1 {top1}")
    show_written(written)
