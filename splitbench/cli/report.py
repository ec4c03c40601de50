"""``splitbench report``: the one-page overview of reports/, and ``--check`` against baselines."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import pandas as pd
import typer

from splitbench.cli import app
from splitbench.cli.options import DataRoot, DryRun
from splitbench.cli.render import console, figure, show_plan, show_table, show_written
from splitbench.errors import SplitbenchError
from splitbench.overview import render_overview
from splitbench.regression import (
    BASELINES,
    REFERENCE_VIT,
    compare,
    load_baselines,
    measure,
    parse_slices,
    update_baselines,
)
from splitbench.preflight import Plan, writable_file
from splitbench.results import verify_tables, write_text


@app.command("report")
def report_command(
    out: Annotated[Path, typer.Option("--out", help="Where the overview goes.")] = Path("reports/README.md"),
    reports: Annotated[Path, typer.Option("--reports", help="Folder of committed results.")] = Path("reports"),
    check: Annotated[bool, typer.Option("--check", help="Re-measure the regression slices and compare with the baselines.")] = False,
    update: Annotated[bool, typer.Option("--update", help="With --check: write what was measured as the new baselines.")] = False,
    only: Annotated[Optional[str], typer.Option("--only", help="With --check: slices, comma-separated (default: all).")] = None,
    baselines: Annotated[Path, typer.Option("--baselines", help="Baselines CSV.")] = BASELINES,
    data: DataRoot = None,
    weights_dir: Annotated[Optional[Path], typer.Option("--weights-dir", help="Shared weights (default: <data root>/../weights).")] = None,
    reference_vit: Annotated[Path, typer.Option("--reference-vit", help="Checkpoint the prune slice prunes.")] = REFERENCE_VIT,
    dry_run: DryRun = False,
) -> None:
    """Write the overview of every committed reproduction; with --check, catch drifts in the numbers."""
    if not check:
        if update or only:
            raise SplitbenchError("--update and --only go with --check")
        writable_file(out, "--out")
        page = render_overview(reports)  # refuses a folder without results before anything is written
        if Plan("report").add("reports", reports).add("out", out).finish(dry_run, show_plan):
            return
        show_written([write_text(out, page)], own_folder=False)
        return

    slices = parse_slices(only)
    if not update:
        expected = load_baselines(baselines)  # a missing file fails before minutes of measuring
    else:
        writable_file(baselines, "--baselines")
    # The committed tables against their sidecars' checksums: seconds, and before minutes of measuring.
    tables = verify_tables(reports) if reports.is_dir() else 0
    if Plan("report --check").add("slices", ", ".join(slices)).add("baselines", baselines).finish(dry_run, show_plan):
        return
    console.print(f"{tables} committed tables match the checksums their sidecars record", style="dim")
    start = time.perf_counter()
    figures = measure(slices, data, weights_dir, reference_vit, on_slice=lambda name: console.print(f"slice {name} ...", style="dim"))
    wall = time.perf_counter() - start
    if update:
        changes = update_baselines(baselines, figures, slices)
        console.print("\n".join(changes) if changes else "no baseline changed")
        show_written([baselines])
        return
    drifts = compare(figures, expected, slices)
    # each row its own quantity: every digit of each figure, not one format for the column
    shown = pd.DataFrame([{"metric": f.metric, "baseline": figure(b.value) if (b := expected.get(f.metric)) else "n/a",
                           "now": figure(f.value), "tolerance": b.describe_tolerance() if b else f.describe_tolerance()}
                          for f in figures])
    show_table(shown, title=f"regression check: {', '.join(slices)} ({wall:.0f} s)", source=None)
    if drifts:
        for drift in drifts:
            typer.echo(f"DRIFT {drift.line()}")
        typer.echo(f"{len(drifts)} of {len(figures)} figures drifted")
        raise typer.Exit(1)
    typer.echo(f"all {len(figures)} figures within tolerance ({wall:.0f} s)")
