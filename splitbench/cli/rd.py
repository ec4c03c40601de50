"""``splitbench rd``: learned compression trained per λ; RD curves, BD-rate, cost (seeds 000 and 001)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import (CACHE, BatchSize, Cache, DataRoot, Dataset, Device, DryRun, ExecutorOption,
                                    InputSize, Leaf, Limit, ModelArgument, ModelOption, OutDir, Precision, Seed,
                                    TrainDataset, TrainLimit, Weights, default_out, float_option, pick_model,
                                    split_names, split_numbers)
from splitbench.cli.render import console, show_plan, show_table, show_written
from splitbench.data.datasets import check_training_data
from splitbench.errors import SplitbenchError
from splitbench.executors import ExecutorSpec, open_point_executor
from splitbench.preflight import Plan, physical_cores, writable_folder
from splitbench.results import result_set, warm_up_plotting, write_csv, write_result
from splitbench.training import distributed
from splitbench.zoo import get_spec, load_model

MIN_IMAGE_SIZE = 16  # --input-size for the image codec (--at input)
SEED000_FEATURE_SHAPE = (256, 56, 56)
_SHOWN = ["variant", "alpha", "lambda", "epochs", "bpp_estimated", "bpp_actual", "top1", "top5", "agreement", "step_s"]


@app.command("rd")
def rd_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    at: Annotated[str | None, typer.Option("--at", help="Split point, or 'input' for an image codec (seed 001).")] = None,
    variant: Annotated[str | None, typer.Option(
        "--variant", help="Comma-separated: none, attention1, attention2 (features); cheng2020_attn (--at input).")] = None,
    lambdas: Annotated[str, typer.Option("--lambdas", help="λ values of L = λ·E + bpp, comma-separated, > 0.")] = "0.05,0.2,1,4",
    aux_alpha: Annotated[str | None, typer.Option(
        "--aux-alpha", help="α of the auxiliary loss, comma-separated (--at input; default 0,0.1: without and with).")] = None,
    entropy: Annotated[str, typer.Option("--entropy", help="Entropy model: factorized or hyperprior.")] = "factorized",
    target: Annotated[str, typer.Option("--target", help="distill (the uncompressed model's outputs) or labels.")] = "distill",
    channels: Annotated[int, typer.Option("--channels", min=1, help="N: channels of the codec's layers and latent.")] = 32,
    weights: Weights = "auto",
    leaf: Leaf = None,
    train_dataset: TrainDataset = None,
    dataset: Dataset = None,
    data: DataRoot = None,
    train_limit: TrainLimit = None,
    limit: Limit = None,
    input_size: InputSize = None,
    epochs: Annotated[str, typer.Option("--epochs", help="RD training epochs per λ; several (2,4,8,16): one curve per training budget.")] = "2",
    warmup_epochs: Annotated[int, typer.Option("--warmup-epochs", min=0, help="Reconstruction pre-training, shared by every λ.")] = 4,
    warmup_rate_weight: Annotated[float, float_option(
        "--warmup-rate-weight", minimum=0.0, help_text="Weight of bpp in the warm-up loss (relative MSE + w·bpp).")] = 0.01,
    batch_size: BatchSize = 16,
    lr: Annotated[float, float_option("--lr", minimum=0.0, help_text="Adam learning rate of the codec.")] = 1e-3,
    seed: Seed = 0,
    device: Device = "auto",
    precision: Precision = "auto",
    baseline: Annotated[Path | None, typer.Option("--baseline", help="codec.csv with BPG at the same split (the RD plot's handcrafted curve).")] = None,
    cost_only: Annotated[bool, typer.Option("--cost-only", help="Write the cost table (seed 000 Table 1) only; no data, no training.")] = False,
    cache: Cache = CACHE,
    executor: ExecutorOption = "local",
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Train a compression model per λ at a split point (or in front of the model); RD curves, BD-rate, cost."""
    # The number lists first: a bad one fails before the seconds of imports below.
    lambda_values = split_numbers(lambdas, "--lambdas")
    budgets = sorted(set(split_numbers(epochs, "--epochs", int, 1)))
    alpha_values = split_numbers(aux_alpha, "--aux-alpha") if aux_alpha is not None else None
    # Imported here: CompressAI, SciPy and the BD tools take seconds to import, which every
    # other command would otherwise pay at start-up.
    from splitbench.compression.data import INPUT, open_named, prepare
    from splitbench.compression.models import ENTROPY_MODELS
    from splitbench.compression.pipeline import TARGETS
    from splitbench.compression.report import (bd_against_baseline, bd_for_table, bit_allocation_figure,
                                               load_baseline, plot_rd, rd_markdown)
    from splitbench.compression.sweep import RDRequest, check_lambdas, check_variants, run_rd
    from splitbench.compression.train import RDSettings
    from splitbench.training.trainer import pick_device, resolve_precision

    start = time.perf_counter()
    executor_spec = ExecutorSpec.parse(executor)
    model = pick_model(model, model_option, "mobilenet_v2")
    spec = get_spec(model)
    at = at or spec.default_cut("rd")
    if at is None:
        raise SplitbenchError(f"{model} has no seed split point; pass --at")
    default_variants = "cheng2020_attn" if at == INPUT else "none,attention1,attention2"
    variants = check_variants(split_names(variant if variant is not None else default_variants, "--variant"), at)
    lams = check_lambdas(lambda_values)
    alphas = alpha_values if alpha_values is not None else ([0.0, 0.1] if at == INPUT else [0.0])
    if at != INPUT and any(alphas):
        raise SplitbenchError("--aux-alpha applies to an image codec (--at input) only")
    if input_size is not None and at != INPUT:
        raise SplitbenchError("--input-size applies to an image codec (--at input) only; features keep the model's")
    if input_size is not None and input_size < MIN_IMAGE_SIZE:
        raise SplitbenchError(f"--input-size {input_size}: the image codec takes {MIN_IMAGE_SIZE} pixels or more")
    if entropy not in ENTROPY_MODELS:
        raise SplitbenchError(f"unknown --entropy '{entropy}'; valid: {', '.join(ENTROPY_MODELS)}")
    if target not in TARGETS:
        raise SplitbenchError(f"unknown --target '{target}'; valid: {', '.join(TARGETS)}")
    baseline_table = load_baseline(baseline, spec.name, at) if baseline is not None else None
    # The cost depends on shapes only: --cost-only needs no weights (and no network).
    zoo_model = load_model(model, leaf_modules=split_names(leaf, "--leaf") if leaf is not None else ())
    if at != INPUT:
        if len(zoo_model.cuts().resolve(at).shape) != 3:
            raise SplitbenchError(f"the tensor at {at} is not C×H×W feature maps that a feature codec can take")
    elif cost_only:
        raise SplitbenchError("--cost-only applies to feature codecs (a split point), not --at input")
    seed_suffix = f"-seed{seed}" if seed else ""  # a seed run goes beside the seed-0 sweep, not over it
    out = writable_folder(out or default_out("rd", f"{spec.name}-{at}{seed_suffix}"), "--out")
    plan = Plan("rd").add("model", f"{model} ({spec.source})").add("at", at).add("variants", ", ".join(variants))
    plan.add("λ", ", ".join(f"{lam:g}" for lam in lams)).add("α", ", ".join(f"{a:g}" for a in alphas))
    if not cost_only:
        zoo_model.require_classifier("rd")  # its cost table is shapes only, for any model
        writable_folder(cache, "--cache")
        torch_device = pick_device(device)
        if executor_spec.kind == "ray" and torch_device.type == "cuda":
            raise SplitbenchError("--executor ray runs each point on one CPU of a Ray worker; train on the GPU with --executor local "
                              "(or torchrun), or pass --device cpu")
        train_precision = resolve_precision(precision, torch_device)
        test_data = dataset or spec.dataset
        train_data = train_dataset or spec.train_dataset or (spec.dataset and f"{spec.dataset}:train")
        if test_data is None or train_data is None:
            raise SplitbenchError(f"{model} has no data set of its own; pass --dataset and --train-dataset")
        train_set, test_set = open_named(train_data, data), open_named(test_data, data)
        check_training_data(train_set, test_set, "--train-dataset")
        for images in (train_set, test_set) if target == "labels" else (test_set,):  # distill: no training labels
            zoo_model.check_data(images)
        train_images, test_images = len(train_set), len(test_set)
        plan.add("weights", zoo_model.describe_weights(weights, pretrained=True)).add("device", torch_device)
        plan.add("data", f"train {train_data} ({min(train_limit or train_images, train_images):,} images), "
                         f"test {test_data} ({min(limit or test_images, test_images):,} images)")
        plan.add("training", f"{warmup_epochs} warm-up + {', '.join(map(str, budgets))} epochs per λ, batch {batch_size}, "
                             f"{train_precision} ({precision})").add("cache", cache)
        plan.add("executor", executor_spec)
    ranks = distributed.from_environment(torch_device) if not cost_only else distributed.Group()
    if ranks.distributed:
        if executor_spec.kind != "local":
            distributed.leave(ranks)
            raise SplitbenchError("under torchrun every point trains in the ranks' own processes: use --executor local")
        plan.add("processes", f"{ranks.world} (DDP, {'nccl' if torch_device.type == 'cuda' else 'gloo'})")
    plan.add("out", out)
    if dry_run:
        if ranks.main:  # one plan on screen, from rank 0
            plan.finish(dry_run, show_plan)
        distributed.leave(ranks)
        return
    if ranks.distributed and torch_device.type == "cpu":
        torch.set_num_threads(max(1, physical_cores() // ranks.world))
    plotting = warm_up_plotting()
    if not cost_only:  # the cost depends on shapes only: --cost-only needs no weights (and no network)
        zoo_model.load_weights(weights, pretrained=True)
    arguments = {"model": model, "at": at, "variant": ",".join(variants), "lambdas": lams, "aux_alpha": alphas,
                 "entropy": entropy, "target": target, "channels": channels, "weights": weights,
                 "leaf": leaf, "train_dataset": None if cost_only else train_data, "dataset": None if cost_only else test_data,
                 "data": data, "train_limit": train_limit, "limit": limit,
                 "input_size": input_size if at == INPUT else None, "epochs": budgets,
                 "warmup_epochs": warmup_epochs, "warmup_rate_weight": warmup_rate_weight,
                 "batch_size": batch_size, "lr": lr, "seed": seed, "device": device, "precision_requested": precision,
                 "precision": train_precision if not cost_only else None,
                 "baseline": baseline, "cache": cache, "executor": str(executor_spec), "processes": ranks.world, "out": out}

    written = []
    if at != INPUT and ranks.main:
        written += _write_costs(zoo_model, at, channels, entropy, variants, out, arguments)
        if cost_only:
            show_written(written)
            return

    settings = RDSettings(epochs=budgets[-1], warmup_epochs=warmup_epochs, batch_size=batch_size, lr=lr,
                          warmup_rate_weight=warmup_rate_weight, target=target, seed=seed, precision=train_precision)
    size = input_size if at == INPUT else None
    if not ranks.main:
        ranks.barrier()  # rank 0 computes the features into the cache; the others then read them
    train_set = prepare(zoo_model, at, train_data, root=data, limit=train_limit, cache=cache, image_size=size,
                        progress=ranks.main)
    test_set = prepare(zoo_model, at, test_data, root=data, limit=limit, cache=cache, image_size=size,
                       progress=ranks.main)
    if ranks.main:
        ranks.barrier()
    in_process = executor_spec.kind == "local"  # a Ray worker's bars would interleave in the log: a line per point
    request = RDRequest(zoo_model, at, variants, lams, alphas, channels, entropy, settings, train_set, test_set,
                        cache, torch_device, progress=in_process and ranks.main, group=ranks, epochs=tuple(budgets))

    def point_done(row: dict) -> None:
        if not in_process:
            console.print(f"{row['variant']} α={row['alpha']:g} λ={row['lambda']:g}, {row['epochs']} epochs: "
                          f"{row['bpp_actual']:.4f} bpp, "
                          f"top-1 {row['top1']:.2f} %")

    with open_point_executor(executor_spec) as pool:
        table = run_rd(request, pool, on_point=point_done)
    distributed.leave(ranks)
    if not ranks.main:  # rank 0 writes the results
        return
    meta = provenance.collect("rd", arguments, weights=zoo_model.weights.describe(),
                              data={"train": train_set.provenance, "test": test_set.provenance},
                              wall_s=time.perf_counter() - start)
    # The sidecar's wall time is this command's; the points' own compute (perhaps from earlier
    # runs, read from the cache) is summed here and itemised per point in rd.csv. Each row
    # repeats its variant's shared warm-up, and a budget's train_s includes the shorter ones'.
    longest = table[table["epochs"] == table["epochs"].max()]
    compute = {"warmup_s": table.groupby("variant")["warmup_s"].first().sum(), "train_s": longest["train_s"].sum(),
               "eval_s": table["eval_s"].sum()}
    meta["points_compute_s"] = {key: round(float(value), 1) for key, value in compute.items()}
    plotting.join()
    bd = bd_for_table(table)
    bd_bpg = bd_against_baseline(table, baseline_table) if baseline_table is not None else None
    with result_set(out):
        written += write_result(out, "rd", table, meta, rd_markdown(table, bd, baseline_table, bd_bpg, meta))
        written.append(write_csv(out / "bd.csv", bd, optional=["bd_rate_percent", "bd_top1"]))  # curves too short
        if bd_bpg is not None:
            written.append(write_csv(out / "bd_vs_bpg.csv", bd_bpg))
        written.append(plot_rd(table, baseline_table, out / "rd.png"))
        if at == INPUT:
            written.append(bit_allocation_figure(request, out / "bit_allocation.png"))
    show_table(table, title=f"{spec.name} at {at}: learned compression", columns=_SHOWN, source=out / "rd.csv")
    show_table(bd, title="BD-rate and BD-accuracy", columns=["anchor", "test", "method", "bd_rate_percent", "bd_top1", "warning"],
               source=out / "bd.csv")
    show_written(written)


def _write_costs(zoo_model, at: str, channels: int, entropy: str, variants: list[str], out: Path,
                 arguments: dict[str, object]) -> list[Path]:
    from splitbench.codecs.sweep import feature_shape
    from splitbench.compression.costs import cost_table
    from splitbench.compression.report import cost_markdown
    from splitbench.references import load_reference

    started = time.perf_counter()
    shape = feature_shape(zoo_model, at, zoo_model.spec.preprocessing)
    # The paper's Table 1 is for ResNet50's conv2_x output; beside any other shape it would mislead.
    reference = load_reference("seed000_compression_model_cost") if shape == SEED000_FEATURE_SHAPE else None
    table = cost_table(*shape, channels, entropy, tuple(variants), reference)
    meta = provenance.collect("rd --cost-only", arguments, wall_s=time.perf_counter() - started)
    console.print(f"cost of the compression model on a {'x'.join(map(str, shape))} feature (N = {channels})")
    show_table(table, source=out / "cost.csv")
    return write_result(out, "cost", table, meta, cost_markdown(table, meta))
