"""``splitbench serve``, ``link`` and ``plan`` as library calls: split inference over a real link, and where to cut.

Each job holds its command's options, parsed (comma lists as tuples, the model picked), and
makes the command's checks when it is made: the model and its cuts, the codec setting, the
shaper, the keys, the data and the output folder. ``plan()`` is the dry run's rows, ``run()``
measures and writes:

>>> from splitbench.jobs.link import LinkJob                      # doctest: +SKIP
>>> LinkJob(model="cifar_resnet20", at=("layer2", "edge"), shaper="app", bandwidth=(4.0,)).run()  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
import torch

from splitbench import progress, provenance
from splitbench.data.datasets import dataset_and_split, open_dataset
from splitbench.errors import SplitbenchError
from splitbench.evaluation import progress_bar
from splitbench.jobs import Shown, check_finite, paths_as_paths
from splitbench.link.endpoints import EDGE, INPUT, Receiver, SplitSetup, model_pictures
from splitbench.link.setups import codec_setting, setup_for
from splitbench.link.tasks import answers_for
from splitbench.preflight import Plan, physical_cores, writable_folder
from splitbench.results import result_set, write_csv, write_result
from splitbench.runs import run_folder
from splitbench.transport import BASELINES, is_learned, is_user_codec, learned_file
from splitbench.zoo import ZooModel, load_model

if TYPE_CHECKING:  # zmq is imported where a socket is made, not at every command's start
    from splitbench.link.server import ServerStats

SHAPERS = ("auto", "netns", "app", "none")
MAX_SERVE_WORKERS = 64
CODEC = "minmax8"  # serve, link and plan take one codec setting: the same options, the same defaults


@dataclass(frozen=True)
class Result:
    """What a run computed and wrote: the tables to show and the files written."""

    tables: list[Shown]
    written: list[Path]


@dataclass(frozen=True)
class Served:
    """What ``serve`` did: the key files (``make_keys``), or the server's counts when it stopped."""

    keys: list[Path]
    stats: ServerStats | None = None


@dataclass(frozen=True)
class _SplitJob:
    """The options serve, link and plan share: the model, its weights and how a cut's tensor travels."""

    model: str = "mobilenet_v2"
    weights: str = "auto"
    leaf: tuple[str, ...] = ()  # modules kept whole when tracing
    codec: str = CODEC  # none, minmax8, an image codec at qp/quality or NAME:V, learned:…, FILE.py:FUNCTION
    qp: int | None = None
    quality: int | None = None
    layout: str = "gray"
    bits: int = 8
    preprocess: str = "seed"

    def arguments(self) -> dict[str, Any]:
        """The job's fields, for provenance (the request itself)."""
        return dataclasses.asdict(self)

    def _split_model(self, command: str) -> ZooModel:
        zoo_model = load_model(self.model, leaf_modules=tuple(self.leaf))
        answers_for(zoo_model, command=command)  # a classifier, or a detector whose outputs decode to boxes
        return zoo_model

    def _setup(self, zoo_model: ZooModel, at: str) -> SplitSetup:
        return setup_for(zoo_model, at, self.codec, self.qp, self.quality, self.layout, self.bits)

    def _resolve(self, began: float, **state: Any) -> None:
        """Keep what the checks resolved (not fields: ``arguments()`` is the request only)."""
        object.__setattr__(self, "_state", state | {"checks_s": time.perf_counter() - began})

    def _get(self, name: str) -> Any:
        return self._state[name]  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ServeJob(_SplitJob):
    """``splitbench serve``: the tail of a model at a cut (and the codec's decoder) behind a socket."""

    at: str = INPUT
    host: str = "127.0.0.1"
    port: int = 5555  # 0: a free one
    workers: int | None = None  # threads answering requests (default 1)
    max_message_mb: float = 16.0
    threads: int | None = None  # torch threads (default: physical cores)
    auth: Path | None = None  # a key folder from make_keys, or a server secret key file
    insecure_bind: bool = False
    make_keys: Path | None = None  # write key pairs into this folder and stop

    def __post_init__(self) -> None:
        paths_as_paths(self)
        from splitbench.link import security

        began = time.perf_counter()
        if self.make_keys is not None:
            security.check_key_folder(self.make_keys)
            self._resolve(began)
            return
        workers = self.workers or 1  # threads answering requests; torch's own threads share the cores
        if workers > MAX_SERVE_WORKERS:
            raise SplitbenchError(f"--workers {workers}: serve answers with at most {MAX_SERVE_WORKERS} threads")
        keys = security.server_keys(self.auth) if self.auth is not None else None
        security.check_bind(self.host, keys is not None, self.insecure_bind)
        zoo_model = self._split_model("serve")
        if self.at not in (INPUT, EDGE):  # --at input takes a JPEG (link starts it with --codec jpeg)
            codec_setting(self.codec, self.qp, self.quality, required=False)
        setup = self._setup(zoo_model, self.at)
        self._resolve(began, zoo_model=zoo_model, setup=setup, keys=keys, workers=workers,
                      weights_row=zoo_model.describe_weights(self.weights, pretrained=True))

    def plan(self) -> Plan:
        if self.make_keys is not None:
            from splitbench.link.security import KEY_FILES

            return Plan("serve").add("make keys", f"{self.make_keys}/{{{', '.join(KEY_FILES)}}} (0600)")
        keys = self._get("keys")
        plan = Plan("serve").add("model", self.model).add("weights", self._get("weights_row"))
        plan.add("setup", self._get("setup").label).add("listen", f"tcp://{self.host}:{self.port or '*'}")
        clients = f"clients in {keys.clients}" if keys and keys.clients else "any client with the server key"
        return plan.add("auth", f"CURVE, {clients}" if keys else "none")

    def run(self, ready: Callable[[str], None] = progress.log) -> Served:
        """Serve until SIGTERM or SIGINT (``ready`` gets the ``listening on tcp://…`` line); or write the keys."""
        from splitbench.link import security
        from splitbench.link.server import SplitServer

        if self.make_keys is not None:
            return Served(security.make_keys(self.make_keys))
        zoo_model, setup = self._get("zoo_model"), self._get("setup")
        zoo_model.load_weights(self.weights, pretrained=True)
        torch.set_num_threads(self.threads or physical_cores())
        server = SplitServer(Receiver(zoo_model, setup, self.preprocess), zoo_model.weights.describe()["sha256"],
                             host=self.host, port=self.port, workers=self._get("workers"),
                             max_message_bytes=int(self.max_message_mb * (1 << 20)), keys=self._get("keys"))
        ready(f"listening on {server.endpoint} ({self.model} {setup.label})")
        return Served([], server.serve())


@dataclass(frozen=True)
class LinkJob(_SplitJob):
    """``splitbench link``: the model split across a shaped link, per-image stage times, bytes, top-1 or mAP."""

    at: tuple[str, ...] = (INPUT, EDGE)  # cuts; input (JPEG upload) and edge (no network) are cuts too
    bandwidth: tuple[float | None, ...] = (1.0, 10.0, 100.0)  # Mbit/s; (None,): the link as it is
    rtt: tuple[float, ...] = (0.0,)  # ms
    shaper: str = "auto"  # auto, netns, app or none
    server: str | None = None  # a running serve (HOST:PORT) instead of one started per cut
    server_key: Path | None = None
    client_key: Path | None = None
    dataset: str | None = None
    split: str | None = None
    data: Path | None = None
    limit: int | None = 20
    with_plan: bool = False  # also time each picture as plan does, and validate plan's prediction
    deployments: Path | None = None  # a plan --search folder: link its chosen deployments (with_plan too)
    edge_slowdown: float = 1.0  # the edge's measured compute counts this many times (a slower device)
    out: Path | None = None

    def __post_init__(self) -> None:
        paths_as_paths(self)
        from splitbench.link.measure import Condition
        from splitbench.link.shaping import netns_possible

        began = time.perf_counter()
        _check_link_numbers(self.bandwidth, self.rtt, unshaped_allowed=True)  # bad numbers fail before any work
        check_finite("--edge-slowdown", self.edge_slowdown, 0.01)
        zoo_model = self._split_model("link")
        if self.deployments is not None:
            from splitbench.jobs.search import check_deployment, deployed_setups

            check_deployment(self)
            setups = deployed_setups(zoo_model, self.model, self.deployments, self.layout, self.bits)
        else:
            codec_setting(self.codec, self.qp, self.quality, required=False)
            setups = [self._setup(zoo_model, cut) for cut in self.at]
        if self.shaper not in SHAPERS:
            raise SplitbenchError(f"unknown --shaper '{self.shaper}'; valid: {', '.join(SHAPERS)}")
        shaper = self.shaper
        if shaper == "auto":
            shaper = "netns" if netns_possible() is None and self.server is None else "app"
        if shaper == "netns" and (reason := netns_possible()):
            raise SplitbenchError(f"--shaper netns: {reason}; use --shaper app")
        if self.server is not None and (len(setups) != 1 or shaper == "netns"):
            raise SplitbenchError("--server takes one --at and --shaper app or none")
        keys = _client_keys(self.server, self.server_key, self.client_key)
        # a search's choices are linked on its own calibration pictures, spread over the set as it took them
        name, images = _images(zoo_model, self.dataset, self.split, self.data, self.limit,
                               "spread" if self.deployments is not None else "first")
        out = writable_folder(self.out or run_folder("link", self.model), "--out")
        self._resolve(began, zoo_model=zoo_model, setups=setups, shaper=shaper, keys=keys, dataset=name,
                      images=images, out=out, conditions=[Condition(b, r) for b in self.bandwidth for r in self.rtt],
                      weights_row=zoo_model.describe_weights(self.weights, pretrained=True))

    def plan(self) -> Plan:
        plan = Plan("link").add("model", self.model).add("weights", self._get("weights_row"))
        plan.add("setups", ", ".join(s.label for s in self._get("setups")))
        plan.add("conditions", "; ".join(c.label for c in self._get("conditions"))).add("shaper", self._get("shaper"))
        return plan.add("data", f"{self._get('dataset')}: {len(self._get('images'))} images").add("out", self._get("out"))

    def run(self) -> Result:
        from splitbench.link.measure import Link, measure_setups, on_cores, split_cores, summarise
        from splitbench.link.report import link_markdown, plot_stages
        from splitbench.link.shaping import EndDelay

        start = time.perf_counter() - self._get("checks_s")
        zoo_model, setups, images, out = self._get("zoo_model"), self._get("setups"), self._get("images"), self._get("out")
        zoo_model.load_weights(self.weights, pretrained=True)
        # a server started per cut loads what this side loaded (auto resolved), and keeps the same modules whole
        served = [self.model, "--weights", zoo_model.weights.source, *(["--leaf", ",".join(self.leaf)] if self.leaf else [])]
        pictures = model_pictures(zoo_model, images, self.preprocess)
        edge_cpus, server_cpus = split_cores()
        with Link(self._get("shaper")) as link, on_cores(edge_cpus):
            per_image, costs = measure_setups(zoo_model, setups, pictures, self._get("conditions"), link,
                                              self.preprocess, served, server=self.server, keys=self._get("keys"),
                                              server_cpus=server_cpus, with_plan=self.with_plan,
                                              edge_slowdown=self.edge_slowdown)
        per_image.insert(5, "shaper", link.name)
        per_image.insert(6, "rtt_by", EndDelay.by)
        answers = answers_for(zoo_model, images)  # top-1, or a detector's mAP against the data set's boxes
        summary = summarise(per_image, answers)
        per_image = per_image.drop(columns=list(answers.hidden))  # a detector's boxes: scored, not written
        summary.insert(5, "shaper", link.name)
        meta = provenance.collect(
            "link",
            self.arguments() | {
                "setups": [s.describe() for s in setups], "conditions": [c.__dict__ for c in self._get("conditions")],
                "shaper": link.name, "tbf_head_start_bytes": link.head_start, "rtt_by": EndDelay.by,
                "edge_cpus": sorted(edge_cpus),
                "server_cpus": sorted(server_cpus) if self.server is None else "the server's own",
                "dataset": self._get("dataset"), "task": answers.task, "out": out},
            weights=zoo_model.weights.describe(), data=images.provenance(), wall_s=time.perf_counter() - start,
        )
        markdown = link_markdown(self.model, summary, link.name, self.edge_slowdown)
        checked = None
        if costs is not None:
            link_model, validation, plan_text = self._plan_beside(zoo_model, summary, costs, link.head_start)
            markdown += "\n" + plan_text
            if self.deployments is not None:
                checked, check_text = self._check_deployments(validation, answers.metrics[0])
                markdown += "\n" + check_text
        with result_set(out):
            unshaped = ["bandwidth_mbit", "wire_up_bytes", "wire_down_bytes"]  # no shaper, no wire count
            written = write_result(out, "link", summary, meta, markdown, optional=unshaped)
            written.append(write_csv(out / "link_images.csv", per_image, optional=unshaped))
            if costs is not None:
                written += self._write_plan(out, costs, validation, link_model, summary)
            if checked is not None and not checked.empty:  # a variant the search chose nowhere: its Markdown says so
                written.append(write_csv(out / "deploy_check.csv", checked, optional=["regret_percent", "regret_points"]))
            written.append(plot_stages(out / "link.png", summary, self.model))
        columns = ["setup", "bandwidth_mbit", "rtt_ms", *answers.metrics, "payload_bytes", "total_ms"]
        tables = [Shown(summary, f"{self.model} over a {link.name} link", columns, out / "link.csv")]
        if checked is not None and not checked.empty:
            tables.append(Shown(checked, "plan --search's choices over the link", [
                "bandwidth_mbit", "budget", "limit", "chosen", "error_percent", *(c for c in checked.columns
                                                                                  if c.startswith("regret"))],
                out / "deploy_check.csv"))
        return Result(tables, written)

    def _check_deployments(self, validation: pd.DataFrame, metric: str) -> tuple[pd.DataFrame, str]:
        """The search's choices beside what the link measured, and their Markdown."""
        from splitbench.jobs.search import read_search
        from splitbench.link.report import deploy_check_markdown
        from splitbench.link.search import check_choices

        found = read_search(self.deployments)  # type: ignore[arg-type]
        checked = check_choices(found["search.csv"], found["candidates.csv"], found["predictions.csv"], validation,
                                metric, self.model)
        return checked, deploy_check_markdown(checked, metric)

    def _plan_beside(self, zoo_model: ZooModel, summary: pd.DataFrame, costs: pd.DataFrame,
                     head_start: int) -> tuple[Any, pd.DataFrame, str]:
        """Plan's link model and prediction from the timings taken beside the measurement, validated
        against it, and its Markdown."""
        from splitbench.link import plan as planning
        from splitbench.link.report import plan_markdown

        served = next((s for s in self._get("setups") if s.at != EDGE), self._get("setups")[0])
        link_model = planning.LinkModel(self.edge_slowdown, head_start,
                                        planning.transport_overhead_ms(Receiver(zoo_model, served)))
        validation = planning.validate(costs, summary, link_model)
        best = planning.best_cuts(planning.predict(costs, [b for b in self.bandwidth if b], self.rtt, link_model))
        return link_model, validation, plan_markdown(self.model, costs, best, link_model, validation)

    def _write_plan(self, out: Path, costs: pd.DataFrame, validation: pd.DataFrame, link_model: Any,
                    summary: pd.DataFrame) -> list[Path]:
        from splitbench.link import plan as planning

        return [write_csv(out / "times.csv", costs),
                write_csv(out / "validation.csv", validation, optional=["bandwidth_mbit"]),
                write_csv(out / "validation_best.csv", validation.attrs["best"]),
                planning.plot_plan(out / "plan.png", costs, self.rtt[0], link_model, self.model, summary)]


@dataclass(frozen=True)
class PlanJob(_SplitJob):
    """``splitbench plan``: predicted end-to-end latency at every cut over a link; the best cut per bandwidth."""

    at: tuple[str, ...] = ("all",)  # cuts, or all (every valid cut); input and edge are always included
    bandwidth: tuple[float, ...] = (1.0, 10.0, 100.0)  # Mbit/s
    rtt: tuple[float, ...] = (0.0,)  # ms
    edge_slowdown: float = 1.0  # the edge is this many times slower than this machine
    edge_times: Path | None = None  # times.csv that plan wrote on the edge device
    head_start: str = "wire"  # bytes the shaper passes at once: tbf, wire or a number
    validate_with: Path | None = None  # link.csv to compare the predictions with
    dataset: str | None = None
    split: str | None = None
    data: Path | None = None
    limit: int | None = 5
    repeats: int = 3
    out: Path | None = None

    def __post_init__(self) -> None:
        paths_as_paths(self)
        began = time.perf_counter()
        _check_link_numbers(self.bandwidth, self.rtt, unshaped_allowed=False)  # bad numbers fail before any work
        check_finite("--edge-slowdown", self.edge_slowdown, 0.01)
        if self.repeats < 1:
            raise SplitbenchError("--repeats 0: plan predicts from timings; time each cut at least once")
        zoo_model = self._split_model("plan")  # latency is model-agnostic; the tail must end in outputs it answers
        setups = self._setups(zoo_model)
        head = head_start_bytes(self.head_start)
        measured = _read_table(self.validate_with, "--validate", ("setup", "bandwidth_mbit", "rtt_ms", "total_ms")) \
            if self.validate_with else None
        edge = _read_table(self.edge_times, "--edge-times", ("setup", "head_ms", "encode_ms")) if self.edge_times else None
        name, images = _images(zoo_model, self.dataset, self.split, self.data, self.limit, self.limit_rule)
        out = writable_folder(self.out or run_folder("plan", self.model), "--out")
        self._resolve(began, zoo_model=zoo_model, setups=setups, head=head, measured=measured, edge=edge,
                      dataset=name, images=images, out=out,
                      weights_row=zoo_model.describe_weights(self.weights, pretrained=True))

    limit_rule: ClassVar[str] = "first"  # --limit's pictures: plan times the first ones (see ImageDataset.limited)

    def _setups(self, zoo_model: ZooModel) -> list[Any]:
        """What plan times: every cut of ``--at`` (input and edge too) with the one codec setting."""
        codec_setting(self.codec, self.qp, self.quality, required=False)
        return [self._setup(zoo_model, cut) for cut in plan_cuts(zoo_model, self.at, self.codec)]

    def plan(self) -> Plan:
        setups = self._get("setups")
        plan = Plan("plan").add("model", self.model).add("weights", self._get("weights_row"))
        plan.add("setups", f"{len(setups)}: {', '.join(s.label for s in setups[:6])}{' …' if len(setups) > 6 else ''}")
        plan.add("link model", f"edge slowdown {self.edge_slowdown:g}, head start {self._get('head')} B")
        return plan.add("out", self._get("out"))

    def run(self) -> Result:
        from splitbench.link import plan as planning
        from splitbench.link.measure import on_cores, split_cores
        from splitbench.link.report import plan_markdown

        start = time.perf_counter() - self._get("checks_s")
        zoo_model, setups, images, out = self._get("zoo_model"), self._get("setups"), self._get("images"), self._get("out")
        zoo_model.load_weights(self.weights, pretrained=True)
        pictures = [picture for picture, _ in model_pictures(zoo_model, images, self.preprocess)]
        link_model = planning.LinkModel(self.edge_slowdown, self._get("head"),
                                        planning.transport_overhead_ms(Receiver(zoo_model, setups[0])))
        edge_cpus, server_cpus = split_cores()  # as link runs each side: its half of the cores, as many threads
        with on_cores(edge_cpus), progress_bar(enabled=True, transient=False) as bar:
            task = bar.add_task("timing cuts", total=len(setups))
            costs = planning.measure_costs(zoo_model, setups, pictures, self.repeats, self.preprocess,
                                           server_cpus=server_cpus, on_setup=lambda: bar.update(task, advance=1))
        if self._get("edge") is not None:
            costs = _with_edge_times(costs, self._get("edge"))
        predictions = planning.predict(costs, self.bandwidth, self.rtt, link_model)
        best = planning.best_cuts(predictions)
        meta = provenance.collect(
            "plan",
            self.arguments() | {
                "setups": [s.describe() for s in setups], "bandwidths": list(self.bandwidth), "rtts": list(self.rtt),
                "head_start_bytes": self._get("head"), "transport_overhead_ms": link_model.overhead_ms,
                "edge_cpus": sorted(edge_cpus), "server_cpus": sorted(server_cpus), "dataset": self._get("dataset"),
                "out": out},
            weights=zoo_model.weights.describe(), data=images.provenance(), wall_s=time.perf_counter() - start,
        )
        measured = self._get("measured")
        validation = planning.validate(costs, measured, link_model) if measured is not None else None
        with result_set(out):
            written = write_result(out, "plan", best, meta, plan_markdown(self.model, costs, best, link_model, validation))
            written += [write_csv(out / "times.csv", costs, optional=planning.SPREAD_COLUMNS),
                        write_csv(out / "predictions.csv", predictions)]
            if validation is not None:
                written += [write_csv(out / "validation.csv", validation, optional=["bandwidth_mbit"]),
                            write_csv(out / "validation_best.csv", validation.attrs["best"])]
            written.append(planning.plot_plan(out / "plan.png", costs, self.rtt[0], link_model, self.model, measured))
        tables = [Shown(best, f"{self.model}: best cut per bandwidth", source=out / "plan.csv")]
        if validation is not None:
            tables.append(Shown(validation, "plan against link", ["setup", "bandwidth_mbit", "predicted_ms",
                                "measured_ms", "error_percent", *(c for c in planning.ACCURACY_COLUMNS
                                                                  if c in validation.columns)], out / "validation.csv"))
        return Result(tables, written)


def head_start_bytes(value: str) -> int:
    """``--head-start``: bytes the shaper passes at once (tbf: one frame; wire: none; or a number)."""
    from splitbench.link.shaping import MTU_FRAME

    text = str(value)
    try:
        head = {"tbf": MTU_FRAME, "wire": 0}[text] if text in ("tbf", "wire") else int(text)
        if head < 0:
            raise ValueError
    except ValueError:
        raise SplitbenchError(f"--head-start takes tbf, wire or a number of bytes, got '{text}'") from None
    return head


def _check_link_numbers(bandwidth: tuple[float | None, ...], rtt: tuple[float, ...], unshaped_allowed: bool) -> None:
    """``bandwidth`` in Mbit/s (``(None,)``: the link as it is, where allowed), ``rtt`` in ms."""
    if not (unshaped_allowed and tuple(bandwidth) == (None,)):
        if not bandwidth or None in bandwidth or min(bandwidth) <= 0:  # type: ignore[type-var]
            raise SplitbenchError(f"--bandwidth takes positive Mbit/s, got '{_numbers(bandwidth)}'")
    if not rtt or min(rtt) < 0:
        raise SplitbenchError(f"--rtt takes comma-separated numbers ≥ 0, got '{_numbers(rtt)}'")


def _numbers(values: tuple[float | None, ...]) -> str:
    return ",".join("none" if value is None else f"{value:g}" for value in values)


def _client_keys(server: str | None, server_key: Path | None, client_key: Path | None) -> Any:
    """CURVE keys for ``--server``; a server that ``link`` starts itself listens on loopback or in its namespace."""
    from splitbench.link.security import client_keys

    if server_key is None:
        if client_key is not None:
            raise SplitbenchError("--client-key needs --server-key (the server's public key)")
        return None
    if server is None:
        raise SplitbenchError("--server-key is for a running server: give --server HOST:PORT too")
    return client_keys(server_key, client_key)


# Names of data that is not a manifest: the part after the colon is a path, not a split (as the CLI's options read them).


def _images(zoo_model: ZooModel, dataset: str | None, split: str | None, data: Path | None, limit: int | None,
            rule: str = "first"):
    """The data set's name and ``limit`` of its images by ``rule`` (the model's own set by default):
    the first ones, or (``spread``) spread evenly over a class-sorted set, as calibration wants."""
    name, split = dataset_and_split(zoo_model.spec.name, dataset, split, zoo_model.spec.dataset)
    if rule == "first":
        return name, zoo_model.check_data(open_dataset(name, split=split, root=data, limit=limit))
    return name, zoo_model.check_data(open_dataset(name, split=split, root=data).limited(limit, rule))


def plan_cuts(zoo_model: ZooModel, at: tuple[str, ...], codec: str) -> list[str]:
    """``all``: every valid cut the codec can carry (C×H×W for an image codec) but the output; input first, edge last."""
    if tuple(at) != ("all",):
        return [INPUT, *[cut for cut in at if cut not in (INPUT, EDGE)], EDGE]
    if is_learned(codec):  # a learned codec codes the one cut it was trained at
        from splitbench.compression.export import load_codec

        return [INPUT, zoo_model.cuts().resolve(load_codec(learned_file(codec))[1].at).name, EDGE]
    planes_only = codec not in BASELINES and not is_user_codec(codec)  # a user's codec may take any tensor
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
