"""``splitbench profile``: per-layer element counts, MACs and parameters."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import InputSize, OutDir, Weights, default_out
from splitbench.cli.render import console, show_table, show_written
from splitbench.profiling import profile_model
from splitbench.reporting import giga, plot_profile, profile_markdown
from splitbench.results import warm_up_plotting, write_result
from splitbench.zoo import load_model


@app.command("profile")
def profile_command(
    model: Annotated[str, typer.Argument(help="Zoo model (see `splitbench models`).")],
    input_size: InputSize = None,
    weights: Weights = "none",
    all_stages: Annotated[bool, typer.Option("--all-stages", help="One row per stage instead of per named layer.")] = False,
    out: OutDir = None,
) -> None:
    """Output shape, elements, MACs and parameters of every layer, in execution order."""
    start = time.perf_counter()
    warm_up_plotting()
    zoo_model = load_model(model, weights)
    profile = profile_model(zoo_model, input_size, all_stages=all_stages)
    out = out or default_out("profile", zoo_model.spec.name)
    meta = provenance.collect(
        "profile",
        {"model": model, "input_size": input_size, "weights": weights, "all_stages": all_stages, "out": out},
        weights=zoo_model.weights.describe(),
        wall_s=time.perf_counter() - start,
    )
    written = write_result(out, "profile", profile.table, meta, profile_markdown(profile, meta))
    written.append(plot_profile(profile, out / "profile.png"))

    # The terminal gets a narrower view (the files keep exact counts).
    table = profile.table
    view = table.assign(
        MMACs=(table["macs"] / 1e6).round(1),
        cum_GMACs=(table["cum_macs"] / 1e9).round(3),
        smaller=table["smaller_than_input"],
    )
    show_table(
        view,
        title=f"{profile.model}: input {'x'.join(map(str, profile.input_shape))}",
        columns=["layer", "output_shape", "elements", "MMACs", "cum_GMACs", "params", "smaller"],
    )
    console.print(f"total {giga(profile.total_macs)}MACs, {profile.total_params:,} parameters")
    show_written(written)
