"""`splitbench prune` as users run it: the sweep's files, figures checked by hand, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED_DATA, needs_shared_data, zoo, run_in_process
from splitbench.pruning.sweep import PRUNE_COLUMNS
from splitbench.weights import save_safetensors
from test_cli import run


@pytest.mark.parametrize(
    "args, message",
    [
        (["vit", "--ratio", "1.5"], "error: pruning ratio must be in [0, 1), got 1.5"),
        (["vit", "--ratio", ","], "error: --ratio takes numbers in [0, 1) separated by commas, got ','"),
        (["vit", "--estimator", "exact,taylor"], "error: --estimator takes one of exact, taylor"),
        (["vit", "--method", "magic"], "error: unknown method magic; valid: weight, importance, stability"),
        (["vit", "--scope", "local"], "error: unknown scope local; valid: uniform, global"),
        (["vit", "--targets", "heads"], "error: unknown pruning target heads; valid: attention, mlp"),
        (["resnet50"], "error: channel pruning supports the model vit only, got 'resnet50'"),
        (["vit"], "error: weights file not found: /no/such/vit.safetensors"),
    ],
)
def test_bad_prune_input_ends_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    done = run_in_process("prune", *args, "--weights", "/no/such/vit.safetensors", "--out", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message), done.stderr
    assert done.stderr.count("\n") == 1


@needs_shared_data
def test_prune_sweep_writes_tables_with_smaller_models(tmp_path: Path) -> None:
    checkpoint = save_safetensors(zoo("vit").model, tmp_path / "vit.safetensors")
    out = tmp_path / "out"
    done = run("prune", "vit", "--weights", str(checkpoint), "--ratio", "0.5", "--scope", "uniform,global",
               "--proxy", "8", "--limit", "100", "--repeats", "0", "--data", str(SHARED_DATA),
               "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out / "prune.csv")
    assert set(PRUNE_COLUMNS) <= set(table.columns)
    assert len(table) == 1 + 3 * 2
    original = table[table["method"] == "original"].iloc[0]
    assert original["params"] == 9_524_842 and original["test_images"] == 100
    pruned = table[table["method"] != "original"]
    # Half of each block's 512 attention channels: 256 x (3 x 512 + 512) weights fewer per block.
    assert (pruned["params"] == 9_524_842 - 6 * 256 * 2048).all()
    assert (pruned["kept_channels"] == 6 * 256).all()
    uniform = pruned[pruned["scope"] == "uniform"]
    assert (uniform["kept_per_block"] == "256 256 256 256 256 256").all()
    assert (pruned["macs"] < original["macs"]).all()
    markdown = (out / "prune.md").read_text()
    assert "(56.79)" in markdown and "(63.11)" in markdown  # the paper's weight rows at 50 %
    # untimed: no CPU-time table of the paper's figures alone, and the header says why
    assert "## Table 2" not in markdown and "CPU time not measured" in markdown
    assert (out / "prune.png").read_bytes()[:4] == b"\x89PNG"
    scores = pd.read_csv(out / "channel_scores.csv")
    assert len(scores) == 6 * 512 and {"weight", "importance", "stability", "l_ce", "l_kl"} <= set(scores.columns)
    sidecar = json.loads((out / "prune.json").read_text())
    assert sidecar["weights"]["sha256"] and sidecar["data"]["proxy"]["images"] == 8
    # A second run reuses the cached points instead of measuring again (their files stay as they were).
    points = sorted((tmp_path / "cache" / "prune").rglob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in points]
    again = run("prune", "vit", "--weights", str(checkpoint), "--ratio", "0.5", "--method", "weight",
                "--scope", "uniform", "--proxy", "8", "--limit", "100", "--repeats", "0", "--data", str(SHARED_DATA),
                "--out", str(tmp_path / "again"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    rerun = pd.read_csv(tmp_path / "again" / "prune.csv")
    assert rerun.iloc[1]["top1"] == table[(table["method"] == "weight") & (table["scope"] == "uniform")].iloc[0]["top1"]
    assert points and [p.stat().st_mtime_ns for p in points] == stamps
    assert sorted((tmp_path / "cache" / "prune").rglob("*.json")) == points
