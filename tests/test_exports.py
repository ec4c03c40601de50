"""A pruned export is a model: every command takes its file in place of a model name.

The file is the smaller model (its structure in the safetensors metadata, its weights in the
tensors); the resolver rebuilds it on the base model's spec, so its cuts, data and
preprocessing are the base model's, and ``--weights auto``/``default`` load its own weights.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import SHARED_DATA, needs_shared_data, run_in_process
from splitbench.zoo import count_parameters, load_model
from splitbench.zoo.vit import REFERENCE_CHECKPOINT
from splitbench.zoo.vit_pruned import prune_vit, save_pruned_vit

REPO = Path(__file__).resolve().parents[1]
HALF_ATTENTION = {(block, "attention"): torch.arange(0, 512, 2) for block in range(6)}  # 256 of 512 channels a block


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """The seed-002 ViT (the committed fp16 checkpoint) with half of every block's attention channels."""
    trained = load_model("vit", str(REPO / REFERENCE_CHECKPOINT)).model
    pruned = prune_vit(trained, HALF_ATTENTION).eval()
    return save_pruned_vit(pruned, HALF_ATTENTION, tmp_path_factory.mktemp("export") / "vit-half.safetensors"), pruned


def test_an_export_loads_as_the_smaller_model_with_its_own_weights(export) -> None:
    path, pruned = export
    model = load_model(str(path), "auto")
    assert model.spec.source == "export" and model.weights.source == str(path) and model.weights.sha256
    # each block loses 256 channels: 3 × 256 rows of to_qkv (512 weights each, no bias) and 256 columns of to_out
    assert count_parameters([model.model]) == count_parameters([load_model("vit").model]) - 6 * 256 * (3 * 512 + 512)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.model(x), pruned(x))
        head, tail = model.split("add_6")  # after block 3: head ∘ tail is the model
        assert torch.equal(tail(head(x)), model.model(x))


def test_profile_takes_the_export_by_its_path(export, tmp_path: Path) -> None:
    path = export[0]
    done = run_in_process("profile", str(path), "--out", str(tmp_path / "profile"))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(tmp_path / "profile" / "profile.csv")
    assert table["params"].sum() == 9_524_842 - 6 * 256 * 2048  # the unpruned ViT's 9,524,842, less the channels


@needs_shared_data
def test_a_pruned_export_is_served_over_the_link(export, tmp_path: Path) -> None:
    done = run_in_process("link", str(export[0]), "--at", "add_6", "--codec", "minmax8", "--shaper", "none",
                          "--bandwidth", "none", "--data", str(SHARED_DATA), "--limit", "4", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    per_image = pd.read_csv(tmp_path / "link_images.csv")
    assert len(per_image) == 4 and (per_image["payload_bytes"] == 65 * 512 + 8).all()  # 65 tokens × 512, 8 bits, + range


def test_an_export_given_as_weights_of_another_model_fails_in_one_line_under_dry_run(export) -> None:
    path = export[0]
    for command in (["plan", "vit", "--dry-run"], ["profile", "vit"], ["split", "vit", "--at", "add_6"]):
        done = run_in_process(*command, "--weights", str(path))
        assert done.returncode == 2, done.stderr
        assert done.stderr == (f"error: --weights {path} is a pruned model that prune --save-models wrote: its layers "
                               "are smaller than the model's; give the file as the model (splitbench COMMAND "
                               "FILE.safetensors), its weights come with it\n")


def test_a_file_that_is_not_an_export_is_refused_as_a_model(tmp_path: Path) -> None:
    done = run_in_process("profile", str(REPO / REFERENCE_CHECKPOINT))
    assert done.returncode == 2
    assert done.stderr.endswith("holds no pruned-ViT structure (metadata 'pruned_channels'): not a model export\n")
    missing = run_in_process("profile", str(tmp_path / "absent.safetensors"))
    assert missing.returncode == 2 and missing.stderr == f"error: model file not found: {tmp_path / 'absent.safetensors'}\n"
