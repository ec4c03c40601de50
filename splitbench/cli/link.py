"""``splitbench serve``, ``link`` and ``plan``: split inference over a real link, and where to cut."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import pandas as pd
import torch
import typer

from splitbench import provenance
from splitbench.cli import app
from splitbench.cli.options import (Bits, DataRoot, Dataset, DryRun, Leaf, Limit, ModelArgument, ModelOption, OutDir,
                                    Preprocess, Repeats, Split, Weights, Workers, dataset_and_split, default_out,
                                    float_option, pick_model, split_names, split_numbers)
from splitbench.cli.render import show_plan, show_table, show_written
from splitbench.codecs.base import codec_class, codec_names
from splitbench.data import open_dataset
from splitbench.errors import SplitbenchError
from splitbench.evaluation import progress_bar
from splitbench.link.endpoints import BASELINES, EDGE, INPUT, Receiver, Sender, SplitSetup, model_pictures
from splitbench.link.tasks import answers_for
from splitbench.preflight import Plan, physical_cores, writable_folder
from splitbench.results import result_set, write_csv, write_result
from splitbench.zoo import ZooModel, load_model

if TYPE_CHECKING:  # zmq is imported where a socket is made, not at every command's start
    from splitbench.link.security import ClientKeys

# serve, link and plan take one codec setting: the same options, the same defaults.
CODEC = "minmax8"
CodecOption = Annotated[str, typer.Option(
    "--codec", help=f"How the tensor at a cut travels: none (float32), minmax8 (eq. 7, 8 bits), or an image codec "
    f"({', '.join(codec_names())}) at --qp/--quality, or NAME:V with its own value (bpg:35). --at input always "
    "sends a JPEG.")]
Qp = Annotated[Optional[int], typer.Option("--qp", help="BPG QP (0–51).")]
Quality = Annotated[Optional[int], typer.Option("--quality", help="Quality of webp, avif, jpegxl, jpeg2000.")]
Layout = Annotated[str, typer.Option("--layout", help="Picture layout of the tiled features: gray or paper.")]
Bandwidth = Annotated[str, typer.Option("--bandwidth", help="Comma-separated Mbit/s, both directions.")]
Rtt = Annotated[str, typer.Option("--rtt", help="Comma-separated round-trip times in ms.")]
SHAPERS = ("auto", "netns", "app", "none")
MAX_SERVE_WORKERS = 64


def codec_setting(codec: str, qp: int | None, quality: int | None, required: bool = True) -> tuple[str, int | None]:
    """``--codec NAME`` (its value from ``--qp``/``--quality``) or ``NAME:V`` (its own value, as
    in ``codec``'s NAME:V1/V2): the codec and its parameter value. An option that the codec
    does not take is refused, as ``codec`` refuses it. ``required``: a codec with a parameter
    needs a value."""
    name, colon, own = codec.partition(":")
    parameter = None if name in BASELINES else codec_class(name).parameter
    given = {"qp": qp, "quality": quality}
    for option, value in given.items():
        if value is not None and option != parameter:
            raise SplitbenchError(f"--{option} was given but no codec in --codec takes it")
    if colon:
        if parameter is None:
            raise SplitbenchError(f"--codec {codec}: {name} takes no parameter value")
        values = split_numbers(own.replace("/", ","), f"--codec {codec}", int)
        if len(values) != 1:
            raise SplitbenchError(f"--codec {codec}: one {parameter} value here (the codec command sweeps several)")
        if given[parameter] is not None and given[parameter] != values[0]:
            raise SplitbenchError(f"--codec {codec} and --{parameter} {given[parameter]} disagree; give one")
        return name, values[0]
    if parameter is not None and given[parameter] is None and required:
        raise SplitbenchError(f"--codec {name} needs --{parameter}")
    return name, given[parameter] if parameter else None


def setup_for(zoo_model: ZooModel, at: str, codec: str, qp: int | None, quality: int | None, layout: str,
              bits: int) -> SplitSetup:
    """One cut and its codec from the command line's options (the cut's canonical name)."""
    if at in (INPUT, EDGE):
        return SplitSetup(at, "jpeg" if at == INPUT else "none")
    at = zoo_model.cuts().resolve(at).name
    codec, param = codec_setting(codec, qp, quality)
    if codec in BASELINES:
        return SplitSetup(at, codec)
    options = (("chroma", "420"), ("backend", "pyav")) if codec == "bpg" else ()  # as `codec` runs it
    return SplitSetup(at, codec, param, layout, bits, options)


def _leaf_modules(leaf: str | None) -> tuple[str, ...]:
    return tuple(split_names(leaf, "--leaf")) if leaf is not None else ()


@app.command("serve")
def serve_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    weights: Weights = "auto",
    at: Annotated[str, typer.Option("--at", help="The cut whose tail this server runs, or input (the whole "
                                    "model on a JPEG of the input picture).")] = "input",
    leaf: Leaf = None,
    codec: CodecOption = CODEC,
    qp: Qp = None,
    quality: Quality = None,
    layout: Layout = "gray",
    bits: Bits = 8,
    preprocess: Preprocess = "seed",
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback unless told otherwise).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port; 0 picks a free one.")] = 5555,
    workers: Workers = None,
    max_message_mb: Annotated[float, float_option("--max-message-mb", minimum=0.001, maximum=1024,
                                                  help_text="Largest frame taken; a peer sending more is dropped.")] = 16.0,
    threads: Annotated[Optional[int], typer.Option("--threads", min=1, help="torch threads (default: physical cores).")] = None,
    auth: Annotated[Optional[Path], typer.Option("--auth", help="CURVE keys: a folder from --make-keys (only the "
                                                 "clients in its clients/ folder are served) or a server secret key "
                                                 "file (any client with the server's public key).")] = None,
    insecure_bind: Annotated[bool, typer.Option("--insecure-bind", help="Allow a non-loopback --host without "
                                                "--auth (with a warning).")] = False,
    make_keys: Annotated[Optional[Path], typer.Option("--make-keys", help="Write a server and a client key pair "
                                                      "into this folder (files 0600) and stop.")] = None,
    dry_run: DryRun = False,
) -> None:
    """Serve the tail of MODEL at a cut (and the codec's decoder): coded features in, top-5 out (a
    detector: its detections, after its own post-processing)."""
    from splitbench.link import security
    from splitbench.link.server import SplitServer

    if make_keys is not None:
        security.check_key_folder(make_keys)
        if Plan("serve").add("make keys", f"{make_keys}/{{{', '.join(security.KEY_FILES)}}} (0600)").finish(dry_run, show_plan):
            return
        for path in security.make_keys(make_keys):
            print(path)
        return
    workers = workers or 1  # threads answering requests; torch's own threads share the cores
    if workers > MAX_SERVE_WORKERS:
        raise SplitbenchError(f"--workers {workers}: serve answers with at most {MAX_SERVE_WORKERS} threads")
    keys = security.server_keys(auth) if auth is not None else None
    security.check_bind(host, keys is not None, insecure_bind)
    model = pick_model(model, model_option, "mobilenet_v2")
    zoo_model = load_model(model, leaf_modules=_leaf_modules(leaf))
    answers_for(zoo_model, command="serve")  # a classifier, or a detector whose outputs decode to boxes
    if at not in (INPUT, EDGE):  # --at input takes a JPEG (link starts it with --codec jpeg)
        codec_setting(codec, qp, quality, required=False)
    setup = setup_for(zoo_model, at, codec, qp, quality, layout, bits)
    plan = Plan("serve").add("model", model).add("weights", zoo_model.describe_weights(weights, pretrained=True))
    plan.add("setup", setup.label).add("listen", f"tcp://{host}:{port or '*'}")
    plan.add("auth", f"CURVE, {'clients in ' + str(keys.clients) if keys.clients else 'any client with the server key'}"
             if keys else "none")
    if plan.finish(dry_run, show_plan):
        return
    zoo_model.load_weights(weights, pretrained=True)
    torch.set_num_threads(threads or physical_cores())
    server = SplitServer(Receiver(zoo_model, setup, preprocess), zoo_model.weights.describe()["sha256"],
                         host=host, port=port, workers=workers, max_message_bytes=int(max_message_mb * (1 << 20)),
                         keys=keys)
    print(f"listening on {server.endpoint} ({model} {setup.label})", flush=True)
    stats = server.serve()
    print(f"stopped: answered {stats.answered}, refused {stats.refused}, failed {stats.failed}", flush=True)


@app.command("link")
def link_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    weights: Weights = "auto",
    at: Annotated[str, typer.Option("--at", help="Comma-separated cuts; input (JPEG upload) and edge (the "
                                    "whole model on the edge) are cuts too.")] = "input,edge",
    leaf: Leaf = None,
    codec: CodecOption = CODEC,
    qp: Qp = None,
    quality: Quality = None,
    layout: Layout = "gray",
    bits: Bits = 8,
    preprocess: Preprocess = "seed",
    bandwidth: Bandwidth = "1,10,100",
    rtt: Rtt = "0",
    shaper: Annotated[str, typer.Option("--shaper", help="auto (netns where possible, else app), netns (tbf on "
                                        "a veth pair into a namespace; root), app (token bucket in the client), "
                                        "none (unshaped; no --bandwidth).")] = "auto",
    server: Annotated[Optional[str], typer.Option("--server", help="A running `splitbench serve` (HOST:PORT) "
                                                  "instead of starting one per cut; one cut only.")] = None,
    server_key: Annotated[Optional[Path], typer.Option("--server-key", help="The --server's CURVE public key "
                                                       "(server.key from serve --make-keys).")] = None,
    client_key: Annotated[Optional[Path], typer.Option("--client-key", help="This client's CURVE key pair "
                                                       "(client.key_secret), for a server that lists its clients; "
                                                       "default: a fresh one.")] = None,
    dataset: Dataset = None,
    split: Split = None,
    data: DataRoot = None,
    limit: Limit = 20,
    with_plan: Annotated[bool, typer.Option("--plan/--no-plan", help="Also time each picture as `plan` does, "
                                            "just before it crosses the link, and write plan's prediction beside "
                                            "the measurement (validation.csv): minutes apart, a drifting machine "
                                            "would widen the gap.")] = False,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Run MODEL split across a shaped link: per-image stage times, bytes on the wire, top-1 (a detector: mAP)."""
    from splitbench.link import plan as planning
    from splitbench.link.measure import Condition, Link, on_cores, split_cores, summarise
    from splitbench.link.shaping import EndDelay, netns_possible

    start = time.perf_counter()
    bandwidths, rtts = _link_settings(bandwidth, rtt, unshaped_allowed=True)  # bad numbers fail before any work
    model = pick_model(model, model_option, "mobilenet_v2")
    zoo_model = load_model(model, leaf_modules=_leaf_modules(leaf))
    answers_for(zoo_model, command="link")  # a classifier, or a detector whose outputs decode to boxes
    codec_setting(codec, qp, quality, required=False)
    setups = [setup_for(zoo_model, cut, codec, qp, quality, layout, bits) for cut in split_names(at, "--at")]
    if shaper not in SHAPERS:
        raise SplitbenchError(f"unknown --shaper '{shaper}'; valid: {', '.join(SHAPERS)}")
    if shaper == "auto":
        shaper = "netns" if netns_possible() is None and server is None else "app"
    if shaper == "netns" and (reason := netns_possible()):
        raise SplitbenchError(f"--shaper netns: {reason}; use --shaper app")
    if server is not None and (len(setups) != 1 or shaper == "netns"):
        raise SplitbenchError("--server takes one --at and --shaper app or none")
    keys = _client_keys(server, server_key, client_key)
    name, images = _images(zoo_model, dataset, split, data, limit)
    out = writable_folder(out or default_out("link", model), "--out")
    conditions = [Condition(b, r) for b in bandwidths for r in rtts]
    plan = Plan("link").add("model", model).add("weights", zoo_model.describe_weights(weights, pretrained=True))
    plan.add("setups", ", ".join(s.label for s in setups)).add("conditions", "; ".join(c.label for c in conditions))
    plan.add("shaper", shaper).add("data", f"{name}: {len(images)} images").add("out", out)
    if plan.finish(dry_run, show_plan):
        return
    zoo_model.load_weights(weights, pretrained=True)
    weights_info = zoo_model.weights.describe()
    # a server started per cut loads what this side loaded (auto resolved), and keeps the same modules whole
    served = [model, "--weights", zoo_model.weights.source, *(["--leaf", leaf] if leaf is not None else [])]
    tables, costs = [], []
    pictures = model_pictures(zoo_model, images, preprocess)
    edge_cpus, server_cpus = split_cores()
    with Link(shaper) as link, on_cores(edge_cpus), progress_bar(enabled=True, transient=False) as bar:
        for setup in setups:
            sender = Sender(zoo_model, setup, preprocess)
            # plan's own timing of each picture just before it crosses the link: the prediction's
            # compute terms come from the same seconds as the measurement (this VM's speed drifts)
            timer = None
            if with_plan:
                timer = planning.CostTimer(zoo_model, setup, preprocess, server_cpus if server is None else None)
                timer.time(pictures[0][0], record=False)  # warm-up, as link's own first exchanges
            task = bar.add_task(setup.label, total=len(images) * (1 if setup.at == EDGE else len(conditions)))
            tables.append(_cross(zoo_model, setup, sender, pictures, conditions, link, server, weights_info,
                                 [*served, *_setup_arguments(setup), "--preprocess", preprocess],
                                 server_cpus, lambda task=task: bar.update(task, advance=1),
                                 timer.time if timer is not None else None, keys))
            if timer is not None:
                costs.append(pd.DataFrame([timer.row()]))
    per_image = pd.concat(tables, ignore_index=True)
    per_image.insert(5, "shaper", link.name)
    per_image.insert(6, "rtt_by", EndDelay.by)
    answers = answers_for(zoo_model, images)  # top-1, or a detector's mAP against the data set's boxes
    summary = summarise(per_image, answers)
    per_image = per_image.drop(columns=list(answers.hidden))  # a detector's boxes: scored, not written
    summary.insert(5, "shaper", link.name)
    meta = provenance.collect(
        "link",
        {"model": model, "weights": weights, "setups": [s.describe() for s in setups],
         "conditions": [c.__dict__ for c in conditions], "shaper": link.name, "tbf_head_start_bytes": link.head_start,
         "rtt_by": EndDelay.by, "edge_cpus": sorted(edge_cpus),
         "server_cpus": sorted(server_cpus) if server is None else "the server's own", "dataset": name, "limit": limit, "preprocess": preprocess,
         "with_plan": with_plan, "task": answers.task, "out": out},
        weights=weights_info, data=images.provenance(), wall_s=time.perf_counter() - start,
    )
    from splitbench.link.report import link_markdown, plan_markdown, plot_stages

    markdown = link_markdown(model, summary, link.name)
    validation = None
    if with_plan:
        served = next((s for s in setups if s.at != EDGE), setups[0])
        link_model = planning.LinkModel(1.0, link.head_start, planning.transport_overhead_ms(Receiver(zoo_model, served)))
        validation = planning.validate(pd.concat(costs, ignore_index=True), summary, link_model)
        markdown += "\n" + plan_markdown(model, pd.concat(costs, ignore_index=True), planning.best_cuts(
            planning.predict(pd.concat(costs, ignore_index=True), [b for b in bandwidths if b], rtts, link_model)),
            link_model, validation)
    with result_set(out):
        unshaped = ["bandwidth_mbit", "wire_up_bytes", "wire_down_bytes"]  # no shaper, no wire count
        written = write_result(out, "link", summary, meta, markdown, optional=unshaped)
        written.append(write_csv(out / "link_images.csv", per_image, optional=unshaped))
        if validation is not None:
            written += [write_csv(out / "times.csv", pd.concat(costs, ignore_index=True)),
                        write_csv(out / "validation.csv", validation, optional=["bandwidth_mbit"]),
                        write_csv(out / "validation_best.csv", validation.attrs["best"])]
            written.append(planning.plot_plan(out / "plan.png", pd.concat(costs, ignore_index=True), rtts[0], link_model,
                                              model, summary))
        written.append(plot_stages(out / "link.png", summary, model))
    show_table(summary, title=f"{model} over a {link.name} link", source=out / "link.csv",
               columns=["setup", "bandwidth_mbit", "rtt_ms", *answers.metrics, "payload_bytes", "total_ms"])
    show_written(written)


def _cross(zoo_model: ZooModel, setup: SplitSetup, sender: Sender, pictures, conditions, link, server: str | None,
           weights_info: dict, server_arguments: list[str], server_cpus: set[int], advance,
           before_image=None, keys: ClientKeys | None = None) -> pd.DataFrame:
    """One cut's per-image measurements over ``link``: edge alone, a running server, or one started for it."""
    from splitbench.link.client import LinkClient
    from splitbench.link.measure import measure, running_server

    if setup.at == EDGE:  # no network: one timing per image, reported under every condition
        return measure(sender, None, pictures, conditions, link, advance, before_image)
    expected = {"model": zoo_model.spec.name, "weights_sha256": weights_info["sha256"], **setup.describe(),
                "shape": list(sender.shape)}
    if server is not None:
        with LinkClient(server, keys=keys) as client:
            client.check(expected)
            return measure(sender, client, pictures, conditions, link, advance, before_image)
    with running_server(server_arguments, link.server_prefix, link.server_host, server_cpus) as (_, endpoint), \
            LinkClient(endpoint) as client:
        client.check(expected)
        return measure(sender, client, pictures, conditions, link, advance, before_image)


def _client_keys(server: str | None, server_key: Path | None, client_key: Path | None) -> ClientKeys | None:
    """CURVE keys for ``--server``; a server that ``link`` starts itself listens on loopback or in its namespace."""
    from splitbench.link.security import client_keys

    if server_key is None:
        if client_key is not None:
            raise SplitbenchError("--client-key needs --server-key (the server's public key)")
        return None
    if server is None:
        raise SplitbenchError("--server-key is for a running server: give --server HOST:PORT too")
    return client_keys(server_key, client_key)


def _link_settings(bandwidth: str, rtt: str, unshaped_allowed: bool) -> tuple[list, list[float]]:
    """``--bandwidth`` (Mbit/s; ``none`` for the link as it is, where allowed) and ``--rtt`` (ms)."""
    if unshaped_allowed and bandwidth == "none":
        bandwidths: list = [None]
    else:
        bandwidths = split_numbers(bandwidth, "--bandwidth", float)
        if min(bandwidths) <= 0:
            raise SplitbenchError(f"--bandwidth takes positive Mbit/s, got '{bandwidth}'")
    return bandwidths, split_numbers(rtt, "--rtt", float, minimum=0)


def _images(zoo_model: ZooModel, dataset: str | None, split: str | None, data: Path | None, limit: int):
    """The data set's name and its first ``limit`` images (the model's own set by default)."""
    name, split = dataset_and_split(zoo_model.spec.name, dataset, split, zoo_model.spec.dataset)
    return name, zoo_model.check_data(open_dataset(name, split=split, root=data, limit=limit))


def _setup_arguments(setup: SplitSetup) -> list[str]:
    arguments = ["--at", setup.at, "--codec", setup.codec]
    if setup.spec is not None:
        parameter = codec_class(setup.codec).parameter
        if parameter:
            arguments += [f"--{parameter}", str(setup.param)]
        arguments += ["--layout", setup.layout, "--bits", str(setup.bits)]
    return arguments if setup.at != INPUT else ["--at", INPUT, "--codec", "jpeg"]


@app.command("plan")
def plan_command(
    model: ModelArgument = None,
    model_option: ModelOption = None,
    weights: Weights = "auto",
    at: Annotated[str, typer.Option("--at", help="Comma-separated cuts, or all (every valid cut); input and "
                                    "edge are always included.")] = "all",
    leaf: Leaf = None,
    codec: CodecOption = CODEC,
    qp: Qp = None,
    quality: Quality = None,
    layout: Layout = "gray",
    bits: Bits = 8,
    preprocess: Preprocess = "seed",
    bandwidth: Bandwidth = "1,10,100",
    rtt: Rtt = "0",
    edge_slowdown: Annotated[float, float_option("--edge-slowdown", minimum=0.01, maximum=1000,
                                                 help_text="The edge is this many times slower than this machine.")] = 1.0,
    edge_times: Annotated[Optional[Path], typer.Option("--edge-times", help="times.csv that plan wrote on the "
                                                       "edge device: its head_ms and encode_ms replace this machine's.")] = None,
    head_start: Annotated[str, typer.Option("--head-start", help="Bytes the shaper passes at once: tbf (one "
                                            "frame, as link's netns shaper), wire (none), or a number.")] = "wire",
    validate_with: Annotated[Optional[Path], typer.Option("--validate", help="link.csv to compare the "
                                                          "predictions with (same --at, --codec).")] = None,
    dataset: Dataset = None,
    split: Split = None,
    data: DataRoot = None,
    limit: Limit = 5,
    repeats: Repeats = 3,
    out: OutDir = None,
    dry_run: DryRun = False,
) -> None:
    """Predict MODEL's end-to-end latency at every cut over a link; pick the best cut per bandwidth."""
    from splitbench.link import plan as planning
    from splitbench.link.measure import on_cores, split_cores
    from splitbench.link.shaping import MTU_FRAME

    start = time.perf_counter()
    bandwidths, rtts = _link_settings(bandwidth, rtt, unshaped_allowed=False)  # bad numbers fail before any work
    if repeats < 1:
        raise SplitbenchError("--repeats 0: plan predicts from timings; time each cut at least once")
    model = pick_model(model, model_option, "mobilenet_v2")
    zoo_model = load_model(model, leaf_modules=_leaf_modules(leaf))
    answers_for(zoo_model, command="plan")  # latency is model-agnostic; the tail must end in outputs it can answer
    codec_setting(codec, qp, quality, required=False)
    cuts = _plan_cuts(zoo_model, at, codec.partition(":")[0])
    setups = [setup_for(zoo_model, cut, codec, qp, quality, layout, bits) for cut in cuts]
    try:
        head = {"tbf": MTU_FRAME, "wire": 0}[head_start] if head_start in ("tbf", "wire") else int(head_start)
        if head < 0:
            raise ValueError
    except ValueError:
        raise SplitbenchError(f"--head-start takes tbf, wire or a number of bytes, got '{head_start}'") from None
    measured = _read_table(validate_with, "--validate", ("setup", "bandwidth_mbit", "rtt_ms", "total_ms")) \
        if validate_with else None
    edge = _read_table(edge_times, "--edge-times", ("setup", "head_ms", "encode_ms")) if edge_times else None
    name, images = _images(zoo_model, dataset, split, data, limit)
    out = writable_folder(out or default_out("plan", model), "--out")
    plan = Plan("plan").add("model", model).add("weights", zoo_model.describe_weights(weights, pretrained=True))
    plan.add("setups", f"{len(setups)}: {', '.join(s.label for s in setups[:6])}{' …' if len(setups) > 6 else ''}")
    plan.add("link model", f"edge slowdown {edge_slowdown:g}, head start {head} B").add("out", out)
    if plan.finish(dry_run, show_plan):
        return
    zoo_model.load_weights(weights, pretrained=True)
    pictures = [picture for picture, _ in model_pictures(zoo_model, images, preprocess)]
    link_model = planning.LinkModel(edge_slowdown, head, planning.transport_overhead_ms(Receiver(zoo_model, setups[0])))
    edge_cpus, server_cpus = split_cores()  # as link runs each side: its half of the cores, as many threads
    with on_cores(edge_cpus), progress_bar(enabled=True, transient=False) as bar:
        task = bar.add_task("timing cuts", total=len(setups))
        costs = planning.measure_costs(zoo_model, setups, pictures, repeats, preprocess, server_cpus=server_cpus,
                                       on_setup=lambda: bar.update(task, advance=1))
    if edge is not None:
        costs = _with_edge_times(costs, edge)
    predictions = planning.predict(costs, bandwidths, rtts, link_model)
    best = planning.best_cuts(predictions)
    meta = provenance.collect(
        "plan",
        {"model": model, "weights": weights, "setups": [s.describe() for s in setups], "bandwidths": bandwidths,
         "rtts": rtts, "edge_slowdown": edge_slowdown, "edge_times": edge_times, "head_start_bytes": head,
         "transport_overhead_ms": link_model.overhead_ms, "edge_cpus": sorted(edge_cpus),
         "server_cpus": sorted(server_cpus),
         "dataset": name, "limit": limit, "repeats": repeats, "preprocess": preprocess, "out": out},
        weights=zoo_model.weights.describe(), data=images.provenance(), wall_s=time.perf_counter() - start,
    )
    from splitbench.link.report import plan_markdown

    validation = planning.validate(costs, measured, link_model) if measured is not None else None
    with result_set(out):
        written = write_result(out, "plan", best, meta, plan_markdown(model, costs, best, link_model, validation))
        written += [write_csv(out / "times.csv", costs, optional=planning.SPREAD_COLUMNS),
                    write_csv(out / "predictions.csv", predictions)]
        if validation is not None:
            written += [write_csv(out / "validation.csv", validation, optional=["bandwidth_mbit"]),
                        write_csv(out / "validation_best.csv", validation.attrs["best"])]
        written.append(planning.plot_plan(out / "plan.png", costs, rtts[0], link_model, model, measured))
    show_table(best, title=f"{model}: best cut per bandwidth", source=out / "plan.csv")
    if validation is not None:
        show_table(validation, title="plan against link", source=out / "validation.csv",
                   columns=["setup", "bandwidth_mbit", "predicted_ms", "measured_ms", "error_percent",
                            *(c for c in planning.ACCURACY_COLUMNS if c in validation.columns)])
    show_written(written)


def _plan_cuts(zoo_model: ZooModel, at: str, codec: str) -> list[str]:
    """``all``: every valid cut the codec can carry (C×H×W for an image codec) but the output; input first, edge last."""
    if at != "all":
        return [INPUT, *[cut for cut in split_names(at, "--at") if cut not in (INPUT, EDGE)], EDGE]
    planes_only = codec not in BASELINES
    graph = zoo_model.cuts()
    # a classifier's last cut is its output: sending it is `edge` plus a message (a detector's
    # outputs are its heads, never one cut: its last cut leaves a tail to run)
    inner = graph.cuts[:-1] if graph.cuts[-1].cum_macs == graph.total_macs else graph.cuts
    return [INPUT, *[cut.name for cut in inner if not planes_only or len(cut.shape) == 3], EDGE]


def _read_table(path: Path, option: str, columns: tuple[str, ...]) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise SplitbenchError(f"{option} {path}: no such file") from None
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise SplitbenchError(f"{option} {path}: not a CSV table ({type(error).__name__})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise SplitbenchError(f"{option} {path} is not the right table: no column {missing[0]}")
    return table


def _with_edge_times(costs: pd.DataFrame, edge: pd.DataFrame) -> pd.DataFrame:
    # the edge's times and their spread; a times.csv from before the spread was recorded leaves it empty
    edge_side = [c for c in costs.columns if c.startswith(("head_ms", "encode_ms"))]
    merged = costs.drop(columns=edge_side).merge(edge[["setup", *(c for c in edge_side if c in edge.columns)]],
                                                 on="setup", how="left")
    missing = merged.loc[merged["head_ms"].isna(), "setup"].tolist()
    if missing:
        raise SplitbenchError(f"--edge-times has no row for {missing[0]}; plan the same --at and --codec there")
    return merged.reindex(columns=costs.columns)
