"""``splitbench serve``, ``link`` and ``plan``: split inference over a real link, and where to cut."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import pandas as pd
import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import (DataRoot, Dataset, DryRun, ModelArgument, ModelOption, OutDir, Weights,
                                    default_out, pick_model, split_names, split_numbers)
from splitbench.cli.render import show_table, show_written
from splitbench.codecs.base import codec_class, codec_names
from splitbench.data import open_dataset
from splitbench.errors import SplitbenchError
from splitbench.evaluation import progress_bar
from splitbench.link.endpoints import BASELINES, EDGE, INPUT, Receiver, Sender, SplitSetup
from splitbench.preflight import Plan, writable_folder
from splitbench.results import write_csv, write_result
from splitbench.zoo import ZooModel, load_model

CodecOption = Annotated[str, typer.Option(
    "--codec", help=f"How the tensor at a cut travels: none (float32), minmax8, or an image codec "
    f"({', '.join(codec_names())}). --at input always sends a JPEG.")]
Qp = Annotated[Optional[int], typer.Option("--qp", help="BPG QP (0–51).")]
Quality = Annotated[Optional[int], typer.Option("--quality", help="Quality of webp, avif, jpegxl, jpeg2000.")]
Layout = Annotated[str, typer.Option("--layout", help="Picture layout of the tiled features: gray or paper.")]
Bits = Annotated[int, typer.Option("--bits", help="Min-max quantisation bits before the codec (eq. 7).")]
Preprocess = Annotated[str, typer.Option("--preprocess", help="seed (resize to 224x224, as codec) or model.")]
SHAPERS = ("auto", "netns", "app", "none")


def setup_for(zoo_model: ZooModel, at: str, codec: str, qp: int | None, quality: int | None, layout: str,
              bits: int) -> SplitSetup:
    """One cut and its codec from the command line's options (the cut's canonical name)."""
    if at in (INPUT, EDGE):
        return SplitSetup(at, "jpeg" if at == INPUT else "none")
    at = zoo_model.cuts().resolve(at).name
    if codec in BASELINES:
        return SplitSetup(at, codec)
    parameter = codec_class(codec).parameter
    param = {"qp": qp, "quality": quality}.get(parameter) if parameter else None
    if parameter and param is None:
        raise SplitbenchError(f"--codec {codec} needs --{parameter}")
    options = (("chroma", "420"), ("backend", "pyav")) if codec == "bpg" else ()  # as `codec` runs it
    return SplitSetup(at, codec, param, layout, bits, options)


@app.command("serve")
def serve_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    weights: Weights = "default",
    at: Annotated[str, typer.Option("--at", help="The cut whose tail this server runs, or input (the whole "
                                    "model on a JPEG of the input picture).")] = "input",
    codec: CodecOption = "none",
    qp: Qp = None,
    quality: Quality = None,
    layout: Layout = "gray",
    bits: Bits = 8,
    preprocess: Preprocess = "seed",
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback unless told otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port; 0 picks a free one.")] = 5555,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Threads answering requests.")] = 1,
    max_message_mb: Annotated[float, typer.Option("--max-message-mb", min=0.001, max=1024,
                                                  help="Largest frame taken; a peer sending more is dropped.")] = 16.0,
    dry_run: DryRun = False,
) -> None:
    """Serve the tail of MODEL at a cut (and the codec's decoder): coded features in, top-5 out."""
    from splitbench.link.server import SplitServer

    model = pick_model(model, model_option, "mobilenet_v2")
    zoo_model = load_model(model)
    setup = setup_for(zoo_model, at, codec, qp, quality, layout, bits)
    plan = Plan("serve").add("model", model).add("weights", zoo_model.describe_weights(weights))
    plan.add("setup", setup.label).add("listen", f"tcp://{host}:{port or '*'}")
    if plan.finish(dry_run):
        return
    zoo_model.load_weights(weights)
    server = SplitServer(Receiver(zoo_model, setup, preprocess), zoo_model.weights.describe()["sha256"],
                         host=host, port=port, workers=workers, max_message_bytes=int(max_message_mb * (1 << 20)))
    print(f"listening on {server.endpoint} ({model} {setup.label})", flush=True)
    stats = server.serve()
    print(f"stopped: answered {stats.answered}, refused {stats.refused}, failed {stats.failed}", flush=True)


@app.command("link")
def link_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    weights: Weights = "default",
    at: Annotated[str, typer.Option("--at", help="Comma-separated cuts; input (JPEG upload) and edge (the "
                                    "whole model on the edge) are cuts too.")] = "input,edge",
    codec: CodecOption = "none",
    qp: Qp = None,
    quality: Quality = None,
    layout: Layout = "gray",
    bits: Bits = 8,
    preprocess: Preprocess = "seed",
    bandwidth: Annotated[str, typer.Option("--bandwidth", help="Comma-separated Mbit/s, both directions.")] = "1,10,100",
    rtt: Annotated[str, typer.Option("--rtt", help="Comma-separated round-trip times in ms.")] = "0",
    shaper: Annotated[str, typer.Option("--shaper", help="auto (netns where possible, else app), netns (tbf on "
                                        "a veth pair into a namespace; root), app (token bucket in the client), "
                                        "none (unshaped; no --bandwidth).")] = "auto",
    server: Annotated[Optional[str], typer.Option("--server", help="A running `splitbench serve` (HOST:PORT) "
                                                  "instead of starting one per cut; one cut only.")] = None,
    dataset: Dataset = None,
    split: Annotated[Optional[str], typer.Option("--split")] = None,
    data: DataRoot = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Images per cut and condition.")] = 20,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Run MODEL split across a shaped link: per-image stage times, bytes on the wire, top-1."""
    from splitbench.link.measure import Condition, Link, measure, running_server, summarise
    from splitbench.link.client import LinkClient
    from splitbench.link.shaping import netns_possible

    start = time.perf_counter()
    model = pick_model(model, model_option, "mobilenet_v2")
    zoo_model = load_model(model)
    setups = [setup_for(zoo_model, cut, codec, qp, quality, layout, bits) for cut in split_names(at, "--at")]
    bandwidths = split_numbers(bandwidth, "--bandwidth", float) if bandwidth != "none" else [None]
    if any(b is not None and b <= 0 for b in bandwidths):
        raise SplitbenchError(f"--bandwidth takes positive Mbit/s, got '{bandwidth}'")
    rtts = split_numbers(rtt, "--rtt", float, minimum=0)
    if shaper not in SHAPERS:
        raise SplitbenchError(f"unknown --shaper '{shaper}'; valid: {', '.join(SHAPERS)}")
    if shaper == "auto":
        shaper = "netns" if netns_possible() is None and server is None else "app"
    if shaper == "netns" and (reason := netns_possible()):
        raise SplitbenchError(f"--shaper netns: {reason}; use --shaper app")
    if server is not None and (len(setups) != 1 or shaper == "netns"):
        raise SplitbenchError("--server takes one --at and --shaper app or none")
    name = dataset or zoo_model.spec.dataset
    if name is None:
        raise SplitbenchError(f"{model} has no default data set; pass --dataset")
    images = open_dataset(name, split=split, root=data, limit=limit)
    out = writable_folder(out or default_out("link", model), "--out")
    conditions = [Condition(b, r) for b in bandwidths for r in rtts]
    plan = Plan("link").add("model", model).add("weights", zoo_model.describe_weights(weights))
    plan.add("setups", ", ".join(s.label for s in setups)).add("conditions", "; ".join(c.label for c in conditions))
    plan.add("shaper", shaper).add("data", f"{name}: {len(images)} images").add("out", out)
    if plan.finish(dry_run):
        return
    zoo_model.load_weights(weights)
    weights_info = zoo_model.weights.describe()
    tables = []
    with Link(shaper) as link, progress_bar(enabled=True, transient=False) as bar:
        for setup in setups:
            sender = Sender(zoo_model, setup, preprocess)
            task = bar.add_task(setup.label, total=len(images) * (1 if setup.at == EDGE else len(conditions)))
            advance = lambda: bar.update(task, advance=1)  # noqa: E731
            if setup.at == EDGE:
                tables.append(measure(sender, None, images, [Condition(None)], link, advance))
                continue
            expected = {"model": zoo_model.spec.name, "weights_sha256": weights_info["sha256"],
                        **setup.describe(), "shape": list(sender.shape)}
            if server is not None:
                with LinkClient(server) as client:
                    client.check(expected)
                    tables.append(measure(sender, client, images, conditions, link, advance))
                continue
            arguments = [model, "--weights", weights, *_setup_arguments(setup), "--preprocess", preprocess]
            with running_server(arguments, link.server_prefix, link.server_host) as (_, endpoint), \
                    LinkClient(endpoint) as client:
                client.check(expected)
                tables.append(measure(sender, client, images, conditions, link, advance))
    per_image = pd.concat(tables, ignore_index=True)
    per_image.insert(5, "shaper", link.name)
    per_image.insert(6, "rtt_by", "end delay (no netem)")
    summary = summarise(per_image)
    summary.insert(5, "shaper", link.name)
    meta = provenance.collect(
        "link",
        {"model": model, "weights": weights, "setups": [s.describe() for s in setups],
         "conditions": [c.__dict__ for c in conditions], "shaper": link.name, "tbf_head_start_bytes": link.head_start,
         "rtt_by": "end delay (no netem)", "dataset": name, "limit": limit, "preprocess": preprocess, "out": out},
        weights=weights_info, data=images.provenance(), wall_s=time.perf_counter() - start,
    )
    from splitbench.link.report import link_markdown, plot_stages

    written = write_result(out, "link", summary, meta, link_markdown(model, summary, link.name))
    written.append(write_csv(out / "link_images.csv", per_image))
    written.append(plot_stages(out / "link.png", summary, model))
    show_table(summary, title=f"{model} over a {link.name} link",
               columns=["setup", "bandwidth_mbit", "rtt_ms", "top1", "payload_bytes", "total_ms"])
    show_written(written)


def _setup_arguments(setup: SplitSetup) -> list[str]:
    arguments = ["--at", setup.at, "--codec", setup.codec]
    if setup.spec is not None:
        parameter = codec_class(setup.codec).parameter
        if parameter:
            arguments += [f"--{parameter}", str(setup.param)]
        arguments += ["--layout", setup.layout, "--bits", str(setup.bits)]
    return arguments if setup.at != INPUT else ["--at", INPUT, "--codec", "jpeg"]
