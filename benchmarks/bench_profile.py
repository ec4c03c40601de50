"""Times `splitbench profile MODEL` end to end (a fresh process each run, as a user runs it).

Targets on the 2-core reference machine, median of 5 runs: vgg16 <= 10 s (issue 2);
convnext_tiny <= 15 s, tracing and cut enumeration included (issue 15).

    python benchmarks/bench_profile.py [--runs 5] [--model vgg16] [--model convnext_tiny]
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
    parser.add_argument("--model", action="append", help="repeatable (default: vgg16 and convnext_tiny)")
    args = parser.parse_args()

    for model in args.model or ["vgg16", "convnext_tiny"]:
        times = []
        with tempfile.TemporaryDirectory() as out:
            command = [sys.executable, "-m", "splitbench", "profile", model, "--out", out]
            for run in range(args.runs):
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True)
                times.append(time.perf_counter() - start)
                print(f"{model} run {run + 1}: {times[-1]:.2f} s", flush=True)
        print(
            f"splitbench profile {model}: median {statistics.median(times):.2f} s, "
            f"min {min(times):.2f} s, max {max(times):.2f} s over {args.runs} runs "
            f"({os.cpu_count()} logical CPUs)"
        )


if __name__ == "__main__":
    main()
