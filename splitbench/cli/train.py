"""``splitbench train``: train a zoo classifier (the CIFAR-10 ViT of seed 002) reproducibly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from splitbench.cli import app
from splitbench.cli.options import (CACHE, BatchSize, Cache, DataRoot, Dataset, Device, DryRun, Limit, LoaderWorkers,
                                    OutDir, Precision, Seed, TrainDataset, TrainLimit, Weights, float_option)
from splitbench.cli.render import console, show_plan, show_written
from splitbench.jobs.train import TrainJob

Epochs = Annotated[int, typer.Option("--epochs", min=1, help="Training epochs (seed 002's recipe: 200).")]
Lr = Annotated[float, float_option("--lr", minimum=0.0, help_text="Adam learning rate (cosine-annealed to 0).")]
RandAugment = Annotated[int, typer.Option("--randaugment", min=0, help="RandAugment ops per image; 0 disables.")]
Magnitude = Annotated[int, typer.Option("--magnitude", min=0, max=30, help="RandAugment magnitude.")]
Compile = Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the model.")]
EvalEvery = Annotated[int, typer.Option("--eval-every", min=1, help="Test accuracy every N epochs.")]
CheckpointMinutes = Annotated[float, float_option(
    "--checkpoint-minutes", minimum=0.0, help_text="Minutes between checkpoints inside an epoch (0: every step).")]
CheckpointDir = Annotated[Path | None, typer.Option(
    "--checkpoint-dir", help="Resumable state of this run (default: <--cache>/train/<model>-<data set>).")]
Export = Annotated[Path | None, typer.Option(
    "--export", help="fp16 safetensors of the final model (default: in --out).")]


@app.command("train")
def train_command(
    model: Annotated[str, typer.Argument(help="Zoo classifier to train (e.g. vit).")],
    weights: Weights = "auto",
    data: DataRoot = None,
    dataset: Dataset = None,
    train_dataset: TrainDataset = None,
    epochs: Epochs = 200,
    batch_size: BatchSize = 512,
    lr: Lr = 1e-4,
    randaugment: RandAugment = 2,
    magnitude: Magnitude = 14,
    seed: Seed = 0,
    device: Device = "auto",
    precision: Precision = "auto",
    compile_model: Compile = False,
    eval_every: EvalEvery = 1,
    train_limit: TrainLimit = None,
    limit: Limit = None,
    loader_workers: LoaderWorkers = 2,
    checkpoint_minutes: CheckpointMinutes = 10.0,
    cache: Cache = CACHE,
    checkpoint_dir: CheckpointDir = None,
    export: Export = None,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Train MODEL on its data set; checkpoints every epoch and resumes where it stopped."""
    job = TrainJob(
        model=model, weights=weights, data=data, dataset=dataset, train_dataset=train_dataset, epochs=epochs,
        batch_size=batch_size, lr=lr, randaugment=randaugment, magnitude=magnitude, seed=seed, device=device,
        precision=precision, compile_model=compile_model, eval_every=eval_every, train_limit=train_limit, limit=limit,
        loader_workers=loader_workers, checkpoint_minutes=checkpoint_minutes, cache=cache,
        checkpoint_dir=checkpoint_dir, export=export, out=out)
    if dry_run:
        if job.runtime.main:  # one plan on screen, from rank 0
            show_plan(job.plan())
        job.runtime.leave()
        return
    done = job.run()
    if done is None:  # not rank 0: rank 0 writes and shows the results
        return
    top1 = "n/a" if done.test_top1 is None else f"{done.test_top1:.2f} %"
    console.print(f"{done.model}: {len(done.history)} epochs, test top-1 {top1}")
    show_written(done.written)
