"""``splitbench split``: head/tail cost, transfer size, and shared-head multi-task accounting."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from splitbench.cli import app
from splitbench.cli.options import (DryRun, InputSize, Leaf, ModelArgument, ModelOption, OutDir, Repeats, Weights,
                                    pick_model, split_names)
from splitbench.cli.render import console, show_plan, show_table, show_written
from splitbench.jobs.split import SplitJob
from splitbench.split import SplitAccount

At = Annotated[str, typer.Option("--at", help="Cut: a cut name or module path (`splitbench profile MODEL` lists them), "
                                 "or a paper's layer name (pool4).")]
Tasks = Annotated[Optional[str], typer.Option(
    "--tasks", help="Comma-separated tasks sharing the head: classification,detection (default: the model's own task).")]
_FIRST = ["task", "model", "macs_head", "macs_tail", "tail_ms", "tail_ms_p10", "tail_ms_p90", "repeats"]


@app.command("split")
def split_command(
    model: ModelArgument = None,
    at: At = "",
    model_option: ModelOption = None,
    leaf: Leaf = None,
    tasks: Tasks = None,
    weights: Weights = "auto",
    input_size: InputSize = None,
    repeats: Repeats = 3,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Cut MODEL at a split point and account MACs, parameters, bytes and latency."""
    job = SplitJob(model=pick_model(model, model_option), at=at,
                   leaf=tuple(split_names(leaf, "--leaf")) if leaf is not None else None,
                   tasks=tuple(split_names(tasks, "--tasks")) if tasks is not None else None,
                   weights=weights, input_size=input_size, repeats=repeats, out=out)
    if dry_run:
        show_plan(job.plan())
        return
    done = job.run()
    per_task = done.account.per_task()  # the key figures first: a narrow terminal leaves out the last columns
    show_table(per_task, title=f"{done.account.model} split at {done.account.split} ({done.account.module})",
               source=done.source, columns=[*_FIRST, *(c for c in per_task.columns if c not in _FIRST)])
    _show_costs(done.account)
    show_written(done.written)


def _show_costs(account: SplitAccount) -> None:
    """The transfer, the head's and each tail's cost, and what sharing the head saves."""
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
