"""``splitbench rd`` as users run it: tables, plots, provenance, resumption, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import needs_shared_data, needs_shared_weights, shared_weights, run_in_process

from splitbench.compression.models import expected_parameters

MOBILENET = "mobilenet_v2-imagenet-int8dequant.pth"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "splitbench", *args], check=False, capture_output=True, text=True, cwd=cwd,
                          timeout=600)


@pytest.mark.parametrize("args,message", [
    (["--lambdas", "1,0"], "error: λ must be positive, got 0.0"),
    (["--lambdas", "-2"], "error: λ must be positive, got -2.0"),
    (["--lambdas", "x"], "error: --lambdas takes comma-separated numbers, got 'x'"),
    (["--variant", "attention3"], "error: unknown variant 'attention3'; valid variants: none, attention1, attention2"),
    (["--at", "input", "--variant", "none"], "error: unknown variant 'none' for an image codec (--at input)"),
    (["--at", "bottleneck99"], "error: unknown split point 'bottleneck99'; did you mean bottleneck9"),
    (["--aux-alpha", "0.1"], "error: --aux-alpha applies to an image codec (--at input) only"),
    (["--baseline", "missing.csv"], "error: --baseline: no such file: missing.csv"),
    (["--entropy", "gmm"], "error: unknown --entropy 'gmm'; valid: factorized, hyperprior"),
])
def test_bad_input_fails_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = run_in_process("rd", "mobilenet_v2", "--weights", "none", "--cost-only", *args, "--out", str(tmp_path),
                          cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr


def test_resnet50_cost_table_needs_no_weights_and_matches_the_formula(tmp_path: Path) -> None:
    done = run("rd", "resnet50", "--cost-only", "--channels", "128", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    cost = pd.read_csv(tmp_path / "cost.csv").set_index("variant")
    assert list(cost.index) == ["none", "attention1", "attention2"]
    assert (cost["feature_shape"] == "256x56x56").all()
    for variant, row in cost.iterrows():
        assert row["params"] == expected_parameters(variant, 256, 128)
        assert row["param_size_mb"] == round(4 * row["params"] / 1e6, 3)
    # attention2's 1×1 convolution (256 → 128 channels at 28×28) is 128·256·784 MACs more than attention1
    assert cost.loc["attention2", "gmacs"] - cost.loc["attention1", "gmacs"] == pytest.approx(128 * 256 * 784 / 1e9, abs=2e-6)
    assert cost.loc["attention2", "paper_param_size_mb"] == 5.77  # seed 000 Table 1 beside ours
    sidecar = json.loads((tmp_path / "cost.json").read_text())
    assert sidecar["arguments"]["channels"] == 128 and sidecar["git"]["commit"]
    assert "| attention2 |" in (tmp_path / "cost.md").read_text()


@needs_shared_data
@needs_shared_weights
def test_a_small_feature_run_writes_everything_and_resumes_from_its_cache(tmp_path: Path) -> None:
    args = ["rd", "mobilenet_v2", "--weights", str(shared_weights(MOBILENET)), "--variant", "none,attention1",
            "--lambdas", "0.5,4", "--train-limit", "32", "--limit", "24", "--epochs", "1", "--warmup-epochs", "1",
            "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    done = run(*args)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    table = pd.read_csv(out / "rd.csv")
    required = ["model", "split", "variant", "lambda", "bpp_estimated", "bpp_actual", "top1", "top5", "epochs",
                "train_images"]
    assert set(required) <= set(table.columns)
    assert len(table) == 4 and set(table["variant"]) == {"none", "attention1"}
    assert (table["train_images"] == 32).all() and (table["test_images"] == 24).all()
    assert (table["bpp_actual"] > 0).all() and (table["bpp_actual"] / table["bpp_estimated"]).between(0.9, 1.2).all()
    bd = pd.read_csv(out / "bd.csv")
    assert list(bd["method"]) == ["pchip", "akima"] and set(bd["test"]) == {"attention1"}
    for name in ("rd.png",):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sidecar = json.loads((out / "rd.json").read_text())
    assert sidecar["weights"]["sha256"] and sidecar["data"]["train"]["file_list_sha256"]
    assert sidecar["arguments"]["lambdas"] == [0.5, 4.0] and sidecar["wall_s"] > 0
    assert "mobilenet_v2 at bottleneck3" in (out / "rd.md").read_text()

    again = run(*args)  # every point is finished: read from the cache, nothing trained
    assert again.returncode == 0, again.stderr
    pd.testing.assert_frame_equal(pd.read_csv(out / "rd.csv"), table)

    # Another configuration into the same --out is refused (issue 33): its results would be lost.
    longer_args = [a if a != "1" or args[i - 1] != "--epochs" else "1,2" for i, a in enumerate(args)]
    refused = run(*longer_args)
    assert refused.returncode == 2 and "another configuration (--epochs 1 there, 1,2 now)" in refused.stderr
    # A second budget, in its own folder, continues every point from its first epoch (the shared
    # cache); the 1-epoch rows are read back.
    out = tmp_path / "longer"
    longer = run(*longer_args[:-1], str(out))
    assert longer.returncode == 0, longer.stderr
    budgets = pd.read_csv(out / "rd.csv")
    assert list(zip(budgets["variant"], budgets["lambda"], budgets["epochs"])) == [
        ("none", 0.5, 1), ("none", 0.5, 2), ("none", 4.0, 1), ("none", 4.0, 2),
        ("attention1", 0.5, 1), ("attention1", 0.5, 2), ("attention1", 4.0, 1), ("attention1", 4.0, 2)]
    once = budgets[budgets["epochs"] == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(once[["bpp_actual", "top1", "train_s"]], table[["bpp_actual", "top1", "train_s"]])
    assert (budgets[budgets["epochs"] == 2]["train_s"].to_numpy() > once["train_s"].to_numpy()).all()
    # Compute counted once: a variant's shared warm-up, the longest budget's (cumulative) training.
    spent = json.loads((out / "rd.json").read_text())["points_compute_s"]
    assert spent["train_s"] == pytest.approx(budgets[budgets["epochs"] == 2]["train_s"].sum(), abs=0.06)
    assert spent["warmup_s"] == pytest.approx(budgets.groupby("variant")["warmup_s"].first().sum(), abs=0.06)
    bd = pd.read_csv(out / "bd.csv")
    assert list(zip(bd["anchor"], bd["test"]))[::2] == [("none, 1 ep", "attention1, 1 ep"), ("none, 2 ep", "attention1, 2 ep")]


@needs_shared_data
@needs_shared_weights
def test_a_small_image_codec_run_compares_with_and_without_the_auxiliary_loss(tmp_path: Path) -> None:
    done = run("rd", "mobilenet_v2", "--weights", str(shared_weights(MOBILENET)), "--at", "input", "--channels", "8",
               "--input-size", "64", "--lambdas", "1", "--train-limit", "16", "--limit", "8", "--epochs", "1",
               "--warmup-epochs", "0", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "out" / "rd.csv")
    assert list(table["alpha"]) == [0.0, 0.1] and (table["variant"] == "cheng2020_attn").all()
    assert table.loc[0, "aux_params"] == 0 and table.loc[1, "aux_params"] == 8 * 64 * 9 + 64 + 64 * 1000 + 1000
    assert table.loc[0, "codec_params"] == table.loc[1, "codec_params"]  # the branch is not part of the codec
    assert (tmp_path / "out" / "bit_allocation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "out" / "cost.csv").exists()


@needs_shared_data
@needs_shared_weights
def test_bf16_training_runs_the_frozen_tail_in_autocast_and_records_it(tmp_path: Path) -> None:
    args = ["rd", "mobilenet_v2", "--weights", str(shared_weights(MOBILENET)), "--variant", "none", "--lambdas", "1",
            "--train-limit", "8", "--limit", "4", "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "4",
            "--cache", str(tmp_path / "cache")]
    rows = {}
    for precision in ("fp32", "bf16"):
        done = run(*args, "--precision", precision, "--out", str(tmp_path / precision))
        assert done.returncode == 0, done.stderr
        rows[precision] = pd.read_csv(tmp_path / precision / "rd.csv").iloc[0]
        sidecar = json.loads((tmp_path / precision / "rd.json").read_text())
        assert sidecar["arguments"]["precision"] == precision
    # The same batches and initialisation: the tail's bf16 arithmetic moves the loss a little, not a lot.
    fp32, bf16 = rows["fp32"]["train_task_loss"], rows["bf16"]["train_task_loss"]
    assert bf16 != fp32 and bf16 == pytest.approx(fp32, rel=0.05)
    # Evaluation runs in fp32 either way, on codecs trained for the same steps.
    assert rows["bf16"]["bpp_actual"] == pytest.approx(rows["fp32"]["bpp_actual"], rel=0.02)
    # bf16 points are cached apart from fp32 ones (fp32 keeps the key it had before precision was a setting).
    assert len(list((tmp_path / "cache" / "rd" / "mobilenet_v2").iterdir())) == 2
