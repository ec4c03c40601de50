"""``splitbench link`` as a library call: split inference over a link, timed stage by stage.

For each setup (a cut and how its tensor travels), each link condition (bandwidth, RTT) and
each image: head → encode → send → wait for the server's top-5 (a detector's server: its
detections) → score. A classifier's figure is top-1; a detector's, mAP and mAP@.5 by COCOeval
over each setup's and condition's images (:mod:`splitbench.link.tasks`). Stage times come
from both ends: the edge times its head and encoder and the whole exchange; the server
reports its decode and tail; the transfer is the exchange minus the server's time (so it
holds the bytes' time on the link, the RTT and the transport's own cost).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from splitbench.errors import SplitbenchError
from splitbench.evaluation import progress_bar
from splitbench.link.client import LinkClient
from splitbench.link.endpoints import EDGE, Sender, SplitSetup
from splitbench.link.protocol import framing_bytes
from splitbench.link.security import ClientKeys, is_loopback
from splitbench.link.shaping import EndDelay, NetnsLink, TokenBucket
from splitbench.link.setups import serve_arguments
from splitbench.link.tasks import Answers, ClassificationAnswers
from splitbench.zoo import ZooModel

STAGES = ("head_ms", "encode_ms", "transfer_ms", "server_ms")
SERVER_START_S = 180.0


@dataclass(frozen=True)
class Condition:
    bandwidth_mbit: float | None  # None: the link as it is (loopback or the veth unshaped)
    rtt_ms: float = 0.0

    @property
    def label(self) -> str:
        bandwidth = "unshaped" if self.bandwidth_mbit is None else f"{self.bandwidth_mbit:g} Mbit/s"
        return f"{bandwidth}, RTT {self.rtt_ms:g} ms"


class Link:
    """Where requests go and how they are shaped: a namespace with tbf, an app token bucket, or nothing."""

    def __init__(self, shaper: str) -> None:
        self.kind = shaper
        self.netns: NetnsLink | None = NetnsLink() if shaper == "netns" else None
        self.bucket = TokenBucket() if shaper == "app" else None

    @property
    def name(self) -> str:
        return self.netns.name if self.netns else self.bucket.name if self.bucket else "none (loopback as it is)"

    @property
    def head_start(self) -> int:
        return self.netns.head_start if self.netns else 0

    @property
    def server_host(self) -> str:
        return self.netns.server_ip if self.netns else "127.0.0.1"

    @property
    def server_prefix(self) -> list[str]:
        return self.netns.inside if self.netns else []

    def set(self, condition: Condition) -> None:
        if self.netns:
            self.netns.set_rate(condition.bandwidth_mbit)
        elif self.bucket:
            self.bucket.set_rate(condition.bandwidth_mbit)
        elif condition.bandwidth_mbit is not None:
            raise SplitbenchError("--shaper none cannot set a bandwidth; use --shaper netns or app")

    def counters(self) -> tuple[int, int] | None:
        return self.netns.counters() if self.netns else None

    def __enter__(self) -> Link:
        if self.netns:
            self.netns.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.netns:
            self.netns.__exit__(*exc)


def exchange(client: LinkClient, sent_payload: bytes, header: dict[str, Any], link: Link,
             delay: EndDelay) -> tuple[dict[str, Any], dict[str, float]]:
    """One request and its reply over ``link``: the reply and the measured transfer figures."""
    before = link.counters()
    began = time.perf_counter()
    delay.half()
    request_id, frames = client.prepare("infer", sent_payload, **header)
    header_bytes = frames[0]
    if link.bucket:  # the request's bytes cross the link before the server can have them
        link.bucket.pace(len(sent_payload) + framing_bytes(header_bytes, len(sent_payload)), time.perf_counter())
    client.send_frames(frames)
    reply = client.receive(request_id)
    if link.bucket:
        link.bucket.pace(client.last_reply_bytes, time.perf_counter())
    delay.half()
    ended = time.perf_counter()
    after = link.counters()
    if not reply["ok"]:
        raise SplitbenchError(f"the server refused a request: {reply.get('error')}")
    server_s = float(reply["server_s"]["decode"]) + float(reply["server_s"]["tail"])
    figures = {
        "exchange_s": ended - began, "server_s": server_s,
        "server_decode_s": float(reply["server_s"]["decode"]), "server_tail_s": float(reply["server_s"]["tail"]),
        "framing_bytes": framing_bytes(header_bytes, len(sent_payload)),
        "reply_bytes": client.last_reply_bytes,
    }
    if before and after:
        figures |= {"wire_up_bytes": after[0] - before[0], "wire_down_bytes": after[1] - before[1]}
    return reply, figures


def measure_setups(zoo_model: ZooModel, setups: list[SplitSetup], pictures: list[tuple[Any, int]],
                   conditions: list[Condition], link: Link, preprocess: str, served: list[str], *,
                   server: str | None = None, keys: ClientKeys | None = None, server_cpus: set[int] | None = None,
                   with_plan: bool = False, edge_slowdown: float = 1.0) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Every setup's per-image rows over ``link`` (:func:`measure`), one bar per setup; and, ``with_plan``,
    ``plan``'s timing of each picture just before it crosses (:class:`~splitbench.link.plan.CostTimer`).

    ``served``: the ``splitbench serve`` arguments (model, weights, leaf modules) of a server
    started per cut on ``server_cpus``; ``server``: a running one (HOST:PORT, with ``keys``) instead.
    ``edge_slowdown``: the edge's measured head and encoder times count that many times (see :func:`measure`).
    Returns the rows of every setup and, ``with_plan``, plan's costs (one row per setup).
    """
    from splitbench.link.plan import CostTimer  # plan times with measure's helpers: imported here

    tables, costs = [], []
    with progress_bar(enabled=True, transient=False) as bar:
        for setup in setups:
            sender = Sender(zoo_model, setup, preprocess)
            # plan's own timing of each picture just before it crosses the link: the prediction's
            # compute terms come from the same seconds as the measurement (this VM's speed drifts)
            timer = None
            if with_plan:
                timer = CostTimer(zoo_model, setup, preprocess, server_cpus if server is None else None)
                timer.time(pictures[0][0], record=False)  # warm-up, as link's own first exchanges
            task = bar.add_task(setup.label, total=len(pictures) * (1 if setup.at == EDGE else len(conditions)))
            tables.append(_cross(zoo_model, sender, pictures, conditions, link, server, keys,
                                 [*served, *serve_arguments(setup), "--preprocess", preprocess], server_cpus,
                                 lambda task=task: bar.update(task, advance=1), timer.time if timer else None,
                                 edge_slowdown))
            if timer is not None:
                costs.append(pd.DataFrame([timer.row()]))
    return pd.concat(tables, ignore_index=True), pd.concat(costs, ignore_index=True) if costs else None


def _cross(zoo_model: ZooModel, sender: Sender, pictures: list[tuple[Any, int]], conditions: list[Condition],
           link: Link, server: str | None, keys: ClientKeys | None, server_arguments: list[str],
           server_cpus: set[int] | None, advance: Callable[[], None],
           before_image: Callable[[Any, int], None] | None, edge_slowdown: float = 1.0) -> pd.DataFrame:
    """One cut's per-image measurements over ``link``: edge alone, a running server, or one started for it."""
    setup = sender.setup
    if setup.at == EDGE:  # no network: one timing per image, reported under every condition
        return measure(sender, None, pictures, conditions, link, advance, before_image, edge_slowdown)
    expected = {"model": zoo_model.spec.name, "weights_sha256": zoo_model.weights.describe()["sha256"],
                **setup.describe(), "shape": list(sender.shape)}
    if server is not None:
        with LinkClient(server, keys=keys) as client:
            client.check(expected)
            return measure(sender, client, pictures, conditions, link, advance, before_image, edge_slowdown)
    with running_server(server_arguments, link.server_prefix, link.server_host, server_cpus) as (_, endpoint), \
            LinkClient(endpoint) as client:
        client.check(expected)
        return measure(sender, client, pictures, conditions, link, advance, before_image, edge_slowdown)


def measure(sender: Sender, client: LinkClient | None, pictures: list[tuple[Any, int]], conditions: list[Condition],
            link: Link, on_image: Callable[[], None] | None = None,
            before_image: Callable[[Any, int], None] | None = None, edge_slowdown: float = 1.0) -> pd.DataFrame:
    """Per-image rows for one setup under every condition (``client`` None for ``edge``).

    ``pictures``: the model's input pictures and labels (:func:`~splitbench.link.endpoints.model_pictures`).
    ``before_image(picture, index)`` runs just before each picture crosses the link (plan's timing).
    ``edge`` sends nothing, so no condition touches it: each picture is timed once and that row
    stands under every condition, so that every bandwidth and RTT compares edge with the rest.

    ``edge_slowdown`` K stands for a device K times slower than this machine, as plan's
    ``--edge-slowdown`` does: the edge's measured head and encoder times count K times in the
    row. One request is in flight at a time and nothing overlaps the edge's compute, so a
    slower device's time adds to the total as these products do; the transfer, the server's
    times and the answers stay measured.
    """
    rows = []
    # Untimed warm-up: the first calls pay for allocations, and the first exchange for the connection.
    if client is None:
        sender.local(pictures[0][0])
    else:
        for picture, _ in pictures[:2]:
            sent = sender.send(picture)
            exchange(client, sent.payload, sent.header, link, EndDelay())
    # Image by image, every condition in turn: a machine's slow minutes then fall on all
    # conditions alike instead of on whichever one ran during them.
    current = None
    for index, (picture, label) in enumerate(pictures):
        if before_image is not None:
            before_image(picture, index)
        if client is None:
            local = _one(sender, None, picture, label, index, conditions[0], link, EndDelay(), edge_slowdown)
            rows += [local | {"bandwidth_mbit": c.bandwidth_mbit, "rtt_ms": c.rtt_ms} for c in conditions]
            if on_image:
                on_image()
            continue
        for condition in conditions:
            if condition.bandwidth_mbit != current:
                link.set(condition)
                current = condition.bandwidth_mbit
            rows.append(_one(sender, client, picture, label, index, condition, link, EndDelay(condition.rtt_ms),
                             edge_slowdown))
            if on_image:
                on_image()
    return pd.DataFrame(rows).sort_values(["bandwidth_mbit", "rtt_ms", "image"], kind="stable", ignore_index=True)


def _one(sender: Sender, client: LinkClient | None, picture: Any, label: int, index: int, condition: Condition,
         link: Link, delay: EndDelay, edge_slowdown: float = 1.0) -> dict[str, Any]:
    row: dict[str, Any] = {"setup": sender.setup.label, "at": sender.setup.at, "codec": sender.setup.codec,
                           "bandwidth_mbit": condition.bandwidth_mbit, "rtt_ms": condition.rtt_ms,
                           "image": index, "label": label}
    if sender.setup.at == EDGE:  # the whole model and its answer (a detector's post-processing too) here
        answer, seconds = sender.local(picture)
        seconds *= edge_slowdown
        return row | sender.answers.row(answer, label) | {
            "payload_bytes": 0, "framing_bytes": 0, "reply_bytes": 0, "head_ms": seconds * 1e3, "encode_ms": 0.0,
            "transfer_ms": 0.0, "server_ms": 0.0, "server_decode_ms": 0.0, "server_tail_ms": 0.0,
            "total_ms": seconds * 1e3}
    sent = sender.send(picture, index)
    reply, figures = exchange(client, sent.payload, sent.header, link, delay)  # type: ignore[arg-type]
    transfer_s = figures["exchange_s"] - figures["server_s"]
    sent.head_s, sent.encode_s = sent.head_s * edge_slowdown, sent.encode_s * edge_slowdown
    row |= sender.answers.row(reply, label) | {
        "payload_bytes": len(sent.payload),
        "framing_bytes": figures["framing_bytes"], "reply_bytes": figures["reply_bytes"],
        "head_ms": sent.head_s * 1e3, "encode_ms": sent.encode_s * 1e3, "transfer_ms": transfer_s * 1e3,
        "server_ms": figures["server_s"] * 1e3, "server_decode_ms": figures["server_decode_s"] * 1e3,
        "server_tail_ms": figures["server_tail_s"] * 1e3,
        "total_ms": (sent.head_s + sent.encode_s + figures["exchange_s"]) * 1e3,
    }
    if "wire_up_bytes" in figures:
        row |= {"wire_up_bytes": figures["wire_up_bytes"], "wire_down_bytes": figures["wire_down_bytes"]}
    return row


def summarise(per_image: pd.DataFrame, answers: Answers | None = None) -> pd.DataFrame:
    """One row per setup and condition: accuracy (``answers``' figures: a classifier's top-1 by
    default, a detector's mAP, mAP@.5 and detections per image), mean bytes and mean stage times."""
    keys = ["setup", "at", "codec", "bandwidth_mbit", "rtt_ms"]
    columns = {"images": ("image", "count"),
               "payload_bytes": ("payload_bytes", "mean"), "framing_bytes": ("framing_bytes", "mean"),
               "reply_bytes": ("reply_bytes", "mean")}
    if "wire_up_bytes" in per_image:
        columns |= {"wire_up_bytes": ("wire_up_bytes", "mean"), "wire_down_bytes": ("wire_down_bytes", "mean")}
    for stage in (*STAGES, "server_decode_ms", "server_tail_ms", "total_ms"):
        columns[stage] = (stage, "mean")
    columns |= {"total_p50_ms": ("total_ms", "median"), "total_p99_ms": ("total_ms", lambda t: float(np.percentile(t, 99)))}
    groups = per_image.groupby(keys, sort=False, dropna=False)
    table = groups.agg(**columns).reset_index()
    figures = pd.DataFrame([(answers or ClassificationAnswers()).figures(group) for _, group in groups],
                           index=table.index)
    at = table.columns.get_loc("images") + 1
    table = pd.concat([table.iloc[:, :at], figures, table.iloc[:, at:]], axis=1)
    return table.round({c: 3 for c in table.columns if c.endswith("_ms")} | {c: 1 for c in table.columns if c.endswith("_bytes")})


def split_cores() -> tuple[set[int], set[int]]:
    """The edge's and the server's CPUs: two halves of the usable ones.

    On one machine the two sides would otherwise compete for the same cores (OpenMP threads
    spin for milliseconds after each parallel region), which two machines never do.
    """
    cpus = sorted(os.sched_getaffinity(0))
    half = max(1, len(cpus) // 2)
    return set(cpus[:half]), set(cpus[half:] or cpus)


@contextmanager
def on_cores(cpus: set[int]) -> Iterator[None]:
    """This thread on ``cpus`` and torch on as many threads, restored afterwards."""
    before, threads = os.sched_getaffinity(0), torch.get_num_threads()
    os.sched_setaffinity(0, cpus)
    torch.set_num_threads(len(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)
        torch.set_num_threads(threads)


@contextmanager
def running_server(arguments: list[str], prefix: list[str], host: str,
                   cpus: set[int] | None = None) -> Iterator[tuple[subprocess.Popen, str]]:
    """``splitbench serve ARGUMENTS`` in a child process (inside ``prefix``, e.g. a namespace) on ``cpus``."""
    command = [*prefix, sys.executable, "-m", "splitbench", "serve", *arguments, "--host", host, "--port", "0"]
    if not is_loopback(host):  # the namespace's veth address: only this machine reaches it
        command.append("--insecure-bind")
    if cpus:
        command += ["--threads", str(len(cpus))]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    try:
        yield process, _endpoint_of(process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _endpoint_of(process: subprocess.Popen) -> str:
    """The ``listening on tcp://…`` line the server prints once it takes requests."""
    found: list[str] = []

    def read() -> None:  # and go on reading, so that the child never blocks on a full pipe
        for line in process.stdout:  # type: ignore[union-attr]
            if line.startswith("listening on ") and not found:
                found.append(line.split()[2])
                ready.set()
        ready.set()

    ready = threading.Event()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(SERVER_START_S)
    if not found:
        process.kill()
        error = (process.stderr.read() if process.stderr else "").strip().splitlines()  # type: ignore[union-attr]
        raise SplitbenchError(f"the server did not start: {error[-1] if error else 'no output'}")
    return found[0]
