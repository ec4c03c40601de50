"""Per-layer profiles: the element counts and MAC totals of seed 003 and of the zoo."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import zoo
from splitbench.cuts import CutGraph
from splitbench.profiling import PROFILE_COLUMNS, profile_model


def test_vgg16_profile_matches_seed_003() -> None:
    profile = profile_model(zoo("vgg16"), rows="paper")
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
    profile = profile_model(zoo("mobilenet_v2"), rows="paper")
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


def test_cuts_nodes_and_paper_rows_agree() -> None:
    model = zoo("cifar_resnet20")
    by_cut = profile_model(model)
    by_node = profile_model(model, rows="nodes")
    by_paper = profile_model(model, rows="paper")
    assert by_cut.total_macs == by_node.total_macs == by_paper.total_macs == 40_931_968
    assert len(by_node.table) > len(by_cut.table) > len(by_paper.table) == 5  # conv1, layer1-3, fc
    assert by_node.table["valid_cut"].sum() == len(by_cut.table) == 24
    assert (by_cut.table["cum_macs"] == by_cut.table["macs"].cumsum()).all()
    assert list(by_paper.table["layer"]) == ["conv1", "layer1", "layer2", "layer3", "fc"]


def _graph(*modules: nn.Module, shape: tuple[int, ...]) -> CutGraph:
    return CutGraph.trace(nn.Sequential(*modules), torch.zeros(1, *shape))


def test_mac_convention_on_a_hand_counted_chain() -> None:
    # conv 3->8, 3x3, on 8x8 (padding 1): 8*8 outputs * 8 filters * 3*3*3 = 13824 MACs
    # linear 512 -> 10: 5120 MACs; ReLU and flatten count nothing
    graph = _graph(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(1), nn.Linear(8 * 8 * 8, 10), shape=(3, 8, 8))
    assert [cut.macs for cut in graph.cuts] == [13824, 0, 0, 5120]
    assert [cut.shape for cut in graph.cuts] == [(8, 8, 8), (8, 8, 8), (512,), (10,)]
    assert [cut.name for cut in graph.cuts] == ["0", "1", "2", "3"]


def test_attention_kernel_is_counted() -> None:
    class Attention(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q = k = v = x.view(1, 2, 16, 8)  # batch 1, 2 heads, 16 tokens, 8 dims
            return nn.functional.scaled_dot_product_attention(q, k, v)

    graph = _graph(Attention(), shape=(256,))
    assert graph.total_macs == 2 * (2 * 16 * 16 * 8)  # Q·Kᵀ and attention·V
