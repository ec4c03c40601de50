"""Weights: strict loading, safe unpickling, and one-line errors for files that do not fit."""

from __future__ import annotations

import pickle
import urllib.error
from pathlib import Path

import pytest
import torch

from conftest import needs_shared_weights, shared_weights
from splitbench.errors import SplitbenchError
from splitbench.weights import sha256_of
from splitbench.zoo import load_model

MOBILENET = "mobilenet_v2-imagenet-int8dequant.pth"
RESNET20 = "cifar-resnet20-12fca82f.th"


@needs_shared_weights
def test_shared_checkpoints_load_strictly_with_their_sha256() -> None:
    mobile = load_model("mobilenet_v2", str(shared_weights(MOBILENET)))
    assert mobile.weights.sha256 == "5bda536ec6a2257113dcd9f59fc1ddb4ebb3705ce357f6bae0d54bb03da3980d"
    resnet = load_model("cifar_resnet20", str(shared_weights(RESNET20)))  # {'state_dict': {'module.…'}}
    assert resnet.weights.sha256.startswith("12fca82f")
    assert not resnet.model.training


@needs_shared_weights
def test_weights_of_another_model_are_refused() -> None:
    with pytest.raises(SplitbenchError, match=r"do not fit cifar_resnet56: .*missing keys \(e\.g\. layer1\.3"):
        load_model("cifar_resnet56", str(shared_weights(RESNET20)))
    with pytest.raises(SplitbenchError, match=r"do not fit vgg16: .*unexpected keys"):
        load_model("vgg16", str(shared_weights(MOBILENET)))


def test_shape_mismatch_is_named(tmp_path: Path) -> None:
    state = load_model("cifar_resnet20").model.state_dict()
    state["linear.weight"] = torch.zeros(100, 64)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(SplitbenchError, match=r"shape mismatches \(e\.g\. linear\.weight: file \(100, 64\) vs model \(10, 64\)\)"):
        load_model("cifar_resnet20", str(path))


def test_round_trip_through_safetensors_and_checkpoint_dicts(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    original = load_model("cifar_resnet20").model
    state = {k: v.contiguous() for k, v in original.state_dict().items()}
    save_file(state, tmp_path / "w.safetensors")
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "w.pth")
    x = torch.randn(2, 3, 32, 32)
    for name in ("w.safetensors", "w.pth"):
        loaded = load_model("cifar_resnet20", str(tmp_path / name))
        assert loaded.weights.sha256 == sha256_of(tmp_path / name)
        assert torch.equal(loaded.model(x), original(x))


class _Payload:
    def __reduce__(self):  # what a malicious checkpoint would do on unpickling
        return (print, ("unpickled!",))


def test_arbitrary_pickles_are_not_executed(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"state_dict": _Payload()}, handle)
    with pytest.raises(SplitbenchError, match=r"cannot read weights from .*evil\.pth: not a plain tensor checkpoint"):
        load_model("cifar_resnet20", str(path))


def test_missing_file_is_named() -> None:
    with pytest.raises(SplitbenchError, match="weights file not found: /nonexistent/w.pth"):
        load_model("vgg16", "/nonexistent/w.pth")


def test_default_weights_fail_clearly_without_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(SplitbenchError, match=r"cannot get torchvision's default weights for mobilenet_v2 .*--weights PATH"):
        load_model("mobilenet_v2", "default")
    with pytest.raises(SplitbenchError, match="torchvision publishes no weights for vit"):
        load_model("vit", "default")
