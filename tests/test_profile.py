"""Per-layer profiles: the element counts and MAC totals of seed 003 and of the zoo."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import zoo
from splitbench.macs import trace_stages
from splitbench.profiling import PROFILE_COLUMNS, profile_model


def test_vgg16_profile_matches_seed_003() -> None:
    profile = profile_model(zoo("vgg16"))
    assert list(profile.table.columns) == PROFILE_COLUMNS
    pool4 = profile.row("pool4")
    assert pool4["elements"] == 100352 and pool4["output_shape"] == "512x14x14"
    assert pool4["cum_macs"] == pytest.approx(13.96e9, rel=0.005)
    assert profile.total_macs == pytest.approx(15.47e9, rel=0.001)
    assert profile.total_params == 138_357_544  # torchvision's VGG16
    # seed 003 Fig. 3: pool4 is the first output smaller than the 3x224x224 input
    first_smaller = profile.table.loc[profile.table["smaller_than_input"], "layer"].iloc[0]
    assert first_smaller == "pool4"
    assert list(profile.table["layer"][:3]) == ["conv1_1", "conv1_2", "pool1"]


def test_mobilenet_v2_profile_matches_seed_003() -> None:
    profile = profile_model(zoo("mobilenet_v2"))
    bottleneck6 = profile.row("bottleneck6")
    assert bottleneck6["elements"] == 25088 and bottleneck6["output_shape"] == "32x28x28"
    assert 0.30e9 <= profile.total_macs <= 0.32e9
    first_smaller = profile.table.loc[profile.table["smaller_than_input"], "layer"].iloc[0]
    assert first_smaller == "bottleneck2"  # seed 003 Fig. 4
    assert profile.total_params == 3_504_872


def test_resnet50_and_vit_totals() -> None:
    assert profile_model(zoo("resnet50")).total_macs == pytest.approx(4.1e9, rel=0.01)
    vit = profile_model(zoo("vit"))
    assert 0.6e9 <= vit.total_macs <= 0.7e9
    assert vit.row("block3")["output_shape"] == "65x512"  # 64 patches + class token


def test_cumulative_macs_and_all_stages() -> None:
    model = zoo("cifar_resnet20")
    by_layer = profile_model(model)
    by_stage = profile_model(model, all_stages=True)
    assert by_layer.total_macs == by_stage.total_macs
    assert len(by_stage.table) == len(model.trunk) > len(by_layer.table)
    assert (by_layer.table["cum_macs"] == by_layer.table["macs"].cumsum()).all()


def test_mac_convention_on_a_hand_counted_chain() -> None:
    # conv 3->8, 3x3, on 8x8 (padding 1): 8*8 outputs * 8 filters * 3*3*3 = 13824 MACs
    # linear 512 -> 10: 5120 MACs; ReLU and flatten count nothing
    stages = [nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(1), nn.Linear(8 * 8 * 8, 10)]
    macs, shapes = trace_stages(stages, torch.zeros(1, 3, 8, 8))
    assert macs == [13824, 0, 0, 5120]
    assert shapes == [(8, 8, 8), (8, 8, 8), (512,), (10,)]


def test_attention_kernel_is_counted() -> None:
    class Attention(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = k = v = x.view(1, 2, 16, 8)  # batch 1, 2 heads, 16 tokens, 8 dims
            return nn.functional.scaled_dot_product_attention(q, k, v)

    macs, _ = trace_stages([Attention()], torch.zeros(1, 256))
    assert macs == [2 * (2 * 16 * 16 * 8)]  # Q·Kᵀ and attention·V
