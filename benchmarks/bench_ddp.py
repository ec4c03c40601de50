"""``train`` under torchrun (2 gloo processes) against one process: same global batch, same seed.

CIFAR ResNet-20 from random initialisation on 6400 training images spread over the classes,
batch 64, 3 epochs (300 optimizer steps), Adam 1e-3, no RandAugment; tested on 2000 images.
The one-process run uses both cores; each DDP process uses one. Writes the per-epoch losses
and accuracies side by side.

Run on an otherwise idle machine:  python benchmarks/bench_ddp.py [--out reports/train/ddp]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from splitbench.results import markdown_table, write_csv, write_text

RECIPE = ["cifar_resnet20", "--weights", "none", "--limit", "6400", "--test-limit", "2000", "--epochs", "3",
          "--batch-size", "64", "--lr", "1e-3", "--randaugment", "0", "--seed", "0", "--device", "cpu"]


def train(processes: int, data: str, folder: Path) -> tuple[pd.DataFrame, float]:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
                if processes > 1 else [sys.executable])
    began = time.perf_counter()
    subprocess.run([*launcher, "-m", "splitbench", "train", *RECIPE, "--data", data, "--out", str(folder / "out"),
                    "--checkpoint-dir", str(folder / "ckpt")], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "OMP_NUM_THREADS": str(max(1, 2 // processes))})
    return pd.read_csv(folder / "out" / "train.csv"), time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--out", type=Path, default=Path("reports/train/ddp"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        one, one_s = train(1, args.data, Path(scratch) / "one")
        two, two_s = train(2, args.data, Path(scratch) / "two")
    table = pd.DataFrame({
        "epoch": one["epoch"], "steps": one["epoch"] * 100,
        "loss_1_process": one["train_loss"].round(4), "loss_2_processes": two["train_loss"].round(4),
        "loss_difference_percent": (100 * (two["train_loss"] - one["train_loss"]) / one["train_loss"]).round(2),
        "test_top1_1_process": one["test_top1"].round(2), "test_top1_2_processes": two["test_top1"].round(2),
    })
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "ddp.csv", table)
    write_text(args.out / "README.md", "\n".join([
        "# `train` under torchrun: 2 gloo processes against 1\n",
        f"`python benchmarks/bench_ddp.py`, {time.strftime('%Y-%m-%d')}, this 2-core machine, idle otherwise. "
        "CIFAR ResNet-20 from random initialisation, 6400 training images, global batch 64, 300 steps, seed 0. "
        "Every rank draws the same permutation and augmentation and trains on every second image of each "
        "batch; DDP averages the gradients. What differs: BatchNorm normalises each half with its own "
        "statistics, and sums run in another order.\n",
        markdown_table(table), "",
        f"Wall time: 1 process (2 threads) {one_s:.0f} s; 2 processes (1 thread each) {two_s:.0f} s.\n",
    ]))
    print(table.to_string())


if __name__ == "__main__":
    main()
