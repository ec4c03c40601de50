"""Prune, rd and group sweeps on the local executor and on a local Ray cluster: the same rows?

Each sweep runs twice through the CLI, in a fresh process with its own cache and working
folder: ``--executor local`` (points one after another in this process, torch on every core)
and ``--executor ray`` (a local Ray cluster with one worker per core, one point per worker on
one thread, started and stopped by the sweep). The figures each sweep reports are compared:

- prune: parameters, MACs, kept channels and top-1 of the unpruned ViT and 4 pruned ones
  (CPU-time columns are not measured here: two points timing at once on two cores would
  measure each other);
- rd: two λ points trained from one warm-up; bits from the range coder and top-1 must match,
  trained losses within a relative 1e-4 (torch sums over 1 thread in a Ray worker, over 2 here);
- group: FLGC at 1 and 4 groups with and without duplication, fine-tuned one epoch. The learned
  assignment follows the trained weights, so the thread-order differences can flip a few
  connections: kept parameters, MACs and accuracy are compared with their largest difference.

Run on an otherwise idle machine:  python benchmarks/bench_point_sweeps.py [--out reports/executors]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from splitbench.results import markdown_table, write_csv, write_text

SHARED = Path("../shared")


def sweeps(shared: Path) -> dict[str, tuple[list[str], list[str], dict[str, str]]]:
    """Per sweep: its command line, the columns that must be identical, and those compared by their
    largest difference ("rel": relative, "abs": absolute)."""
    weights, data = shared / "weights", str(shared / "data")
    vit = str(Path("reports/checkpoints/vit-cifar10-fp16.safetensors").resolve())
    return {
        "prune": (["prune", "vit", "--checkpoint", vit, "--method", "weight,stability", "--scope", "uniform",
                   "--ratio", "0.3,0.5", "--proxy", "64", "--test-limit", "1000", "--timing-repeats", "0",
                   "--data", data],
                  ["method", "scope", "ratio", "params", "param_bytes", "macs", "kept_channels", "top1"], {}),
        "rd": (["rd", "mobilenet_v2", "--weights", str(weights / "mobilenet_v2-imagenet-int8dequant.pth"),
                "--variant", "none", "--lambdas", "0.5,4", "--train-limit", "64", "--test-limit", "100",
                "--epochs", "1", "--warmup-epochs", "1", "--batch-size", "16", "--data", data, "--cache", "cache"],
               ["variant", "lambda", "codec_params", "bpp_actual", "top1", "top5", "agreement"],
               {"bpp_estimated": "rel", "train_bpp": "rel", "train_task_loss": "rel"}),
        "group": (["group", "cifar_resnet20", "--weights", str(weights / "cifar-resnet20-12fca82f.th"),
                   "--groups", "1,4", "--duplicate-top", "0,3", "--train-limit", "1024", "--test-limit", "1000",
                   "--timing-repeats", "0", "--device", "cpu", "--precision", "fp32", "--data", data],
                  ["groups", "duplicate_top"],
                  {"params": "abs", "macs": "rel", "duplicated_maps": "abs", "top1": "abs", "train_top1": "abs"}),
    }


def run(command: list[str], executor: str, folder: Path) -> tuple[float, pd.DataFrame]:
    folder.mkdir(parents=True)
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "splitbench", *command, "--executor", executor, "--out", "out"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
    return time.perf_counter() - began, pd.read_csv(folder / "out" / f"{command[0]}.csv")


def compare(local: pd.DataFrame, remote: pd.DataFrame, exact: list[str], close: dict[str, str]) -> tuple[bool, str]:
    """Exact columns identical?; the largest difference of each other column."""
    same = local[exact].equals(remote[exact])
    differences = []
    for column, kind in close.items():
        gap = np.abs(remote[column].astype(float) - local[column].astype(float))
        if kind == "rel":
            gap = gap / np.abs(local[column].astype(float)).clip(lower=1e-12)
        worst = float(np.nanmax(gap))
        differences.append(f"{column} {worst:.1e}" if kind == "rel" else f"{column} {worst:g}")
    return same, ", ".join(differences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=SHARED)
    parser.add_argument("--out", type=Path, default=Path("reports/executors"))
    args = parser.parse_args()
    rows, details = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for name, (command, exact, close) in sweeps(args.shared.resolve()).items():
            seconds, tables = {}, {}
            for executor in ("local", "ray"):
                seconds[executor], tables[executor] = run(command, executor, Path(scratch) / name / executor)
                print(name, executor, f"{seconds[executor]:.1f} s", flush=True)
            same, largest = compare(tables["local"], tables["ray"], exact, close)
            rows.append({"sweep": name, "points": len(tables["local"]), "local_s": round(seconds["local"], 1),
                         "ray_s": round(seconds["ray"], 1), "identical": ", ".join(exact) + f": {same}",
                         "largest_difference": largest})
            shown = exact + list(close)
            side_by_side = tables["local"][shown].join(tables["ray"][list(close)], rsuffix=" (ray)")
            details.append(f"### {name}\n\n`splitbench {' '.join(command[:2])} …`; local, and Ray where not "
                           f"identical\n\n" + markdown_table(side_by_side) + "\n")
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "point_sweeps.csv", table)
    write_text(args.out / "point_sweeps.md", "\n".join([
        "# Prune, rd and group sweeps: local against a local Ray cluster\n",
        f"`python benchmarks/bench_point_sweeps.py`, measured {time.strftime('%Y-%m-%d')} on an otherwise idle "
        "2-core machine. Each sweep ran twice in a fresh process with its own cache: `--executor local` (points one "
        "after another, torch on both cores) and `--executor ray` (a local cluster with 2 workers, a point per "
        "worker on one thread; its start-up and shut-down are in `ray_s`).\n",
        markdown_table(table), "",
        "CPU-time columns are left out (`--timing-repeats 0`): two points timed at once on two cores measure each "
        "other, so timing tables come from `--executor local`. Trained figures are compared by their largest "
        "difference (relative for rd, absolute for group's counts and top-1 points), not for equality: a Ray "
        "worker's torch sums over one thread and this process's over two, so training follows another rounding. "
        "rd's losses agree to a few parts in a million and the range coder's bits come out the same; FLGC's learned "
        "assignment can flip connections, and with them kept parameters and accuracy.\n",
        "## Rows\n", *details,
    ]))


if __name__ == "__main__":
    main()
