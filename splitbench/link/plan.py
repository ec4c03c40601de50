"""``splitbench plan``: predicted end-to-end latency of every cut over a link, and the best cut.

The model is Neurosurgeon's, with each term measured rather than regressed:

    total = slowdown × (head + encode)  +  wire(request) / bandwidth  +  wire(reply) / bandwidth
            + RTT  +  server decode + tail

``head`` is the edge's time up to the cut (the prefix sum a per-layer profile gives, but timed
as one piece so that per-layer timing errors do not add up), ``encode`` the codec's, both on
this machine times ``slowdown``, or read from a ``times.csv`` that ``plan`` wrote on the real
edge device. Bytes are the payload the sender produces on real images, the request header and
ZeroMQ's framing, and TCP/IP/Ethernet's per-frame cost (:func:`~splitbench.link.shaping.wire_bytes`).
"""

from __future__ import annotations

from contextlib import nullcontext

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from splitbench.errors import SplitbenchError
from splitbench.link.endpoints import EDGE, Receiver, Sender, SplitSetup
from splitbench.link.measure import on_cores
from splitbench.link.protocol import Request, encode_header, framing_bytes, reply_frames, zmtp_frame_bytes
from splitbench.link.shaping import transfer_s
from splitbench.results import plain_log_ticks, save_figure
from splitbench.timing import Timing
from splitbench.zoo import ZooModel

TIME_COLUMNS = ("head_ms", "encode_ms", "decode_ms", "tail_ms")
# Each time's spread over the timed pictures (10th and 90th percentile), after the existing columns of times.csv.
SPREAD_COLUMNS = tuple(f"{name}_{q}" for name in TIME_COLUMNS for q in ("p10", "p90"))


def measure_costs(model: ZooModel, setups: Iterable[SplitSetup], pictures: list[Any], repeats: int = 1,
                  preprocess: str = "seed", on_setup: Callable[[], None] | None = None,
                  server_cpus: set[int] | None = None) -> pd.DataFrame:
    """Per setup: mean edge and server times (ms) and bytes over ``pictures``, run here without a link
    (see :class:`CostTimer`; ``server_cpus``: where ``link`` would start the server)."""
    rows = []
    for setup in setups:
        rows.append(_costs(model, setup, pictures, repeats, preprocess, server_cpus))
        if on_setup:
            on_setup()
    return pd.DataFrame(rows)


class CostTimer:
    """plan's timing of one setup, one picture at a time, here and without a link.

    ``plan`` runs every picture through it; ``link --plan`` times each picture just before that
    picture crosses the link, so the prediction's compute terms come from the same seconds as
    the measurement. The edge's half runs where the caller runs; the server's half (decode and
    tail) on ``server_cpus`` when given, where ``link`` starts the server.
    """

    def __init__(self, model: ZooModel, setup: SplitSetup, preprocess: str = "seed",
                 server_cpus: set[int] | None = None) -> None:
        self.setup, self.server_cpus = setup, server_cpus
        self.sender = Sender(model, setup, preprocess)
        self.receiver = Receiver(model, setup, preprocess) if setup.at != EDGE else None
        self.times: dict[str, list[float]] = {name: [] for name in TIME_COLUMNS}
        self.payloads: list[int] = []
        self.framings: list[int] = []
        self.replies: list[int] = []  # a detector's replies grow with what it finds: their mean
        self.answers: list[dict[str, Any]] = []  # each recorded picture's answer, as link's server replies it

    @property
    def reply_bytes(self) -> int:
        return round(float(np.mean(self.replies))) if self.replies else 0

    def time(self, picture: Any, index: int = 0, *, record: bool = True) -> None:
        """One picture through both halves (``record=False``: a warm-up, not counted)."""
        if self.receiver is None:
            answer, seconds = self.sender.local(picture)
            if record:
                self.times["head_ms"].append(seconds * 1e3)
                self.answers.append(answer)
            return
        sent = self.sender.send(picture, index)
        with on_cores(self.server_cpus) if self.server_cpus else nullcontext():
            size = sent.header.get("image_size")  # a detector's: the original image's
            answer = self.receiver.answer(Request("infer", "plan", sent.header["input"], sent.header["codec"],
                                                  tuple(sent.header["shape"]), sent.payload,
                                                  tuple(size) if size else None))
        if not record:
            return
        self.answers.append({k: v for k, v in answer.items() if k != "server_s"})
        for name, seconds in (("head_ms", sent.head_s), ("encode_ms", sent.encode_s),
                              ("decode_ms", answer["server_s"]["decode"]), ("tail_ms", answer["server_s"]["tail"])):
            self.times[name].append(seconds * 1e3)
        self.payloads.append(len(sent.payload))
        header = encode_header({"op": "infer", "id": "0000000-00000000000-0", **sent.header})
        self.framings.append(framing_bytes(header, len(sent.payload)))
        reply = reply_frames("0000000-00000000000-0", ok=True, **answer)[0]
        self.replies.append(len(reply) + zmtp_frame_bytes(len(reply)))

    def row(self) -> dict[str, Any]:
        """The setup's mean times (ms) and bytes over the recorded pictures; then each time's
        10th and 90th percentile (``head_ms_p10`` …) and how many pictures were timed (``timed_runs``)."""
        return _row(self.setup, self.sender, self.times, self.payloads or [0], self.framings or [0], self.reply_bytes)


def _costs(model: ZooModel, setup: SplitSetup, pictures: list[Any], repeats: int,
           preprocess: str, server_cpus: set[int] | None = None) -> dict[str, Any]:
    timer = CostTimer(model, setup, preprocess, server_cpus)
    for attempt in range(repeats + 1):  # the first pass warms up and is not counted
        for index, picture in enumerate(pictures):
            timer.time(picture, index, record=attempt > 0)
    return timer.row()


def _row(setup: SplitSetup, sender: Sender, times: dict[str, list[float]], payloads: list[int],
         framings: list[int], reply_bytes: int) -> dict[str, Any]:
    return {"setup": setup.label, "at": setup.at, "codec": setup.codec,
            "elements": int(np.prod(sender.shape)) if setup.at != EDGE else 0,
            **{name: round(float(np.mean(values)), 3) if values else 0.0 for name, values in times.items()},
            "payload_bytes": round(float(np.mean(payloads)), 1), "framing_bytes": round(float(np.mean(framings)), 1),
            "reply_bytes": reply_bytes,
            **_spread(times), "timed_runs": len(times["head_ms"])}


def _spread(times: dict[str, list[float]]) -> dict[str, float]:
    """``name_p10`` and ``name_p90`` per time (0.0 where nothing was timed, as its mean)."""
    spread = {}
    for name, values in times.items():
        timing = Timing.of(values, 3) if values else None
        spread[f"{name}_p10"], spread[f"{name}_p90"] = (timing.p10_ms, timing.p90_ms) if timing else (0.0, 0.0)
    return spread


@dataclass(frozen=True)
class LinkModel:
    """What the prediction assumes about the edge and the link."""

    slowdown: float = 1.0  # edge time = this machine's × slowdown
    head_start: int = 0  # bytes a shaper passes at once (tbf: one frame); a wire has none
    overhead_ms: float = 0.0  # the transport's own time per exchange (ZeroMQ, JSON, two context switches)


def transport_overhead_ms(receiver: Receiver, exchanges: int = 30) -> float:
    """Median time of an ``info`` exchange with a server on loopback: what a request costs besides bytes and compute."""
    import threading

    from splitbench.link.client import LinkClient
    from splitbench.link.server import SplitServer

    server = SplitServer(receiver, None, port=0)
    thread = threading.Thread(target=server.serve, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        with LinkClient(server.endpoint, timeout_s=10) as client:
            client.info()
            samples = []
            for _ in range(exchanges):
                began = time.perf_counter()
                client.info()
                samples.append(time.perf_counter() - began)
    finally:
        server.stop()
        thread.join(10)
    return Timing.of([1e3 * sample for sample in samples]).median_ms


def predict(costs: pd.DataFrame, bandwidths: Iterable[float], rtts: Iterable[float],
            link: LinkModel = LinkModel()) -> pd.DataFrame:
    """Predicted stage times for every setup at every bandwidth (Mbit/s) and RTT (ms)."""
    rows = []
    for bandwidth in bandwidths:
        for rtt in rtts:
            for cost in costs.itertuples():
                rows.append(_predicted(cost, bandwidth, rtt, link))
    table = pd.DataFrame(rows)
    best = table.groupby(["bandwidth_mbit", "rtt_ms"])["total_ms"].transform("min")
    table["best"] = table["total_ms"] == best
    return table


def _predicted(cost: Any, bandwidth: float, rtt: float, link: LinkModel) -> dict[str, Any]:
    edge = cost.at == EDGE
    up = 0.0 if edge else transfer_s(int(cost.payload_bytes + cost.framing_bytes), bandwidth, link.head_start)
    down = 0.0 if edge else transfer_s(int(cost.reply_bytes), bandwidth, link.head_start)
    stages = {"head_ms": link.slowdown * cost.head_ms, "encode_ms": link.slowdown * cost.encode_ms,
              "transfer_ms": 0.0 if edge else (up + down) * 1e3 + rtt + link.overhead_ms, "server_ms": cost.decode_ms + cost.tail_ms}
    return {"setup": cost.setup, "at": cost.at, "bandwidth_mbit": bandwidth, "rtt_ms": rtt,
            **{k: round(v, 3) for k, v in stages.items()}, "total_ms": round(sum(stages.values()), 3)}


def best_cuts(predictions: pd.DataFrame) -> pd.DataFrame:
    """The best setup at each bandwidth and RTT, with the runner-up's margin."""
    rows = []
    for (bandwidth, rtt), group in predictions.groupby(["bandwidth_mbit", "rtt_ms"], sort=True):
        ranked = group.sort_values("total_ms")
        first, second = ranked.iloc[0], ranked.iloc[1] if len(ranked) > 1 else ranked.iloc[0]
        rows.append({"bandwidth_mbit": bandwidth, "rtt_ms": rtt, "best": first["setup"],
                     "total_ms": first["total_ms"], "runner_up": second["setup"],
                     "margin_percent": round(100 * (second["total_ms"] - first["total_ms"]) / first["total_ms"], 1)})
    return pd.DataFrame(rows)


def switch_points(costs: pd.DataFrame, rtt: float, link: LinkModel, low: float = 0.1, high: float = 1000.0,
                  steps: int = 400) -> tuple[np.ndarray, pd.DataFrame, list[tuple[float, str]]]:
    """Latency against bandwidth on a log grid, and where the best setup changes."""
    grid = np.logspace(np.log10(low), np.log10(high), steps)
    curves = predict(costs, grid, [rtt], link)
    best = curves[curves["best"]].drop_duplicates("bandwidth_mbit").sort_values("bandwidth_mbit")
    switches = [(float(b), s) for b, s, previous in zip(best["bandwidth_mbit"], best["setup"], best["setup"].shift())
                if s != previous]
    return grid, curves, switches


# link's accuracy columns: a classifier's top-1, a detector's mAP and mAP@.5 (percent)
ACCURACY_COLUMNS = ("top1", "map", "map50")


def validate(costs: pd.DataFrame, measured: pd.DataFrame, link: LinkModel) -> pd.DataFrame:
    """``plan``'s prediction beside ``link``'s measurement for every setup and condition measured,
    with the accuracy that link measured there (``top1``, or a detector's ``map`` and ``map50``)."""
    accuracy = [c for c in ACCURACY_COLUMNS if c in measured.columns]
    rows = []
    for row in measured.itertuples():
        cost = costs[costs["setup"] == row.setup]
        if cost.empty:
            raise SplitbenchError(f"the link results hold setup {row.setup}, which this plan did not measure; "
                                  f"plan with the same --at and --codec")
        bandwidth = None if pd.isna(row.bandwidth_mbit) else float(row.bandwidth_mbit)
        predicted = _predicted(next(cost.itertuples()), bandwidth, float(row.rtt_ms), link)  # type: ignore[arg-type]
        rows.append({"setup": row.setup, "bandwidth_mbit": bandwidth, "rtt_ms": row.rtt_ms,
                     "predicted_ms": predicted["total_ms"], "measured_ms": round(float(row.total_ms), 3),
                     "error_percent": round(100 * (predicted["total_ms"] - row.total_ms) / row.total_ms, 1),
                     "predicted_transfer_ms": predicted["transfer_ms"], "measured_transfer_ms": round(row.transfer_ms, 3),
                     **{name: getattr(row, name) for name in accuracy}})
    table = pd.DataFrame(rows)
    table.attrs["best"] = best_agreement(table)
    return table


def best_agreement(validation: pd.DataFrame) -> pd.DataFrame:
    """Per condition: the predicted and the measured best setup, and the regret of following the plan.

    The regret (Neurosurgeon's figure of merit) is how much slower the planned setup measured than
    the measured best. ``edge`` sends nothing, so it competes at every condition: with its row for
    that condition, or else with its one row measured without a link (as ``link`` wrote it before
    edge stood under every condition; its latency is the same at any bandwidth and RTT).
    """
    is_edge = validation["setup"] == EDGE
    edge, served = validation[is_edge], validation[~is_edge]
    agree = []
    for (bandwidth, rtt), group in served.groupby(["bandwidth_mbit", "rtt_ms"], dropna=False):
        candidates = pd.concat([group, edge_row_at(edge, bandwidth, rtt)])
        chosen = candidates.loc[candidates["predicted_ms"].idxmin()]
        best = candidates.loc[candidates["measured_ms"].idxmin()]
        agree.append({"bandwidth_mbit": bandwidth, "rtt_ms": rtt, "predicted_best": chosen["setup"],
                      "measured_best": best["setup"],
                      "regret_percent": round(100 * (chosen["measured_ms"] - best["measured_ms"]) / best["measured_ms"], 1)})
    return pd.DataFrame(agree)


def edge_row_at(edge: pd.DataFrame, bandwidth: float, rtt: float) -> pd.DataFrame:
    """Edge's row for this condition, or its row measured without a link, or nothing (no edge measured)."""
    same_bandwidth = edge["bandwidth_mbit"].isna() if pd.isna(bandwidth) else edge["bandwidth_mbit"] == bandwidth
    here = edge[same_bandwidth & (edge["rtt_ms"] == rtt)]
    return here if not here.empty else edge[edge["bandwidth_mbit"].isna()].head(1)


def plot_plan(path: Path, costs: pd.DataFrame, rtt: float, link: LinkModel, model: str,
              measured: pd.DataFrame | None = None) -> Path:
    """Neurosurgeon's figure: latency against bandwidth per cut, the optimum and its switch points."""
    grid, curves, switches = switch_points(costs, rtt, link)
    best_setups = set(curves.loc[curves["best"], "setup"])

    def draw(axes) -> None:  # type: ignore[no-untyped-def]
        for setup, curve in curves.groupby("setup", sort=False):
            emphasised = setup in best_setups
            axes.plot(curve["bandwidth_mbit"], curve["total_ms"], lw=1.6 if emphasised else 0.6,
                      alpha=1.0 if emphasised else 0.35, color=None if emphasised else "grey",
                      label=setup if emphasised else None)
        envelope = curves[curves["best"]].drop_duplicates("bandwidth_mbit")
        axes.plot(envelope["bandwidth_mbit"], envelope["total_ms"], color="black", lw=2.6, ls=":", label="best cut")
        for bandwidth, setup in switches[1:]:
            axes.axvline(bandwidth, color="black", lw=0.8, ls="--")
            axes.annotate(f"{bandwidth:.3g} Mbit/s → {setup}", (bandwidth, float(envelope["total_ms"].max())),
                          rotation=90, fontsize=7, va="top", ha="right")
        if measured is not None:
            shown = measured[measured["rtt_ms"] == rtt].dropna(subset=["bandwidth_mbit"])
            axes.scatter(shown["bandwidth_mbit"], shown["total_ms"], marker="x", color="red", zorder=5,
                         label="measured (link)")
        axes.set_xscale("log")
        axes.set_yscale("log")
        plain_log_ticks(axes.xaxis)
        plain_log_ticks(axes.yaxis)
        axes.set_xlabel("bandwidth (Mbit/s)")
        axes.set_ylabel("end-to-end latency per image (ms)")
        axes.set_title(f"{model}: predicted latency per cut, RTT {rtt:g} ms (grey: never best)")
        axes.legend(fontsize=7, loc="upper right")

    return save_figure(path, draw, size=(10, 6))

