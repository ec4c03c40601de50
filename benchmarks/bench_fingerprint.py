"""What the content fingerprint costs: hashing every image's bytes, with and without remembered digests.

For each data set, the median of ``--runs`` runs of
- ``stat only``: the earlier metadata key (name, size, mtime, label; one ``stat`` per file),
- ``cold``: the content fingerprint with an empty digest store (every file read and hashed),
- ``warm``: the same with the store a first run left (a ``stat`` per file and a lookup).
The files are read once before timing, so ``cold`` is the page-cache case, not a cold disk.

    SPLITBENCH_DATA=../shared/data python benchmarks/bench_fingerprint.py [--runs 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from splitbench.data import open_dataset
from splitbench.data.datasets import ImageDataset

SETS = (("imagenet-val-1300", None), ("cifar10", "train"))


def stat_only(dataset: ImageDataset) -> str:
    """The metadata key this fingerprint replaced, for comparison."""
    digest = hashlib.sha256()
    for path, label in dataset.samples:
        info = os.stat(path)
        digest.update(f"{os.path.basename(path)}\0{info.st_size}\0{info.st_mtime_ns}\0{label}\n".encode())
    return digest.hexdigest()


def content(dataset: ImageDataset, store: Path) -> str:
    return ImageDataset(dataset.samples).fingerprint(store)  # a fresh object: nothing memoised


def median_s(run: Callable[[], object], runs: int, before: Callable[[], object] = lambda: None) -> float:
    times = []
    for _ in range(runs):
        before()
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} logical CPUs, load average {load:.1f} at the start (a shared machine inflates these)")
    print(f"{'data set':<22}{'images':>8}{'MB':>7}{'stat only':>11}{'cold':>9}{'warm':>9}{'store':>9}")
    for name, split in SETS:
        dataset = open_dataset(name, split=split)
        size = sum(os.path.getsize(path) for path, _ in dataset.samples)
        for path, _ in dataset.samples:  # into the page cache: the figures then time hashing, not the disk
            Path(path).read_bytes()
        with tempfile.TemporaryDirectory() as scratch:
            store = Path(scratch) / "file-hashes"
            old = median_s(lambda: stat_only(dataset), args.runs)
            cold = median_s(lambda: content(dataset, store), args.runs,
                            before=lambda: shutil.rmtree(store, ignore_errors=True))
            content(dataset, store)
            warm = median_s(lambda: content(dataset, store), args.runs)
            stored = sum(file.stat().st_size for file in store.iterdir())
        print(f"{name + (f':{split}' if split else ''):<22}{len(dataset):>8,}{size / 1e6:>7.1f}"
              f"{old:>10.2f}s{cold:>8.2f}s{warm:>8.2f}s{stored / 1e6:>7.1f}MB", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f} at the end; medians of {args.runs} runs")


if __name__ == "__main__":
    main()
