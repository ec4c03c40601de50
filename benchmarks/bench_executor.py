"""The Ray executor's overhead against the local process pool (issue 17 target: ≤ 10 %).

The same codec sweep twice: MobileNetV2 at bottleneck6 (shared weights), all 1300 images of
imagenet-val-1300, BPG at its 6 default QPs in the gray layout, 2 workers; once with
``--executor local``, once with ``--executor ray`` (a local Ray cluster with 2 CPUs, started
and stopped by the sweep, its start-up included). Each run has its own cache, so each computes
the head features and codes every point. The rows must be identical.

Run on an otherwise idle machine:  python benchmarks/bench_executor.py [--out reports/executors]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from splitbench.results import markdown_table, write_csv, write_text

ROWS = ["codec", "param", "layout", "images", "feature_bytes", "top1", "top5"]


def run(executor: str, weights: str, data: str, limit: int, folder: Path) -> tuple[float, pd.DataFrame]:
    command = [sys.executable, "-m", "splitbench", "codec", "mobilenet_v2", "--weights", weights, "--data", data,
               "--dataset", "imagenet-val-1300", "--at", "bottleneck6", "--codec", "bpg", "--layout", "gray",
               "--limit", str(limit), "--workers", "2", "--executor", executor,
               "--cache", str(folder / "cache"), "--out", str(folder / "out")]
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began, pd.read_csv(folder / "out" / "codec.csv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="../shared/weights/mobilenet_v2-imagenet-int8dequant.pth")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--limit", type=int, default=1300)
    parser.add_argument("--out", type=Path, default=Path("reports/executors"))
    args = parser.parse_args()
    rows, tables = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        for executor in ("local", "ray"):
            seconds, table = run(executor, args.weights, args.data, args.limit, Path(scratch) / executor)
            tables[executor] = table
            sidecar = json.loads((Path(scratch) / executor / "out" / "codec.json").read_text())
            rows.append({"executor": executor, "images": args.limit, "points": int((table["codec"] == "bpg").sum()),
                         "wall_s": round(seconds, 1), "sweep_wall_s": sidecar["wall_s"]})
            print(rows[-1], flush=True)
    identical = tables["local"][ROWS].equals(tables["ray"][ROWS])
    table = pd.DataFrame(rows)
    overhead = 100 * (table.loc[1, "wall_s"] - table.loc[0, "wall_s"]) / table.loc[0, "wall_s"]
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "bench_executor.csv", table)
    write_text(args.out / "bench_executor.md", "\n".join([
        "# Ray executor against the local process pool\n",
        f"`python benchmarks/bench_executor.py`, measured {time.strftime('%Y-%m-%d')} on an otherwise idle 2-core "
        f"machine: the codec sweep (MobileNetV2 bottleneck6, {args.limit} images, BPG at 6 QPs, gray, 2 workers), "
        "each run in a fresh process with its own cache. `wall_s` includes Python and torch start-up and, for Ray, "
        "starting and stopping a local cluster.\n",
        markdown_table(table), "",
        f"Overhead of Ray: **{overhead:+.1f} %** (target ≤ 10 %). Rows (bytes, top-1, top-5) identical: "
        f"**{identical}**.\n",
    ]))
    print(f"overhead {overhead:+.1f} %, identical rows: {identical}")


if __name__ == "__main__":
    main()
