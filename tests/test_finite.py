"""NaN and ±Inf: counted by one checker, refused in weights, stopping training, never exported.

Also the checkpoint writers' behaviour on a full disk (a real one: a 256 KiB tmpfs).
"""

from __future__ import annotations

import contextlib
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import SHARED_DATA, needs_root, needs_shared_data, needs_shared_weights, run_in_process, shared_weights
from splitbench.errors import SplitbenchError
from splitbench.finite import all_finite, count_non_finite, describe, non_finite_tensors
from splitbench.training import TrainConfig, train_classifier
from splitbench.weights import read_state_dict, read_tensor_file, save_safetensors, write_tensor_file
from splitbench.zoo import load_model
from test_cli import run
from test_training import MEAN, STD, plain, separable_data, tiny_model

RESNET20 = "cifar-resnet20-12fca82f.th"


def test_the_checker_counts_nan_and_inf_in_every_container() -> None:
    tensor = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), 0.0])
    assert count_non_finite(tensor) == 3 and count_non_finite(tensor.half()) == 3
    assert count_non_finite(torch.tensor([1, 2])) == 0 and count_non_finite(torch.tensor([True])) == 0
    assert count_non_finite(np.array([np.nan, 1.0], dtype=np.float32)) == 1 and count_non_finite(np.arange(3)) == 0
    assert count_non_finite([1.0, math.nan, 3]) == 1 and count_non_finite(math.inf) == 1 and count_non_finite(2) == 0
    state = {"a.weight": tensor, "a.bias": torch.zeros(2), "steps": torch.tensor(7)}
    assert count_non_finite(state) == 3 and non_finite_tensors(state) == {"a.weight": 3}
    assert describe(non_finite_tensors(state), len(state)) == "3 NaN/Inf values in 1 of 3 tensors (e.g. a.weight)"
    assert all_finite([torch.zeros(3), torch.tensor([1, 2])]) and not all_finite([torch.zeros(2), tensor])
    assert all_finite([torch.full((2,), 3e38), torch.full((2,), 3e38)])  # finite, though their sum is not


@needs_shared_weights
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_real_weights_with_one_nan_are_refused_naming_the_file_and_the_count(tmp_path: Path, suffix: str) -> None:
    from safetensors.torch import save_file

    state = read_state_dict(shared_weights(RESNET20))
    state["layer2.1.conv1.weight"][3, 2, 1, 1] = float("nan")  # one value among 270k
    path = tmp_path / f"resnet20-one-nan{suffix}"
    torch.save(state, path) if suffix == ".pth" else save_file(state, path)
    message = (f"weights in {path} are not finite: 1 NaN/Inf value in 1 of {len(state)} tensors "
               f"(e.g. layer2.1.conv1.weight); replace the file")
    with pytest.raises(SplitbenchError) as refused:
        load_model("cifar_resnet20", str(path))
    assert str(refused.value) == message


@needs_shared_data
@needs_shared_weights
def test_a_command_given_nan_weights_ends_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    state = read_state_dict(shared_weights(RESNET20))
    state["linear.bias"][0] = float("inf")
    torch.save(state, tmp_path / "inf.pth")
    done = run_in_process("eval", "cifar_resnet20", "--weights", str(tmp_path / "inf.pth"), "--limit", "8",
                          "--data", str(SHARED_DATA), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: weights in {tmp_path / 'inf.pth'} are not finite: 1 NaN/Inf value")
    assert not list((tmp_path / "out").glob("eval.*"))


def test_an_export_that_the_fp16_cast_makes_infinite_is_refused(tmp_path: Path) -> None:
    model = tiny_model()
    with torch.no_grad():
        model[1].bias[0] = 1e6  # finite in fp32, beyond fp16's 65504
    save_safetensors(model, tmp_path / "fp32.safetensors")  # fine as it is
    with pytest.raises(SplitbenchError, match=r"^not exporting .*fp16.safetensors, its weights are not finite: "
                                              r"1 NaN/Inf value in 1 of 2 tensors \(e\.g\. 1\.bias\) after the cast to float16$"):
        save_safetensors(model, tmp_path / "fp16.safetensors", dtype=torch.float16)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp32.safetensors"]


def test_training_that_diverges_stops_in_one_line_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    data = separable_data(64)
    config = TrainConfig(epochs=3, batch_size=16, lr=1e-2)
    kwargs = dict(mean=MEAN, config=config, checkpoint_dir=tmp_path, device=torch.device("cpu"), augment=plain(),
                  progress=False)

    def stop_after_one(row: dict) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(tiny_model(), data, None, std=STD, on_epoch=stop_after_one, **kwargs)
    good = read_tensor_file(tmp_path / "last.pt")
    # Resumed with a zero std (not part of the recipe): every input is ±Inf or NaN from the first step on.
    with pytest.raises(SplitbenchError) as stopped:
        train_classifier(tiny_model(), data, None, std=(0.0, 0.0, 0.0), **kwargs)
    assert str(stopped.value).startswith("training diverged at epoch 2, step 1: the loss is nan, the weights hold ")
    assert str(stopped.value).endswith(f"stopped without saving: the last good checkpoint {tmp_path / 'last.pt'} "
                                       "is kept; try a lower --lr")
    kept = read_tensor_file(tmp_path / "last.pt")
    assert len(kept["history"]) == 1 and all(torch.equal(kept["model"][k], good["model"][k]) for k in good["model"])
    assert count_non_finite(kept["model"]) == 0


def test_rd_training_that_diverges_stops_before_its_epoch_files(tmp_path: Path) -> None:
    from splitbench.compression.train import RDSettings, TrainingSet, rd_objective, train
    from test_compression import _smooth_features, _tiny_feature_pipeline

    settings = RDSettings(epochs=2, warmup_epochs=0, batch_size=8)
    features = _smooth_features(16, 1)
    pipeline = _tiny_feature_pipeline()
    data = TrainingSet(features, pipeline.tail(features).detach(), torch.zeros(16, dtype=torch.long))
    train(pipeline, data, rd_objective(1.0, 0.0, "distill"), 1, settings, tmp_path, torch.device("cpu"),
          description="", progress=False)
    broken = TrainingSet(features * torch.tensor(float("inf")), data.teacher, data.labels)  # overflowed features
    with pytest.raises(SplitbenchError, match=r"^training diverged at epoch 2, step 1: the loss is nan.*"
                                              r"the last good checkpoint .*last\.pt is kept"):
        train(_tiny_feature_pipeline(), broken, rd_objective(1.0, 0.0, "distill"), 2, settings, tmp_path,
              torch.device("cpu"), description="", progress=False)
    assert len(read_tensor_file(tmp_path / "last.pt")["history"]) == 1 and not (tmp_path / "epoch-2.pt").exists()


def test_train_refuses_an_infinite_lr_before_any_work(tmp_path: Path) -> None:
    done = run_in_process("train", "cifar_resnet20", "--lr", "inf", "--checkpoint-dir", str(tmp_path / "ckpt"),
                          "--out", str(tmp_path / "out"))
    assert (done.returncode, done.stderr) == (2, "error: --lr takes a finite number ≥ 0, got 'inf'\n")
    assert not list(tmp_path.iterdir())


@needs_shared_data
@needs_shared_weights
def test_train_with_a_diverging_lr_stops_in_one_line_and_exports_nothing(tmp_path: Path) -> None:
    """Adam at lr 1e30 takes every weight to about ±1e30 in one step; the next step's loss is NaN."""
    done = run("train", "cifar_resnet20", "--weights", str(shared_weights(RESNET20)), "--epochs", "1",
               "--train-limit", "32", "--limit", "10", "--batch-size", "16", "--lr", "1e30", "--randaugment", "0",
               "--device", "cpu", "--precision", "fp32", "--loader-workers", "0", "--data", str(SHARED_DATA),
               "--checkpoint-dir", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2, done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("error: training diverged at epoch 1, step 2: the loss is nan, the weights hold ")
    assert error.endswith("stopped without saving: no checkpoint had been written yet; try a lower --lr")
    assert "Traceback" not in done.stderr and not done.stderr.count("error:") - 1
    assert not list(tmp_path.rglob("*.safetensors")) and not list(tmp_path.rglob("*.pt"))


@contextlib.contextmanager
def _small_disk(path: Path, size: str = "256k"):
    """A real filesystem of ``size`` at ``path`` (tmpfs; needs root and the right to mount)."""
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=True)


@needs_root
def test_a_full_disk_ends_in_one_line_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    with _small_disk(tmp_path / "disk") as disk:
        path = write_tensor_file(disk / "last.pt", {"epoch": 1, "weights": torch.ones(1000)}, "training checkpoint")
        with pytest.raises(SplitbenchError) as full:
            write_tensor_file(path, {"epoch": 2, "weights": torch.ones(200_000)}, "training checkpoint")  # 800 kB
        message = str(full.value)  # results.DiskFull's words, or weights._write_atomically's
        assert str(path) in message and "no space left" in message.lower() and "\n" not in message
        assert read_tensor_file(path)["epoch"] == 1 and [p.name for p in disk.iterdir()] == ["last.pt"]
        big = nn.Linear(500, 500)  # 1 MB of weights: an export fails the same way
        with pytest.raises(SplitbenchError, match=r"(?i)no space left.*model\.safetensors|model\.safetensors.*no space left"):
            save_safetensors(big, disk / "model.safetensors")
        assert [p.name for p in disk.iterdir()] == ["last.pt"]
