"""A link with a chosen bandwidth and round-trip time, built from real parts where possible.

``NetnsLink`` makes a network namespace joined to this one by a veth pair and shapes both
directions with the kernel's token-bucket filter (``tc qdisc … tbf``); the server runs inside
the namespace and the edge talks to it over the veth, so every byte crosses a real shaped
interface and its count can be read from the interface. It needs root, ``ip`` and ``tc``.

Where that is not possible, ``TokenBucket`` paces the edge's sends and receives at the same
rate in the application (loopback then adds almost nothing). Neither kernel path here has
``netem``, so a round-trip time is added at the ends: the edge waits RTT/2 before each request
leaves and RTT/2 after each reply arrives (``EndDelay``), which is what a propagation delay
does to one request-reply exchange but not to TCP's own round trips (acknowledgements see
the link without delay). Results name the shaper and the delay that ran.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from splitbench.errors import SplitbenchError

MTU_FRAME = 1514  # bytes of a full Ethernet frame on the veth (1500 IP + 14)
TCP_PAYLOAD = 1448  # bytes of payload in such a frame: 1500 − 20 IP − 32 TCP (with timestamps)
PEAK_OVER_RATE = 1.01  # tbf's second bucket: even a full first bucket leaves at (almost) the rate
TBF_QUEUE_BYTES = 8 << 20  # a queue that never drops one request (drops would add TCP retransmits)


def wire_bytes(payload: int) -> int:
    """Ethernet bytes that carry ``payload`` bytes of one TCP stream in full frames (the model's link cost)."""
    frames = max(1, -(-payload // TCP_PAYLOAD))
    return payload + frames * (MTU_FRAME - TCP_PAYLOAD)


def transfer_s(payload: int, bandwidth_mbit: float | None, head_start: int = 0) -> float:
    """Seconds ``payload`` bytes take on the wire at ``bandwidth_mbit`` (0 for an unshaped link).

    ``head_start``: bytes a shaper lets through at once from a full bucket (tbf: one frame,
    measured in ``reports/link/transfer.md``); a physical link has none.
    """
    if not bandwidth_mbit:
        return 0.0
    return max(wire_bytes(payload) - head_start, 0) * 8 / (bandwidth_mbit * 1e6)


@dataclass
class EndDelay:
    """A round-trip time added at the ends: RTT/2 before a request leaves, RTT/2 after its reply."""

    rtt_ms: float = 0.0
    by: str = "end delay (no netem)"

    def half(self) -> None:
        if self.rtt_ms > 0:
            time.sleep(self.rtt_ms / 2000)


class TokenBucket:
    """Application-level pacing at ``bandwidth_mbit``, with a one-frame burst, for both directions."""

    name = "app token bucket"
    head_start = 0

    def __init__(self, bandwidth_mbit: float | None = None) -> None:
        self.bandwidth_mbit = bandwidth_mbit

    def set_rate(self, bandwidth_mbit: float | None) -> None:
        self.bandwidth_mbit = bandwidth_mbit

    def pace(self, payload: int, began: float) -> None:
        """Hold until ``payload`` bytes, started at ``began``, would have crossed the link."""
        remaining = began + transfer_s(payload, self.bandwidth_mbit) - time.perf_counter()
        if remaining > 0:
            time.sleep(remaining)


def netns_possible() -> str | None:
    """None where a namespace with a shaped veth pair can be made here, else the reason why not."""
    if os.geteuid() != 0:
        return "not root"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found"
    return None


class NetnsLink:
    """A namespace ``sb-PID`` behind a tbf-shaped veth pair; removed on exit, even after an error."""

    name = "tbf on a veth pair (netns)"
    # tbf needs a bucket of at least one frame, and a full bucket (an idle link) sends that
    # frame at once: each message arrives one frame's time earlier than on a wire of this rate.
    head_start = MTU_FRAME

    def __init__(self) -> None:
        pid = os.getpid()
        self.namespace = f"sb-{pid}"
        self.host_dev, self.peer_dev = f"sbh{pid}"[:15], f"sbp{pid}"[:15]
        subnet = f"10.{200 + pid % 50}.{(pid // 50) % 250}"
        self.host_ip, self.server_ip = f"{subnet}.1", f"{subnet}.2"
        self.bandwidth_mbit: float | None = None

    def __enter__(self) -> NetnsLink:
        reason = netns_possible()
        if reason:
            raise SplitbenchError(f"cannot shape a link with a network namespace: {reason}")
        self._remove()  # a namespace left by a killed run with the same pid
        try:
            for command in (
                ["ip", "netns", "add", self.namespace],
                ["ip", "link", "add", self.host_dev, "type", "veth", "peer", "name", self.peer_dev],
                ["ip", "link", "set", self.peer_dev, "netns", self.namespace],
                ["ip", "addr", "add", f"{self.host_ip}/24", "dev", self.host_dev],
                ["ip", "link", "set", self.host_dev, "up"],
                [*self.inside, "ip", "addr", "add", f"{self.server_ip}/24", "dev", self.peer_dev],
                [*self.inside, "ip", "link", "set", self.peer_dev, "up"],
                [*self.inside, "ip", "link", "set", "lo", "up"],
            ):
                _run(command)
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self._remove()

    @property
    def inside(self) -> list[str]:
        """The command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.namespace]

    def set_rate(self, bandwidth_mbit: float | None) -> None:
        """Shape both directions to ``bandwidth_mbit`` (None: unshaped)."""
        for prefix, dev in (([], self.host_dev), (self.inside, self.peer_dev)):
            subprocess.run([*prefix, "tc", "qdisc", "del", "dev", dev, "root"], capture_output=True)
            if bandwidth_mbit:
                rate = int(bandwidth_mbit * 1e6)
                # A second bucket of one frame at just above the rate (peakrate, mtu) spaces the
                # frames evenly: without it, the whole first bucket (two frames) leaves at once.
                _run([*prefix, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{rate}bit",
                      "burst", str(MTU_FRAME * 2), "limit", str(TBF_QUEUE_BYTES),
                      "peakrate", f"{int(rate * PEAK_OVER_RATE)}bit", "mtu", str(MTU_FRAME)])
        self.bandwidth_mbit = bandwidth_mbit

    def counters(self) -> tuple[int, int]:
        """Bytes the edge's interface has sent and received (Ethernet frames)."""
        folder = Path("/sys/class/net") / self.host_dev / "statistics"
        return int((folder / "tx_bytes").read_text()), int((folder / "rx_bytes").read_text())

    def _remove(self) -> None:
        subprocess.run(["ip", "netns", "del", self.namespace], capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_dev], capture_output=True)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise SplitbenchError(f"{' '.join(command)} failed: {detail[0] if detail else done.returncode}")
