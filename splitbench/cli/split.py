"""``splitbench split``: head/tail cost, transfer size, and shared-head multi-task accounting."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import (DryRun, InputSize, Leaf, ModelArgument, ModelOption, OutDir, Repeats, Weights,
                                    default_out, pick_model, split_names)
from splitbench.errors import SplitbenchError
from splitbench.cli.render import console, show_plan, show_table, show_written
from splitbench.reporting import split_markdown
from splitbench.preflight import Plan, writable_folder
from splitbench.results import result_set, write_csv, write_result
from splitbench.split import account_split, task_models
from splitbench.zoo import load_model


@app.command("split")
def split_command(
    model: ModelArgument = None,
    at: Annotated[str, typer.Option("--at", help="Cut: a cut name or module path (`splitbench profile MODEL` lists them), or a paper's layer name (pool4).")] = "",
    model_option: ModelOption = None,
    leaf: Leaf = None,
    tasks: Annotated[
        Optional[str], typer.Option("--tasks", help="Comma-separated tasks sharing the head: classification,detection "
                                    "(default: the model's own task).")
    ] = None,
    weights: Weights = "auto",
    input_size: InputSize = None,
    repeats: Repeats = 3,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Cut MODEL at a split point and account MACs, parameters, bytes and latency."""
    start = time.perf_counter()
    model = pick_model(model, model_option)
    if not at:
        raise SplitbenchError("--at is required: the cut to split at (splitbench profile MODEL lists them)")
    zoo_model = load_model(model, leaf_modules=split_names(leaf, "--leaf") if leaf is not None else ())
    task_list = split_names(tasks, "--tasks") if tasks is not None else [zoo_model.spec.task]
    cut = zoo_model.cuts(input_size).resolve(at)
    task_models(zoo_model, task_list)  # a task without a model fails before any timing
    out = writable_folder(out or default_out("split", f"{zoo_model.spec.name}-{at}"), "--out")
    plan = Plan("split").add("model", f"{model} ({zoo_model.spec.source})").add("weights", zoo_model.describe_weights(weights))
    plan.add("cut", f"{at} = {cut.name}, {'x'.join(map(str, cut.shape))}").add("tasks", ", ".join(task_list))
    if plan.add("timed runs", repeats).add("out", out).finish(dry_run, show_plan):
        return
    zoo_model.load_weights(weights)
    account = account_split(zoo_model, at, task_list, repeats=repeats, input_size=input_size)
    meta = provenance.collect(
        "split",
        {"model": model, "at": at, "tasks": task_list, "weights": weights, "input_size": input_size, "leaf": leaf,
         "repeats": repeats, "out": out},
        weights=zoo_model.weights.describe(),
        wall_s=time.perf_counter() - start,
    )
    with result_set(out):
        written = write_result(out, "split", account.summary(), meta, split_markdown(account, meta))
        written.append(write_csv(out / "split_tasks.csv", account.per_task()))

    per_task = account.per_task()  # the key figures first: a narrow terminal leaves out the last columns
    show_table(per_task, title=f"{account.model} split at {account.split} ({account.module})", source=out / "split_tasks.csv",
               columns=["task", "model", "macs_head", "macs_tail", "tail_ms", "tail_ms_p10", "tail_ms_p90", "repeats",
                        *(c for c in per_task.columns if c not in ("task", "model", "macs_head", "macs_tail", "tail_ms",
                                                                   "tail_ms_p10", "tail_ms_p90", "repeats"))])
    summary = account.summary().iloc[0]
    console.print(
        f"transfer {summary['transfer_shape']} = {summary['transfer_elements']:,} elements "
        f"({summary['transfer_bytes_fp32']:,} B fp32, {summary['transfer_bytes_uint8']:,} B uint8); "
        f"head {account.head_macs / 1e9:.4g} GMACs, "
        + (account.head_timing.describe() if account.head_timing else "not timed (--repeats 0)")
    )
    for task in account.tasks:
        if task.tail_timing:
            console.print(f"{task.task} tail {task.macs_tail / 1e9:.4g} GMACs, {task.tail_timing.describe()}")
    if len(account.tasks) > 1:
        console.print(
            f"shared head: {account.macs_separate / 1e9:.4g} → {account.macs_shared / 1e9:.4g} GMACs, "
            f"reduction {account.reduction_percent:.2f} %"
        )
    show_written(written)
