"""``splitbench profile``: per-layer element counts, MACs and parameters."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import (DryRun, InputSize, Leaf, ModelArgument, ModelOption, OutDir, Weights, default_out,
                                    pick_model, split_names)
from splitbench.errors import SplitbenchError
from splitbench.cli.render import console, show_plan, show_table, show_written
from splitbench.profiling import profile_model
from splitbench.reporting import giga, plot_profile, profile_markdown
from splitbench.preflight import Plan, writable_folder
from splitbench.results import result_set, warm_up_plotting, write_result
from splitbench.zoo import load_model


@app.command("profile")
def profile_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    input_size: InputSize = None,
    weights: Weights = "auto",
    all_nodes: Annotated[bool, typer.Option(
        "--all-nodes", help="One row per operation of the traced graph, valid cut or not.")] = False,
    paper_layers: Annotated[bool, typer.Option(
        "--paper-layers", help="Only the papers' named layers (zoo models; seed 003 Fig. 3/4).")] = False,
    leaf: Leaf = None,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Output shape, elements, MACs and parameters at every valid cut, in execution order."""
    start = time.perf_counter()
    model = pick_model(model, model_option)
    if all_nodes and paper_layers:
        raise SplitbenchError("--all-nodes and --paper-layers exclude each other")
    zoo_model = load_model(model, leaf_modules=split_names(leaf, "--leaf") if leaf is not None else ())
    if paper_layers and not zoo_model.spec.split_points:
        raise SplitbenchError(f"{model} has no paper layer names; list its cuts without --paper-layers")
    graph = zoo_model.cuts(input_size)
    out = writable_folder(out or default_out("profile", zoo_model.spec.name), "--out")
    plan = Plan("profile").add("model", f"{model} ({zoo_model.spec.source})").add("weights", zoo_model.describe_weights(weights))
    plan.add("input", "x".join(map(str, graph.input_shape))).add("valid cuts", len(graph.cuts)).add("out", out)
    if plan.finish(dry_run, show_plan):
        return
    warm_up_plotting()
    zoo_model.load_weights(weights)
    profile = profile_model(zoo_model, input_size, rows="nodes" if all_nodes else "paper" if paper_layers else "cuts")
    meta = provenance.collect(
        "profile",
        {"model": model, "input_size": input_size, "weights": weights, "all_nodes": all_nodes, "paper_layers": paper_layers,
         "leaf": leaf,
         "out": out},
        weights=zoo_model.weights.describe(),
        wall_s=time.perf_counter() - start,
    )
    with result_set(out):
        written = write_result(out, "profile", profile.table, meta, profile_markdown(profile, meta))
        written.append(plot_profile(profile, out / "profile.png"))

    # The terminal gets a narrower view (the files keep exact counts).
    table = profile.table
    cuts = int(table["valid_cut"].sum())
    view = table.assign(
        MMACs=(table["macs"] / 1e6).round(1),
        cum_GMACs=(table["cum_macs"] / 1e9).round(3),
        output=table["output_shape"],
    )
    show_table(
        view,
        title=f"{profile.model}: input {'x'.join(map(str, profile.input_shape))}, {cuts} valid cuts",
        columns=["layer", "output", "elements", "MMACs", "cum_GMACs", "params"],
    )
    console.print(f"total {giga(profile.total_macs)}MACs, {profile.total_params:,} parameters")
    show_written(written)
