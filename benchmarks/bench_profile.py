"""Times `splitbench profile vgg16` end to end (a fresh process each run, as a user runs it).

Target (issue 2): median of 5 runs <= 10 s on the 2-core reference machine.

    python benchmarks/bench_profile.py [--runs 5] [--model vgg16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--model", default="vgg16")
    args = parser.parse_args()

    times = []
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "splitbench", "profile", args.model, "--out", out]
        for run in range(args.runs):
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
            print(f"run {run + 1}: {times[-1]:.2f} s", flush=True)
    print(
        f"splitbench profile {args.model}: median {statistics.median(times):.2f} s, "
        f"min {min(times):.2f} s, max {max(times):.2f} s over {args.runs} runs "
        f"({os.cpu_count()} logical CPUs)"
    )


if __name__ == "__main__":
    main()
