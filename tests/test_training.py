"""Training: batched augmentation, a loop that learns, and resumption that changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from conftest import SHARED_DATA, needs_shared_data, needs_shared_weights, shared_weights
from splitbench.errors import SplitbenchError
from splitbench.training import CifarAugment, TrainConfig, train_classifier
from splitbench.training.augment import normalize, random_crop
from splitbench.weights import read_state_dict, save_safetensors, sha256_of
from test_cli import run

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def test_random_crop_takes_a_window_of_the_zero_padded_image() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.int32).view(2, 3, 8, 8).to(torch.uint8)
    generator = torch.Generator().manual_seed(3)
    cropped = random_crop(images, 2, generator)
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for n in range(2):
        windows = [padded[n, :, top : top + 8, left : left + 8] for top in range(5) for left in range(5)]
        assert any(torch.equal(cropped[n], window) for window in windows)


def test_augmentation_keeps_shape_and_dtype() -> None:
    images = torch.randint(0, 256, (20, 3, 32, 32), dtype=torch.uint8)
    out = CifarAugment(chunk=4)(images)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert not torch.equal(out, images)


def separable_data(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes a linear model can tell apart: dark images and bright images."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    images = torch.randint(0, 100, (n, 3, 8, 8), generator=generator, dtype=torch.uint8)
    return torch.where(labels.view(-1, 1, 1, 1) == 1, images + 150, images).to(torch.uint8), labels


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))


def plain() -> CifarAugment:
    return CifarAugment(randaugment_ops=0, padding=1)


def test_training_learns_a_separable_task(tmp_path) -> None:
    model = tiny_model()
    data = separable_data()
    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2)
    result = train_classifier(model, data, data, mean=MEAN, std=STD, config=config, checkpoint_dir=tmp_path,
                              device=torch.device("cpu"), augment=plain(), progress=False)
    assert len(result.history) == 4 and result.test_top1 is not None and result.test_top1 > 95
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine to 0 at the last epoch


def test_an_interrupted_run_resumes_to_the_same_weights(tmp_path) -> None:
    data = separable_data()
    config = TrainConfig(epochs=4, batch_size=32, lr=1e-2)
    kwargs = dict(mean=MEAN, std=STD, config=config, device=torch.device("cpu"), progress=False)

    straight = tiny_model()
    train_classifier(straight, data, None, checkpoint_dir=tmp_path / "a", augment=plain(), **kwargs)

    def stop_after_two(row: dict) -> None:
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    interrupted = tiny_model()
    with pytest.raises(KeyboardInterrupt):
        train_classifier(interrupted, data, None, checkpoint_dir=tmp_path / "b", augment=plain(),
                         on_epoch=stop_after_two, **kwargs)
    resumed = tiny_model()
    result = train_classifier(resumed, data, None, checkpoint_dir=tmp_path / "b", augment=plain(), **kwargs)
    assert result.resumed_from_epoch == 2 and result.epochs_run_now == 2 and len(result.history) == 4
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_a_run_stopped_inside_an_epoch_resumes_from_that_step_to_the_same_weights(tmp_path) -> None:
    """checkpoint_s=0 saves after every step; a stop at step 5 of epoch 2 loses nothing."""
    data = separable_data()
    config = TrainConfig(epochs=3, batch_size=32, lr=1e-2, checkpoint_s=0.0)
    kwargs = dict(mean=MEAN, std=STD, config=config, device=torch.device("cpu"), progress=False)
    straight = tiny_model()
    expected = train_classifier(straight, data, None, checkpoint_dir=tmp_path / "a", augment=plain(), **kwargs)

    def stop_inside_epoch_two(epoch: int, step: int) -> None:
        if (epoch, step) == (1, 5):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_classifier(tiny_model(), data, None, checkpoint_dir=tmp_path / "b", augment=plain(),
                         on_step=stop_inside_epoch_two, **kwargs)
    steps_after_resume = []
    resumed = tiny_model()
    result = train_classifier(resumed, data, None, checkpoint_dir=tmp_path / "b", augment=plain(),
                              on_step=lambda epoch, step: steps_after_resume.append((epoch, step)), **kwargs)
    # 8 steps an epoch; step 5's checkpoint was written before the stop, so the run goes on at step 6.
    assert steps_after_resume[0] == (1, 6) and len(steps_after_resume) == 3 + 8
    assert [row["train_loss"] for row in result.history] == [row["train_loss"] for row in expected.history]
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_auto_precision_is_bf16_only_where_the_hardware_has_it() -> None:
    from splitbench.training.trainer import native_bf16, resolve_precision

    cpu = torch.device("cpu")
    flags = open("/proc/cpuinfo").read().split()
    assert native_bf16(cpu) == ("avx512_bf16" in flags or "amx_bf16" in flags)
    assert resolve_precision("auto", cpu) == ("bf16" if native_bf16(cpu) else "fp32")
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(SplitbenchError, match="unknown precision 'fp8'; use auto, bf16, fp32"):
        resolve_precision("fp8", cpu)


def test_bf16_training_follows_the_fp32_loss_curve(tmp_path) -> None:
    data = separable_data()
    losses = {}
    for precision in ("fp32", "bf16"):
        config = TrainConfig(epochs=3, batch_size=32, lr=1e-2, precision=precision)
        result = train_classifier(tiny_model(), data, data, mean=MEAN, std=STD, config=config,
                                  checkpoint_dir=tmp_path / precision, device=torch.device("cpu"), augment=plain(),
                                  progress=False)
        losses[precision] = [row["train_loss"] for row in result.history]
        assert result.test_top1 > 95
    assert losses["bf16"] != losses["fp32"]  # autocast really ran
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.05)


def test_resuming_with_another_recipe_fails_in_one_line(tmp_path) -> None:
    data = separable_data(64)
    kwargs = dict(mean=MEAN, std=STD, device=torch.device("cpu"), progress=False, augment=plain())
    train_classifier(tiny_model(), data, None, config=TrainConfig(epochs=1, batch_size=32), checkpoint_dir=tmp_path, **kwargs)
    with pytest.raises(SplitbenchError, match="another recipe .*lr: 0.0001 -> 0.001"):
        train_classifier(tiny_model(), data, None, config=TrainConfig(epochs=1, batch_size=32, lr=1e-3),
                         checkpoint_dir=tmp_path, **kwargs)


def test_fp16_export_round_trips_within_half_precision(tmp_path) -> None:
    model = tiny_model()
    path = save_safetensors(model, tmp_path / "m.safetensors", dtype=torch.float16, metadata={"test_top1": "50.00"})
    state = read_state_dict(path)
    assert state["1.weight"].dtype == torch.float16
    assert torch.equal(state["1.weight"].float(), model[1].weight.detach().half().float())


def test_normalize_matches_the_evaluation_transform() -> None:
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    expected = (images.float() / 255 - 0.5) / 0.25
    assert torch.allclose(normalize(images, MEAN, STD), expected)


@needs_shared_data
@needs_shared_weights
def test_train_command_fine_tunes_exports_and_resumes(tmp_path) -> None:
    """`splitbench train` end to end on real CIFAR-10, from the shared ResNet-20 (cheap on a CPU)."""
    from safetensors import safe_open

    args = ["train", "cifar_resnet20", "--weights", str(shared_weights("cifar-resnet20-12fca82f.th")),
            "--epochs", "1", "--train-limit", "256", "--limit", "500", "--batch-size", "64", "--lr", "1e-5",
            "--randaugment", "0", "--device", "cpu", "--data", str(SHARED_DATA), "--loader-workers", "0",
            "--checkpoint-dir", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")]
    done = run(*args)
    assert done.returncode == 0, done.stderr
    history = pd.read_csv(tmp_path / "out" / "train.csv")
    assert list(history["epoch"]) == [1] and history["test_top1"].iloc[0] > 70  # published 91.8 % lossless, ~81 % here
    export = tmp_path / "out" / "cifar_resnet20-cifar10-fp16.safetensors"
    with safe_open(str(export), framework="pt") as handle:
        assert float(handle.metadata()["test_top1"]) == pytest.approx(history["test_top1"].iloc[0], abs=0.01)
        assert json.loads(handle.metadata()["recipe"])["lr"] == 1e-5
        # a warm start names the weights it started from
        assert json.loads(handle.metadata()["init_weights"])["sha256"] == sha256_of(Path(args[3]))
    sidecar = json.loads((tmp_path / "out" / "train.json").read_text())
    assert sidecar["data"]["train"]["images"] == 256 and sidecar["arguments"]["epochs_run_now"] == 1
    again = run(*args)  # finished: resumes at the end and trains nothing
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "out" / "train.json").read_text())["arguments"]["epochs_run_now"] == 0


def test_batchnorm_recalibration_replaces_running_statistics_with_those_of_the_images() -> None:
    from splitbench.training.trainer import recalibrate_batchnorm

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).eval()
    with torch.no_grad():
        model[1].running_mean.fill_(5.0)
        model[1].running_var.fill_(9.0)
    images = torch.randn(600, 3, 4, 4) * 2 + 1
    recalibrate_batchnorm(model, images, batch_size=200)
    with torch.no_grad():
        features = model[0](images)
    # Cumulative average over equal batches: the mean exactly, the variance as the mean of batch variances.
    torch.testing.assert_close(model[1].running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5, rtol=1e-5)
    batch_vars = torch.stack([b.var(dim=(0, 2, 3)) for b in features.split(200)])
    torch.testing.assert_close(model[1].running_var, batch_vars.mean(0), atol=1e-4, rtol=1e-4)
    assert not model.training and model[1].momentum == 0.1
