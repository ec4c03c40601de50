"""``splitbench serve``, ``link`` and ``plan``: split inference over a real link, and where to cut.

Each command parses its options into a job (:mod:`splitbench.jobs.link`), which checks them; a
dry run shows the job's plan, a run renders what the job returns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from splitbench.cli import app
from splitbench.cli.options import (CACHE, Bits, Cache, DataRoot, Dataset, DryRun, Leaf, Limit, ModelArgument, ModelOption, OutDir,
                                    Preprocess, Repeats, Split, Weights, Workers, float_option, pick_model,
                                    split_names, split_numbers)
from splitbench.cli.render import show_plan, show_table, show_written
from splitbench.codecs.base import codec_names
from splitbench.errors import SplitbenchError
from splitbench.jobs.link import CODEC, LinkJob, PlanJob, Result, ServeJob
from splitbench.jobs.search import SEARCH_LIMIT, SearchJob, with_deployment
from splitbench.link.setups import codec_setting  # noqa: F401 - the commands' codec setting (tests import it here)

# serve, link and plan take one codec setting: the same options, the same defaults.
CodecOption = Annotated[str, typer.Option(
    "--codec", help=f"How the tensor at a cut travels: none (float32), minmax8 (eq. 7, 8 bits), or an image codec "
    f"({', '.join(codec_names())}) at --qp/--quality, or NAME:V with its own value (bpg:35); learned:FILE or "
    "learned:RUN@λ (a codec rd trained: the file, or rd's result folder and λ); FILE.py:FUNCTION (your codec: "
    "FUNCTION() returns an object with encode(tensor) -> bytes and decode(bytes, shape) -> tensor). --at input "
    "always sends a JPEG.")]
Qp = Annotated[Optional[int], typer.Option("--qp", help="BPG QP (0–51).")]
Quality = Annotated[Optional[int], typer.Option("--quality", help="Quality of webp, avif, jpegxl, jpeg2000.")]
Layout = Annotated[str, typer.Option("--layout", help="Picture layout of the tiled features: gray or paper.")]
Bandwidth = Annotated[str, typer.Option("--bandwidth", help="Comma-separated Mbit/s, both directions.")]
Rtt = Annotated[str, typer.Option("--rtt", help="Comma-separated round-trip times in ms.")]

# serve's own options
ServeAt = Annotated[str, typer.Option("--at", help="The cut whose tail this server runs, or input (the whole "
                                      "model on a JPEG of the input picture).")]
Host = Annotated[str, typer.Option("--host", help="Address to listen on (loopback unless told otherwise).")]
Port = Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port; 0 picks a free one.")]
MaxMessageMb = Annotated[float, float_option("--max-message-mb", minimum=0.001, maximum=1024,
                                             help_text="Largest frame taken; a peer sending more is dropped.")]
Threads = Annotated[Optional[int], typer.Option("--threads", min=1, help="torch threads (default: physical cores).")]
Auth = Annotated[Optional[Path], typer.Option("--auth", help="CURVE keys: a folder from --make-keys (only the "
                                             "clients in its clients/ folder are served) or a server secret key "
                                             "file (any client with the server's public key).")]
InsecureBind = Annotated[bool, typer.Option("--insecure-bind", help="Allow a non-loopback --host without "
                                            "--auth (with a warning).")]
MakeKeys = Annotated[Optional[Path], typer.Option("--make-keys", help="Write a server and a client key pair "
                                                  "into this folder (files 0600) and stop.")]

# link's own options
LinkAt = Annotated[str, typer.Option("--at", help="Comma-separated cuts; input (JPEG upload) and edge (the "
                                     "whole model on the edge) are cuts too.")]
Shaper = Annotated[str, typer.Option("--shaper", help="auto (netns where possible, else app), netns (tbf on "
                                     "a veth pair into a namespace; root), app (token bucket in the client), "
                                     "none (unshaped; no --bandwidth).")]
Server = Annotated[Optional[str], typer.Option("--server", help="A running `splitbench serve` (HOST:PORT) "
                                               "instead of starting one per cut; one cut only.")]
ServerKey = Annotated[Optional[Path], typer.Option("--server-key", help="The --server's CURVE public key "
                                                   "(server.key from serve --make-keys).")]
ClientKey = Annotated[Optional[Path], typer.Option("--client-key", help="This client's CURVE key pair "
                                                   "(client.key_secret), for a server that lists its clients; "
                                                   "default: a fresh one.")]
WithPlan = Annotated[bool, typer.Option("--plan/--no-plan", help="Also time each picture as `plan` does, "
                                        "just before it crosses the link, and write plan's prediction beside "
                                        "the measurement (validation.csv): minutes apart, a drifting machine "
                                        "would widen the gap.")]
Deploy = Annotated[Optional[Path], typer.Option("--deploy", help="A plan --search folder: link its chosen "
                                                 "deployments (and input and edge) on its calibration pictures "
                                                 "under its conditions, with --plan, and check each choice: "
                                                 "predicted against measured latency, calibration against link "
                                                 "top-1, and the regret (deploy_check.csv). The data set, limit, "
                                                 "preprocessing, layout, bandwidths, RTTs and edge slowdown are "
                                                 "the search's (another value given is refused); so is the model, "
                                                 "or MODEL names one of its --variants exports, whose choices are "
                                                 "linked instead.")]

# plan's own options
PlanAt = Annotated[str, typer.Option("--at", help="Comma-separated cuts, or all (every valid cut); input and "
                                     "edge are always included.")]
EdgeSlowdown = Annotated[float, float_option("--edge-slowdown", minimum=0.01, maximum=1000,
                                             help_text="The edge is this many times slower than this machine (plan predicts it; link counts "
                                                       "the edge's measured head and encoder times this many times).")]
EdgeTimes = Annotated[Optional[Path], typer.Option("--edge-times", help="times.csv that plan wrote on the "
                                                   "edge device: its head_ms and encode_ms replace this machine's.")]
HeadStart = Annotated[str, typer.Option("--head-start", help="Bytes the shaper passes at once: tbf (one "
                                        "frame, as link's netns shaper), wire (none), or a number.")]
ValidateWith = Annotated[Optional[Path], typer.Option("--validate", help="link.csv to compare the "
                                                      "predictions with (same --at, --codec).")]
Search = Annotated[bool, typer.Option("--search", help="Pick the deployment: every model variant × cut × codec "
                                      "setting of --codec (a comma list, each image codec with its values: "
                                      "bpg:32/38,webp:50/90,learned:RUN@4,none) measured on --limit calibration "
                                      "pictures (default 200; each timed once, not --repeats) for accuracy, bytes "
                                      "and time; the Pareto front and the choice under each budget per bandwidth "
                                      "and RTT.")]
Variant = Annotated[Optional[str], typer.Option("--variants", help="--search: further models to weigh, comma-"
                                                "separated (exports of prune or group, or model names).")]
MaxDrop = Annotated[Optional[str], typer.Option("--max-drop", help="--search: accuracy budgets, points below "
                                                "the model whole on the edge (comma-separated; default 1).")]
MaxLatency = Annotated[Optional[str], typer.Option("--max-latency", help="--search: latency budgets in ms "
                                                   "(comma-separated).")]


@app.command("serve")
def serve_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    weights: Weights = "auto",
    at: ServeAt = "input",
    leaf: Leaf = None,
    codec: CodecOption = CODEC,
    qp: Qp = None,
    quality: Quality = None,
    layout: Layout = "gray",
    bits: Bits = 8,
    preprocess: Preprocess = "seed",
    host: Host = "127.0.0.1",
    port: Port = 5555,
    workers: Workers = None,
    max_message_mb: MaxMessageMb = 16.0,
    threads: Threads = None,
    auth: Auth = None,
    insecure_bind: InsecureBind = False,
    make_keys: MakeKeys = None,
    dry_run: DryRun = False,
) -> None:
    """Serve the tail of MODEL at a cut (and the codec's decoder): coded features in, top-5 out (a
    detector: its detections, after its own post-processing)."""
    job = ServeJob(
        model=pick_model(model, model_option, "mobilenet_v2") if make_keys is None else "mobilenet_v2",
        weights=weights, at=at, leaf=_leaf(leaf), codec=codec, qp=qp, quality=quality, layout=layout, bits=bits,
        preprocess=preprocess, host=host, port=port, workers=workers, max_message_mb=max_message_mb,
        threads=threads, auth=auth, insecure_bind=insecure_bind, make_keys=make_keys)
    if dry_run:
        show_plan(job.plan())
        return
    served = job.run(ready=lambda line: print(line, flush=True))  # link reads this line from the server's stdout
    for path in served.keys:
        print(path)
    if served.stats is not None:
        stats = served.stats
        print(f"stopped: answered {stats.answered}, refused {stats.refused}, failed {stats.failed}", flush=True)


@app.command("link")
def link_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    weights: Weights = "auto",
    at: LinkAt = "input,edge",
    leaf: Leaf = None,
    codec: CodecOption = CODEC,
    qp: Qp = None,
    quality: Quality = None,
    layout: Layout = "gray",
    bits: Bits = 8,
    preprocess: Preprocess = "seed",
    bandwidth: Bandwidth = "1,10,100",
    rtt: Rtt = "0",
    shaper: Shaper = "auto",
    server: Server = None,
    server_key: ServerKey = None,
    client_key: ClientKey = None,
    dataset: Dataset = None,
    split: Split = None,
    data: DataRoot = None,
    limit: Limit = 20,
    with_plan: WithPlan = False,
    edge_slowdown: EdgeSlowdown = 1.0,
    deploy: Deploy = None,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Run MODEL split across a shaped link: per-image stage times, bytes on the wire, top-1 (a detector: mAP)."""
    bandwidths, rtts = _link_settings(bandwidth, rtt, unshaped_allowed=True)  # bad numbers fail before any work
    options: dict = dict(
        model=pick_model(model, model_option, "mobilenet_v2"), weights=weights, at=tuple(split_names(at, "--at")),
        leaf=_leaf(leaf), codec=codec, qp=qp, quality=quality, layout=layout, bits=bits, preprocess=preprocess,
        bandwidth=bandwidths, rtt=rtts, shaper=shaper, server=server, server_key=server_key, client_key=client_key,
        dataset=dataset, split=split, data=data, limit=limit, with_plan=with_plan, edge_slowdown=edge_slowdown,
        out=out)
    if deploy is not None:  # the search's own model (or the variant named), pictures and conditions
        options = with_deployment(options, deploy, model or model_option)
    job = LinkJob(**options)
    if dry_run:
        show_plan(job.plan())
        return
    _render(job.run())


@app.command("plan")
def plan_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    weights: Weights = "auto",
    at: PlanAt = "all",
    leaf: Leaf = None,
    codec: CodecOption = CODEC,
    qp: Qp = None,
    quality: Quality = None,
    layout: Layout = "gray",
    bits: Bits = 8,
    preprocess: Preprocess = "seed",
    bandwidth: Bandwidth = "1,10,100",
    rtt: Rtt = "0",
    edge_slowdown: EdgeSlowdown = 1.0,
    edge_times: EdgeTimes = None,
    head_start: HeadStart = "wire",
    validate_with: ValidateWith = None,
    dataset: Dataset = None,
    split: Split = None,
    data: DataRoot = None,
    limit: Limit = None,
    repeats: Repeats = 3,
    search: Search = False,
    variant: Variant = None,
    max_drop: MaxDrop = None,
    max_latency: MaxLatency = None,
    cache: Cache = CACHE,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Predict MODEL's end-to-end latency at every cut over a link; pick the best cut per bandwidth
    (--search: the best deployment of cut, codec and model variant under an accuracy or latency budget)."""
    bandwidths, rtts = _link_settings(bandwidth, rtt, unshaped_allowed=False)  # bad numbers fail before any work
    options: dict = dict(
        model=pick_model(model, model_option, "mobilenet_v2"), weights=weights,
        at=("all",) if at == "all" else tuple(split_names(at, "--at")), leaf=_leaf(leaf), codec=codec, qp=qp,
        quality=quality, layout=layout, bits=bits, preprocess=preprocess, bandwidth=bandwidths, rtt=rtts,
        edge_slowdown=edge_slowdown, edge_times=edge_times, head_start=head_start, validate_with=validate_with,
        dataset=dataset, split=split, data=data, repeats=repeats, out=out)
    searched = {"--variants": variant, "--max-drop": max_drop, "--max-latency": max_latency}
    if not search:
        given = next((option for option, value in searched.items() if value is not None), None)
        if given:
            raise SplitbenchError(f"{given} is an option of plan --search")
        job: PlanJob = PlanJob(**options, limit=5 if limit is None else limit)
    else:
        job = SearchJob(**options, limit=SEARCH_LIMIT if limit is None else limit, cache=cache,
                        variant=tuple(split_names(variant, "--variants")) if variant is not None else (),
                        max_drop=tuple(split_numbers(max_drop, "--max-drop", float)) if max_drop is not None
                        else (() if max_latency is not None else (1.0,)),
                        max_latency=tuple(split_numbers(max_latency, "--max-latency", float))
                        if max_latency is not None else ())
    if dry_run:
        show_plan(job.plan())
        return
    _render(job.run())


def _render(result: Result) -> None:
    for shown in result.tables:
        show_table(shown.table, title=shown.title, columns=shown.columns, source=shown.source)
    show_written(result.written)


def _leaf(leaf: str | None) -> tuple[str, ...]:
    return tuple(split_names(leaf, "--leaf")) if leaf is not None else ()


def _link_settings(bandwidth: str, rtt: str, unshaped_allowed: bool) -> tuple[tuple, tuple[float, ...]]:
    """``--bandwidth`` (Mbit/s; ``none`` for the link as it is, where allowed) and ``--rtt`` (ms), parsed
    (the job checks that each bandwidth is positive and each round trip ≥ 0)."""
    bandwidths = (None,) if unshaped_allowed and bandwidth == "none" else split_numbers(bandwidth, "--bandwidth", float)
    return tuple(bandwidths), tuple(split_numbers(rtt, "--rtt", float))
