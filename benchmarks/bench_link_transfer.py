"""How exactly does the shaped link keep its bandwidth and RTT? (issue 16: within 10 % for ≥ 10 kB)

A real ``splitbench serve`` runs inside a network namespace behind a tbf-shaped veth pair
(needs root). The edge sends ``info`` requests whose payload frame carries N bytes (the server
ignores an info payload, so the exchange holds no compute) and times request → reply. The
prediction is the bytes on the wire (request, ZeroMQ framing, TCP/IP/Ethernet frames, and the
reply) over the bandwidth, plus the RTT. The transport's own cost (ZeroMQ, JSON, two context
switches) is measured on the unshaped veth and listed, not hidden.

Run on an otherwise idle machine:  python benchmarks/bench_link_transfer.py [--out reports/link]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pandas as pd

from splitbench.link.client import LinkClient
from splitbench.link.measure import running_server, split_cores
from splitbench.link.protocol import framing_bytes, reply_frames, zmtp_frame_bytes
from splitbench.link.shaping import EndDelay, NetnsLink, transfer_s, wire_bytes
from splitbench.results import markdown_table, write_csv, write_text

SIZES = (10_000, 30_000, 100_000, 1_000_000)
BANDWIDTHS = (1.0, 10.0, 100.0)
RTTS = (0.0, 20.0)
REPEATS = 7
IDLE_S = 0.05  # between exchanges, as the edge computes between messages: tbf's bucket refills


def exchange_s(client: LinkClient, payload: bytes, delay: EndDelay) -> tuple[float, int]:
    time.sleep(IDLE_S)
    began = time.perf_counter()
    delay.half()
    request_id, header = client.send("info", payload)
    reply = client.receive(request_id)
    delay.half()
    del reply
    return time.perf_counter() - began, framing_bytes(header, len(payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/link"))
    args = parser.parse_args()
    rows = []
    _, server_cpus = split_cores()
    with NetnsLink() as link, running_server(["cifar_resnet20", "--weights", "none", "--at", "layer2"], link.inside,
                                             link.server_ip, server_cpus) as (_, endpoint), \
            LinkClient(endpoint) as client:
        info = client.info()
        frame = reply_frames(info["id"], **{k: v for k, v in info.items() if k not in ("v", "id")})[0]
        reply_bytes = len(frame) + zmtp_frame_bytes(len(frame))
        link.set_rate(None)
        overhead = {size: statistics.median(exchange_s(client, b"\0" * size, EndDelay())[0] for _ in range(REPEATS))
                    for size in SIZES}
        for bandwidth in BANDWIDTHS:
            link.set_rate(bandwidth)
            for rtt in RTTS:
                for size in SIZES:
                    if bandwidth == 1.0 and size == 1_000_000:
                        continue  # 8.4 s per exchange: the 100 kB rows say the same
                    samples, framing = [], 0
                    for _ in range(REPEATS):
                        seconds, framing = exchange_s(client, b"\0" * size, EndDelay(rtt))
                        samples.append(seconds)
                    measured = statistics.median(samples) * 1e3
                    wire = transfer_s(size + framing, bandwidth) + transfer_s(reply_bytes, bandwidth)
                    shaped = (transfer_s(size + framing, bandwidth, link.head_start)
                              + transfer_s(reply_bytes, bandwidth, link.head_start))
                    rows.append({
                        "bandwidth_mbit": bandwidth, "rtt_ms": rtt, "payload_bytes": size,
                        "wire_bytes": wire_bytes(size + framing) + wire_bytes(reply_bytes),
                        "measured_ms": round(measured, 3),
                        "bytes_over_bandwidth_plus_rtt_ms": round(wire * 1e3 + rtt, 3),
                        "error_percent": round(100 * (measured - (wire * 1e3 + rtt)) / (wire * 1e3 + rtt), 1),
                        "with_tbf_head_start_ms": round(shaped * 1e3 + rtt + overhead[size] * 1e3, 3),
                        "error_with_head_start_percent": round(
                            100 * (measured - (shaped * 1e3 + rtt + overhead[size] * 1e3))
                            / (shaped * 1e3 + rtt + overhead[size] * 1e3), 1),
                        "unshaped_overhead_ms": round(overhead[size] * 1e3, 3),
                    })
                    print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "transfer.csv", table)
    big = table[table["payload_bytes"] >= 10_000]
    write_text(args.out / "transfer.md", "\n".join([
        "# Transfer time on the shaped link\n",
        f"`python benchmarks/bench_link_transfer.py`, measured {time.strftime('%Y-%m-%d')} on an otherwise idle "
        f"2-core machine: tbf on a veth pair into a network namespace, RTT as a delay at the ends (no netem "
        f"here), median of {REPEATS} exchanges of `info` requests carrying the payload (no compute), "
        f"{IDLE_S * 1e3:g} ms apart (the edge computes between messages, so tbf's bucket is full when one starts).\n",
        f"- `bytes_over_bandwidth_plus_rtt_ms`: Ethernet bytes of request and reply over the bandwidth, plus "
        f"the RTT. Largest error for ≥ 10 kB: {big['error_percent'].abs().max():.1f} %.",
        f"- `with_tbf_head_start_ms`: the same, minus tbf's one-frame head start (a full bucket sends its first "
        f"1514 B at once; a wire would not), plus the transport's own time measured unshaped. Largest error: "
        f"{big['error_with_head_start_percent'].abs().max():.1f} %. This is the model `plan --head-start tbf` uses.\n",
        markdown_table(table), "",
    ]))
    print(f"wrote {args.out / 'transfer.csv'}, {args.out / 'transfer.md'}")


if __name__ == "__main__":
    main()
