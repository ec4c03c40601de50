"""FLGC layers: learned assignments, seed 004's duplication rule, and real grouped inference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from splitbench.errors import SplitbenchError
from splitbench.grouping import FLGCConv2d, GroupedConv2d, duplicated_maps, flgc
from splitbench.grouping.flgc import effective_counts
from splitbench.macs import count_macs


def layer_with_groups(inputs: list[int], filters: list[int], groups: int, duplicate_top: int = 0) -> FLGCConv2d:
    """An FLGC layer whose arg-max groups are ``inputs[i]`` and ``filters[o]``."""
    torch.manual_seed(0)
    layer = FLGCConv2d(len(inputs), len(filters), 3, groups, padding=1, bias=True, duplicate_top=duplicate_top)
    with torch.no_grad():
        layer.input_logits.copy_(torch.randn(len(inputs), groups) * 0.1 + 3 * nn.functional.one_hot(torch.tensor(inputs), groups))
        layer.filter_logits.copy_(3 * nn.functional.one_hot(torch.tensor(filters), groups).float())
        layer.bias.normal_()
    return layer


def test_without_duplication_each_map_and_filter_lies_in_one_group() -> None:
    layer = FLGCConv2d(16, 24, 3, 4)
    membership, filter_group = layer.hard_assignment()
    assert membership.shape == (16, 4) and (membership.sum(dim=1) == 1).all()
    assert filter_group.shape == (24,) and ((filter_group >= 0) & (filter_group < 4)).all()
    mask = layer.connection_mask()
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask.sum(dim=0) == torch.bincount(filter_group, minlength=4)[membership.float().argmax(1)]).all()


def test_duplication_follows_the_seed_rule_on_hand_made_scores() -> None:
    # 6 maps, 2 groups. Group 0 owns maps 0, 1, 2 (scores 0.9, 0.8, 0.6); group 1 owns 3, 4, 5.
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]])
    assignment = scores.argmax(dim=1)
    # top-2: group 0 threshold (0.9+0.8)/2 = 0.85, no map of group 1 scores above it for group 0;
    # group 1 threshold (0.8+0.7)/2 = 0.75, no map of group 0 scores above it for group 1.
    assert not duplicated_maps(scores, assignment, 2).any()
    # top-3: group 0 threshold (0.9+0.8+0.6)/3 = 0.7667: none; group 1 (0.8+0.7+0.55)/3 = 0.6833: none.
    # Lower group 1's own scores so map 2 (0.4) passes: maps 3,4,5 score 0.35, 0.36, 0.5 -> 0.4033.
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.55, 0.45], [0.65, 0.35], [0.64, 0.36], [0.5, 0.5]])
    assignment = torch.tensor([0, 0, 0, 1, 1, 1])
    extra = duplicated_maps(scores, assignment, 3)
    # group 0: threshold (0.9+0.8+0.55)/3 = 0.75 -> none of maps 3-5 (0.65, 0.64, 0.5) pass.
    # group 1: threshold (0.35+0.36+0.5)/3 = 0.4033 -> map 2 (0.45) passes; maps 0, 1 do not.
    assert extra[:, 0].tolist() == [False] * 6
    assert extra[:, 1].tolist() == [False, False, True, False, False, False]
    assert not duplicated_maps(scores, assignment, 0).any()


@pytest.mark.parametrize(("inputs", "filters", "groups", "duplicate_top"), [
    ([0, 1, 2, 3] * 4, [0, 1, 2, 3] * 6, 4, 0),                      # equal groups: one groups=4 conv
    ([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3], [0] * 5 + [1] * 3 + [2] * 7 + [3] * 9, 4, 0),  # unequal
    ([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3], [0] * 5 + [1] * 3 + [2] * 7 + [3] * 9, 4, 3),  # with duplicates
    ([0, 0, 1, 1, 1, 1], [0, 0, 0, 2, 2, 2], 3, 0),                  # a group without maps or filters
])
@pytest.mark.parametrize("padding_limit", [float("inf"), 0.0], ids=["padded", "per-group"])
def test_grouped_module_equals_the_masked_dense_convolution(inputs, filters, groups, duplicate_top, padding_limit,
                                                            monkeypatch) -> None:
    monkeypatch.setattr(flgc, "PADDING_LIMIT", padding_limit)
    layer = layer_with_groups(inputs, filters, groups, duplicate_top).eval()
    grouped = GroupedConv2d(layer)
    assert grouped.padded == (padding_limit > 0)
    x = torch.randn(2, len(inputs), 9, 9)
    with torch.no_grad():
        torch.testing.assert_close(grouped(x), layer(x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("padding_limit", [float("inf"), 0.0], ids=["padded", "per-group"])
def test_connections_and_macs_count_duplicated_maps_once_per_group(padding_limit, monkeypatch) -> None:
    monkeypatch.setattr(flgc, "PADDING_LIMIT", padding_limit)
    inputs = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3]
    filters = [0] * 5 + [1] * 3 + [2] * 7 + [3] * 9
    layer = layer_with_groups(inputs, filters, 4, duplicate_top=3).eval()
    with torch.no_grad():  # weak own scores for group 1 (maps 3, 4); map 5 nearly ties groups 2 and 1
        layer.input_logits.copy_(nn.functional.one_hot(torch.tensor(inputs), 4).float())
        layer.input_logits[3:5, 1] = 0.5
        layer.input_logits[5, 1] = 0.99
    membership, _ = layer.hard_assignment()
    per_group_inputs = membership.sum(dim=0).tolist()
    expected = sum(i * o for i, o in zip(per_group_inputs, [5, 3, 7, 9], strict=True)) * 9
    assert per_group_inputs == [3, 3, 4, 3]  # map 5 feeds group 1 as well as its own group 2
    grouped = GroupedConv2d(layer)
    assert grouped.connections() == expected
    x = torch.randn(1, 12, 8, 8)
    assert effective_counts(grouped, x) == (expected + 24, expected * 8 * 8)  # + bias; 8x8 output pixels
    # What runs: the padded layer multiplies G x widest inputs x widest filters.
    executed = 4 * max(per_group_inputs) * 9 * 9 if grouped.padded else expected
    assert grouped.stored_weights() == executed
    assert count_macs(grouped, x).total() == executed * 8 * 8


def test_gradients_reach_both_assignment_matrices() -> None:
    layer = FLGCConv2d(8, 12, 3, 4, padding=1, duplicate_top=3)
    layer(torch.randn(2, 8, 6, 6)).square().mean().backward()
    assert layer.input_logits.grad is not None and layer.input_logits.grad.abs().sum() > 0
    assert layer.filter_logits.grad is not None and layer.filter_logits.grad.abs().sum() > 0


@pytest.mark.parametrize("groups", [0, -1, 9])
def test_bad_group_counts_fail_in_one_line(groups: int) -> None:
    with pytest.raises(SplitbenchError, match=r"^groups must be between 1 and 8 .*got") as error:
        FLGCConv2d(8, 16, 3, groups)
    assert "\n" not in str(error.value)


def test_cifar_resnet_gets_flgc_in_its_blocks_and_groups_for_inference() -> None:
    from splitbench.grouping.flgc import (
        duplication_counts,
        replace_convolutions,
        to_grouped,
    )
    from splitbench.zoo import load_model

    model = load_model("cifar_resnet20").model
    replaced = replace_convolutions(model, 4, duplicate_top=3)
    assert len(replaced) == 18 and "conv1" not in replaced and "layer1.0.conv1" in replaced
    model.eval()
    counts = duplication_counts(model)
    assert set(counts) == set(replaced) and all(c >= 0 for c in counts.values())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        masked = model(x)
        grouped = to_grouped(model)(x)
    torch.testing.assert_close(grouped, masked, atol=1e-4, rtol=1e-4)
    with pytest.raises(SplitbenchError, match="no dense 3x3 convolution"):
        replace_convolutions(nn.Sequential(nn.Conv2d(3, 8, 1)), 2)


def test_duplication_cannot_fire_with_two_groups() -> None:
    # A map outside group g scores below 1/2 for g; g's own maps score at least 1/2, so no threshold is passed.
    generator = torch.Generator().manual_seed(0)
    for spread in (0.01, 1.0, 10.0):
        scores = (torch.randn(64, 2, generator=generator) * spread).softmax(dim=1)
        assert not duplicated_maps(scores, scores.argmax(dim=1), 3).any()
    # With more groups it can, but only where a group's own top maps score weakly: 64 maps in 4
    # groups (16 each, so the top 3 are strong) take none; 16 maps in 8 groups (2 each) take one.
    scores = torch.randn(64, 4, generator=torch.Generator().manual_seed(0)).softmax(dim=1)
    assert not duplicated_maps(scores, scores.argmax(dim=1), 3).any()
    scores = torch.randn(16, 8, generator=torch.Generator().manual_seed(0)).softmax(dim=1)
    assert int(duplicated_maps(scores, scores.argmax(dim=1), 3).sum()) == 1


def test_by_default_only_equal_groups_share_one_grouped_call() -> None:
    assert GroupedConv2d(layer_with_groups([0, 1, 2, 3] * 4, [0, 1, 2, 3] * 6, 4)).padded
    unequal = layer_with_groups([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3], [0] * 5 + [1] * 3 + [2] * 7 + [3] * 9, 4)
    grouped = GroupedConv2d(unequal)
    assert not grouped.padded and grouped.stored_weights() == grouped.connections()
