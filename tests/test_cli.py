"""The command line as users run it: files written, provenance recorded, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import needs_shared_weights, shared_weights, run_in_process
from splitbench.profiling import PROFILE_COLUMNS


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "splitbench", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_profile_writes_csv_markdown_sidecar_and_plot(tmp_path: Path) -> None:
    done = run("profile", "mobilenet_v2", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "profile.csv")
    assert list(table.columns) == PROFILE_COLUMNS
    assert table.set_index("layer").loc["bottleneck6", "elements"] == 25088
    assert (tmp_path / "profile.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "bottleneck6" in (tmp_path / "profile.md").read_text()
    sidecar = json.loads((tmp_path / "profile.json").read_text())
    assert sidecar["arguments"]["model"] == "mobilenet_v2"
    assert sidecar["versions"]["torch"] and sidecar["hardware"]["torch_threads"] >= 1
    assert sidecar["weights"]["source"] == "none" and sidecar["wall_s"] > 0
    assert "commit" in sidecar["git"]
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_split_writes_the_accounting(tmp_path: Path) -> None:
    done = run("split", "mobilenet_v2", "--at", "bottleneck6", "--tasks", "classification,detection",
               "--repeats", "1", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    row = pd.read_csv(tmp_path / "split.csv").iloc[0]
    for column in ["model", "split", "tasks", "macs_separate", "macs_shared", "reduction_percent",
                   "transfer_elements", "transfer_bytes_fp32", "transfer_bytes_uint8"]:
        assert column in row.index
    assert row["transfer_elements"] == 25088 and row["tasks"] == "classification,detection"
    assert len(pd.read_csv(tmp_path / "split_tasks.csv")) == 2
    assert "reduction" in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["profile", "vgg17"], "error: unknown model 'vgg17'; did you mean vgg19, vgg16, vgg13?"),
        (["split", "vgg16", "--at", "pool9"], "error: unknown split point 'pool9'; did you mean pool5, pool4, pool3?"),
        (["split", "resnet18", "--at", "layer1.0.conv2"],
         "error: cannot split at 'layer1.0.conv2': 2 values cross there (layer1.0.conv2 and maxpool)"),
        (["profile", "--model", "no/such/net.py:build"], "error: model file not found: no/such/net.py"),
        (["profile", "vgg16", "--weights", "/no/such/file.pth"], "error: weights file not found: /no/such/file.pth"),
        (["profile", "vgg16", "--input-size", "2"], "error: Invalid value for '--input-size'"),
    ],
)
def test_bad_input_ends_in_one_line_with_exit_code_2(args: list[str], message: str, tmp_path: Path) -> None:
    done = run_in_process(*args, "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith(message), done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@needs_shared_weights
def test_weights_of_another_model_end_in_one_line(tmp_path: Path) -> None:
    done = run("profile", "cifar_resnet56", "--weights", str(shared_weights("cifar-resnet20-12fca82f.th")),
               "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.startswith("error: weights in ") and "do not fit cifar_resnet56" in done.stderr
    assert done.stderr.count("\n") == 1


def test_models_lists_the_zoo() -> None:
    done = run("models")
    assert done.returncode == 0
    for name in ("vgg16", "mobilenet_v2", "resnet50", "vit", "cifar_resnet20", "ssd_vgg16"):
        assert name in done.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["codec", "--qp", ","], "error: --qp takes comma-separated integers, got ','"),
        (["codec", "--codec", ","], "error: --codec names nothing: got ','"),
        (["codec", "--codec", "webp:/"], "error: --codec webp:/ names no quality values"),
        (["codec", "--layout", ","], "error: --layout names nothing: got ','"),
        (["split", "vgg16", "--at", "pool4", "--tasks", ","], "error: --tasks names nothing: got ','"),
        (["rd", "--lambdas", ",", "--cost-only"], "error: --lambdas takes comma-separated numbers, got ','"),
        (["profile", "vgg16", "--leaf", ","], "error: --leaf names nothing: got ','"),
    ],
)
def test_an_empty_list_is_refused_by_every_command(args: list[str], message: str, tmp_path: Path) -> None:
    """One parser, one rule: a list option that names nothing is an error, never the default."""
    done = run_in_process(*args, "--out", str(tmp_path), "--dry-run")
    assert done.returncode == 2 and done.stderr == message + "\n", done.stderr
