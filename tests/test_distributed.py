"""``train`` under torchrun: 2 gloo processes against 1 process with the same global batch and seed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED_DATA, needs_shared_data, shared_weights

RECIPE = ["cifar_resnet20", "--limit", "1024", "--test-limit", "1000", "--epochs", "2", "--batch-size", "64",
          "--lr", "1e-3", "--randaugment", "0", "--seed", "0", "--device", "cpu", "--workers", "1"]


def _train(tmp_path: Path, name: str, processes: int) -> pd.DataFrame:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                "-m", "splitbench"] if processes > 1 else [sys.executable, "-m", "splitbench"]
    done = subprocess.run([*launcher, "train", *RECIPE, "--weights", str(shared_weights("cifar-resnet20-12fca82f.th")),
                           "--data", str(SHARED_DATA), "--out", str(tmp_path / name),
                           "--checkpoint-dir", str(tmp_path / f"{name}-ckpt")],
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_csv(tmp_path / name / "train.csv")


@needs_shared_data
def test_two_gloo_processes_train_as_one_with_the_same_global_batch(tmp_path: Path) -> None:
    one, two = _train(tmp_path, "one", 1), _train(tmp_path, "two", 2)
    assert len(one) == len(two) == 2
    # Same permutation, same augmentation draws, gradients averaged over the two halves of each
    # batch: only BatchNorm's batch statistics (per half) and summation order differ.
    for a, b in zip(one["train_loss"], two["train_loss"]):
        assert b == pytest.approx(a, rel=0.03)
    assert abs(one["test_top1"].iloc[-1] - two["test_top1"].iloc[-1]) <= 1.0
    assert not (tmp_path / "two" / "train.json").read_text().count('"processes": 1')
    assert sorted(p.name for p in (tmp_path / "two-ckpt").iterdir()) == ["last.pt"]  # rank 0 alone wrote
