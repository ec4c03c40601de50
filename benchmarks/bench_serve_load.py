"""Load on ``splitbench serve`` over loopback: N concurrent clients, then 1000 malformed messages.

The server holds MobileNetV2's tail at bottleneck6 with the BPG decoder (shared weights); each
client sends the same real request (image 0's features, BPG QP 35) ``--requests`` times with its
own request ids and checks that every reply carries its id and the single-client answer.
Throughput is replies per second over the whole run; p50/p99 are per-request latencies.
Bounded: at most 16 clients and 16 × ``--requests`` requests per level, loopback only.

Run on an otherwise idle machine:  python benchmarks/bench_serve_load.py [--out reports/link]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import zmq

from splitbench.data import open_dataset
from splitbench.link.client import LinkClient
from splitbench.link.endpoints import Sender, SplitSetup
from splitbench.link.measure import running_server
from splitbench.results import markdown_table, write_csv, write_text
from splitbench.zoo import load_model

CLIENTS = (1, 2, 4, 8, 16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="../shared/weights/mobilenet_v2-imagenet-int8dequant.pth")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--requests", type=int, default=8, help="per client and level")
    parser.add_argument("--workers", type=int, default=2, help="server threads")
    parser.add_argument("--out", type=Path, default=Path("reports/link"))
    args = parser.parse_args()
    model = load_model("mobilenet_v2", weights=args.weights)
    setup = SplitSetup("features.6", "bpg", 35, "gray", 8, (("chroma", "420"), ("backend", "pyav")))
    sender = Sender(model, setup)
    image, _ = open_dataset("imagenet-val-1300", root=args.data, limit=1)[0]
    sent = sender.send(sender.picture(image))
    server_args = ["mobilenet_v2", "--weights", args.weights, "--at", "bottleneck6", "--codec", "bpg", "--qp", "35",
                   "--layout", "gray", "--workers", str(args.workers)]
    rows = []
    with running_server(server_args, [], "127.0.0.1") as (process, endpoint):
        with LinkClient(endpoint) as client:
            expected = client.request("infer", sent.payload, **sent.header)["top5"]
        for clients in CLIENTS:
            rows.append(_level(endpoint, clients, args.requests, sent, expected))
            print(rows[-1], flush=True)
        malformed = _malformed(endpoint, sent)
        with LinkClient(endpoint) as client:
            after = client.request("infer", sent.payload, **sent.header)["top5"] == expected
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "load.csv", table)
    write_text(args.out / "load.md", "\n".join([
        "# `splitbench serve` under load\n",
        f"`python benchmarks/bench_serve_load.py`, measured {time.strftime('%Y-%m-%d')} on an otherwise idle "
        f"2-core machine, server and clients on loopback; {args.workers} server threads. Each request is image "
        f"0's MobileNetV2 bottleneck6 features as BPG QP 35 ({len(sent.payload)} B); the server decodes it and "
        f"runs the tail.\n",
        markdown_table(table), "",
        f"Then {malformed['sent']} malformed messages (bad JSON, wrong frame counts, wrong shapes, random "
        f"bitstreams, the wrong codec): {malformed['error_replies']} error replies, "
        f"{malformed['ok_replies']} successes, in {malformed['seconds']:.1f} s. A good client afterwards was "
        f"{'served correctly' if after else 'NOT served correctly'}.\n",
    ]))
    print(f"malformed: {malformed}; good client after: {after}")


def _level(endpoint: str, clients: int, requests: int, sent, expected) -> dict:
    latencies: list[float] = []
    wrong = lost = 0
    lock = threading.Lock()

    def run() -> None:
        nonlocal wrong, lost
        with LinkClient(endpoint, timeout_s=120) as client:
            for _ in range(requests):
                began = time.perf_counter()
                try:
                    top5 = client.request("infer", sent.payload, **sent.header)["top5"]
                except Exception:
                    with lock:
                        lost += 1
                    continue
                with lock:
                    latencies.append(time.perf_counter() - began)
                    wrong += top5 != expected

    threads = [threading.Thread(target=run) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - began
    return {"clients": clients, "requests": clients * requests, "answered": len(latencies), "lost": lost,
            "wrong": wrong, "throughput_per_s": round(len(latencies) / seconds, 2),
            "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 1),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 1)}


def _malformed(endpoint: str, sent) -> dict:
    header = {"v": 1, "op": "infer", "id": "bad", **sent.header}
    kinds = [
        [b"not json", b""], [b"{}"], [b"{}", b"", b""],
        [json.dumps({**header, "shape": [3, 3, 3]}).encode(), sent.payload],
        [json.dumps(header).encode(), b"\0" * 8 + np.random.default_rng(0).bytes(500)],
        [json.dumps({**header, "codec": "none"}).encode(), sent.payload],
    ]
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    began = time.perf_counter()
    for n in range(1000):
        socket.send_multipart(kinds[n % len(kinds)])
    replies = []
    while len(replies) < 1000 and socket.poll(10_000):
        replies.append(json.loads(socket.recv_multipart()[0]))
    socket.close()
    return {"sent": 1000, "error_replies": sum(not r["ok"] for r in replies),
            "ok_replies": sum(r["ok"] for r in replies), "seconds": time.perf_counter() - began}


if __name__ == "__main__":
    main()
