"""`splitbench group` as users run it: FLGC sweep files, counts checked by hand, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import (
    SHARED_DATA,
    run_in_process,
    needs_shared_data,
    needs_shared_weights,
    shared_weights,
)
from test_cli import run

from splitbench.grouping.flgc import (
    effective_counts,
    randomize_assignments,
    replace_convolutions,
    to_grouped,
)
from splitbench.grouping.sweep import GROUP_COLUMNS
from splitbench.zoo import load_model

RESNET20 = "cifar-resnet20-12fca82f.th"
# stem 3x3 (16*3*9) + 18 block convolutions + 19 batch norms (2 x 688 channels) + linear (64*10 + 10)
BLOCK_WEIGHTS = 9 * (6 * 16 * 16 + 16 * 32 + 5 * 32 * 32 + 32 * 64 + 5 * 64 * 64)
RESNET20_PARAMS = 432 + BLOCK_WEIGHTS + 2 * 688 + 650


@pytest.mark.parametrize(
    "args, message",
    [
        (["cifar_resnet20", "--groups", "0"], "error: --groups takes comma-separated integers ≥ 1, got '0'"),
        (["cifar_resnet20", "--groups", "4,x"], "error: --groups takes comma-separated integers, got '4,x'"),
        (["cifar_resnet20", "--groups", "4,17"],
         "error: groups must be between 1 and 16 (the narrowest 3x3 convolution's channels), got 17"),
        (["cifar_resnet20", "--duplicate-top", "-1"],
         "error: --duplicate-top takes comma-separated integers ≥ 0, got '-1'"),
        (["mobilenet_v2"], "error: group trains on CIFAR-10; mobilenet_v2 is not a CIFAR-10 model"),
        (["vit"], "error: the model has no dense 3x3 convolution inside its blocks for FLGC to replace"),
        (["resnet20"], "error: unknown model 'resnet20'; did you mean resnet50"),
    ],
)
def test_bad_group_input_ends_in_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    done = run_in_process("group", *args, "--out", str(tmp_path))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message), done.stderr
    assert done.stderr.count("\n") == 1


def test_cifar_resnet50_has_a_3x3_stem_and_flgc_in_every_bottleneck() -> None:
    model = load_model("cifar_resnet50").model.eval()
    # torchvision's ResNet-50 (25,557,032) - 7x7 stem (64*3*49) + 3x3 stem (64*3*9) - 1000-class fc + 10-class fc
    assert sum(p.numel() for p in model.parameters()) == 25_557_032 - 9408 + 1728 - 2_049_000 + 20_490
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert model.layer1(model.relu(model.bn1(model.conv1(x)))).shape == (1, 256, 32, 32)  # no downsampling
    replaced = replace_convolutions(model, 8, duplicate_top=3)
    assert replaced == [f"layer{i}.{b}.conv2" for i, blocks in enumerate((3, 4, 6, 3), 1) for b in range(blocks)]
    randomize_assignments(model)
    with torch.no_grad():
        masked = model(x)
        grouped = to_grouped(model)
        torch.testing.assert_close(grouped(x), masked, atol=1e-4, rtol=1e-4)


@needs_shared_weights
def test_one_group_keeps_every_connection_of_the_dense_model() -> None:
    dense = load_model("cifar_resnet20", shared_weights(RESNET20)).model.eval()
    x = torch.randn(1, 3, 32, 32)
    dense_counts = effective_counts(dense, x)
    assert dense_counts[0] == RESNET20_PARAMS
    replace_convolutions(dense, 1)
    assert effective_counts(to_grouped(dense), x) == dense_counts


@needs_shared_data
@needs_shared_weights
def test_group_sweep_writes_tables_of_smaller_models(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["group", "cifar_resnet20", "--weights", str(shared_weights(RESNET20)), "--groups", "1,4",
            "--duplicate-top", "0,3", "--train-limit", "256", "--limit", "200", "--repeats", "0",
            "--device", "cpu", "--data", str(SHARED_DATA)]
    done = run(*argv, "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out / "group.csv")
    assert list(table.columns) == GROUP_COLUMNS
    assert [(r.groups, r.duplicate_top) for r in table.itertuples()] == [(1, 0), (1, 0), (4, 0), (4, 3)]
    dense, one, plain, duplicated = (table.iloc[i] for i in range(4))
    assert dense["epochs"] == 0 and one["epochs"] == 1 and dense["test_images"] == 200 and dense["train_images"] == 256
    assert dense["params"] == one["params"] == RESNET20_PARAMS and dense["macs"] == one["macs"]
    # Only the 18 block convolutions lose weights; the stem, batch norms and classifier stay.
    for point in (plain, duplicated):
        assert RESNET20_PARAMS - BLOCK_WEIGHTS < point["params"] < RESNET20_PARAMS
        assert point["macs"] < dense["macs"] and point["macs"] <= point["macs_executed"]
    assert plain["duplicated_maps"] == 0 and duplicated["duplicated_maps"] >= 0
    per_layer = pd.read_csv(out / "duplication.csv")
    assert len(per_layer) == 3 * 18 and per_layer.groupby(["groups", "duplicate_top"])["duplicated_maps"].sum().loc[
        (4, 3)] == duplicated["duplicated_maps"]
    assert (out / "group.png").read_bytes()[:4] == b"\x89PNG"
    assert "Plain FLGC vs FLGC with duplication" in (out / "group.md").read_text()
    sidecar = json.loads((out / "group.json").read_text())
    assert sidecar["weights"]["sha256"].startswith("12fca82f") and sidecar["data"]["train"]["images"] == 256
    # A second run reuses every cached point (their files stay as they were).
    points = sorted((tmp_path / "cache" / "group").rglob("*.json"))
    stamps = [p.stat().st_mtime_ns for p in points]
    again = run(*argv, "--out", str(tmp_path / "again"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert pd.read_csv(tmp_path / "again" / "group.csv")["top1"].tolist() == table["top1"].tolist()
    assert len(points) == 4 and [p.stat().st_mtime_ns for p in points] == stamps
