"""ViT channel pruning: physically smaller models that compute what the masked original does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from vit_pytorch import ViT

from conftest import SHARED_DATA, needs_shared_data, zoo
from splitbench.errors import SplitbenchError
from splitbench.pruning import PrunedAttention, channel_groups, prune_vit, select_channels
from splitbench.pruning.scores import ChannelLosses, channel_losses, stability_scores, weight_scores
from splitbench.pruning.vit_channels import embed, run_blocks
from splitbench.zoo.vit_pruned import load_pruned_vit, save_pruned_vit
from splitbench.zoo import count_parameters

SMALL = dict(image_size=32, patch_size=8, num_classes=10, dim=64, depth=2, heads=4, dim_head=16, mlp_dim=48,
             dropout=0.1, emb_dropout=0.1)


def small_vit(seed: int = 0) -> ViT:
    torch.manual_seed(seed)
    return ViT(**SMALL).eval()


def gates_for(keep: dict, model: ViT) -> dict:
    sizes = {(g.block, g.target): g.size for g in channel_groups(model, ("attention", "mlp"))}
    gates = {}
    for key, indices in keep.items():
        gate = torch.zeros(sizes[key])
        gate[indices] = 1.0
        gates[key] = gate
    return gates


def test_pruned_model_equals_the_masked_original_with_unequal_heads() -> None:
    model = small_vit()
    keep = {
        (0, "attention"): torch.tensor([0, 1, 2, 5, 17, 18, 40, 41, 42, 43, 44, 63]),  # widths 4, 2, 5, 1
        (1, "attention"): torch.tensor([16, 17, 18, 19, 20, 30, 31]),  # heads 0, 2 and 3 removed entirely
        (1, "mlp"): torch.tensor([3, 4, 7, 47]),
    }
    pruned = prune_vit(model, keep).eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        masked = run_blocks(model, embed(model, x), 0, gates_for(keep, model))
        assert torch.allclose(pruned(x), masked, atol=1e-5)
        assert torch.equal(run_blocks(model, embed(model, x)), model(x))  # the gated path is the model
    first = pruned.transformer.layers[0][0]
    assert isinstance(first, PrunedAttention)
    assert first.widths == [(1, 1), (2, 1), (4, 1), (5, 1)] and first.channels == 12
    assert pruned.transformer.layers[1][0].widths == [(7, 1)]
    assert model.transformer.layers[0][0].to_qkv.out_features == 3 * 64  # the original is untouched


def test_a_block_without_channels_adds_only_its_output_bias() -> None:
    model = small_vit()
    keep = {(0, "attention"): torch.tensor([], dtype=torch.long)}
    pruned = prune_vit(model, keep).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(pruned(x), run_blocks(model, embed(model, x), 0, gates_for(keep, model)), atol=1e-5)
    assert pruned.transformer.layers[0][0].channels == 0


def test_selection_keeps_min_keep_channels_per_block_at_extreme_ratios() -> None:
    model = small_vit()
    scores = weight_scores(model, channel_groups(model))
    for scope in ("uniform", "global"):
        keep = select_channels(scores, 0.999, scope)
        assert [len(v) for v in keep.values()] == [1, 1], scope


def test_pruning_removes_exactly_the_channels_parameters() -> None:
    """Seed 002's model: 30 % of every block's 512 attention channels = 154 channels x 2048 weights."""
    model = zoo("vit").model
    scores = weight_scores(model, channel_groups(model))
    pruned = prune_vit(model, select_channels(scores, 0.3, "uniform"))
    full = count_parameters([model])
    patch_embedding = 2 * 48 + 48 * 512 + 512 + 2 * 512
    attention = 2 * 512 + 512 * 3 * 512 + 512 * 512 + 512
    feedforward = 2 * 512 + 2 * (512 * 512 + 512)
    assert full == patch_embedding + 65 * 512 + 512 + 6 * (attention + feedforward) + 2 * 512 + 512 * 10 + 10
    assert count_parameters([pruned]) == full - 6 * 154 * (3 * 512 + 512)
    block = pruned.transformer.layers[0][0]
    assert block.to_qkv.weight.shape == (3 * 358, 512) and block.to_out[0].weight.shape == (512, 358)
    # Table 3's reduction at 30 %: about 20 % of the parameters.
    assert 19.5 < 100 * (1 - count_parameters([pruned]) / full) < 20.5


def test_saved_pruned_model_loads_back_identically(tmp_path) -> None:
    model = small_vit()
    keep = {(0, "attention"): torch.arange(0, 64, 3), (1, "mlp"): torch.arange(10)}
    pruned = prune_vit(model, keep).eval()
    path = save_pruned_vit(pruned, keep, tmp_path / "pruned.safetensors")
    loaded = load_pruned_vit(path, lambda: ViT(**SMALL)).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


def test_uniform_scope_prunes_every_block_alike_and_global_ranks_all_blocks() -> None:
    model = small_vit()
    groups = channel_groups(model)
    scores = {groups[0]: torch.arange(64.0), groups[1]: torch.arange(64.0) + 100}
    uniform = select_channels(scores, 0.25, "uniform")
    assert [len(v) for v in uniform.values()] == [48, 48]
    assert uniform[(0, "attention")].tolist() == list(range(16, 64))
    globally = select_channels(scores, 0.25, "global")
    # The 32 lowest scores are all in block 1: it loses 32 channels, block 2 none.
    assert globally[(0, "attention")].tolist() == list(range(32, 64))
    assert len(globally[(1, "attention")]) == 64
    # Every group keeps its best channel even when the ranking would take it.
    assert len(select_channels(scores, 0.95, "global")[(0, "attention")]) == 1


def test_equal_scores_are_broken_by_position() -> None:
    group = channel_groups(small_vit())[0]
    keep = select_channels({group: torch.zeros(64)}, 0.5, "uniform")[(0, "attention")]
    assert keep.tolist() == list(range(32))


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_ratios_outside_0_1_fail(ratio: float) -> None:
    group = channel_groups(small_vit())[0]
    with pytest.raises(SplitbenchError, match="pruning ratio must be in"):
        select_channels({group: torch.zeros(64)}, ratio, "uniform")


def test_weight_score_is_the_l1_norm_of_the_last_layers_column() -> None:
    model = small_vit()
    groups = channel_groups(model, ("attention", "mlp"))
    scores = weight_scores(model, groups)
    to_out = model.transformer.layers[1][0].to_out[0].weight
    assert torch.allclose(scores[groups[2]][7], to_out[:, 7].abs().sum())
    assert scores[groups[1]].shape == (48,)


def test_stability_is_ce_minus_the_residual_of_the_least_squares_fit() -> None:
    group = channel_groups(small_vit())[0]
    ce = torch.tensor([1.0, 2.0, 3.0, 4.0] + [2.5] * 60)
    kl = torch.tensor([1.0, 2.0, 3.0, 10.0] + [2.6] * 60)
    scores, fits = stability_scores(ChannelLosses({group: ce}, {group: kl}, 0.0, "exact", 4))
    slope, intercept = np.polyfit(ce.double().numpy(), kl.double().numpy(), 1)
    expected = ce.double().numpy() - np.abs(slope * ce.double().numpy() + intercept - kl.double().numpy())
    assert np.allclose(scores[group].numpy(), expected, atol=1e-5)
    assert fits[0].slope == pytest.approx(slope) and fits[0].intercept == pytest.approx(intercept)
    # Channel 3 has the largest L_CE but its L_KL is far off the line: it ranks below channel 2.
    assert scores[group][3] < scores[group][2]


def test_exact_losses_are_the_losses_of_the_model_without_the_channel() -> None:
    model = small_vit()
    images, labels = torch.randn(12, 3, 32, 32), torch.randint(0, 10, (12,))
    groups = channel_groups(model, ("attention", "mlp"))
    losses = channel_losses(model, images, labels, groups[2:4], estimator="exact", batch_size=8, channels_per_pass=5)
    with torch.no_grad():
        teacher = model(images).log_softmax(-1)
        for group, channel in [(groups[2], 9), (groups[3], 40)]:
            gate = torch.ones(group.size)
            gate[channel] = 0
            log_p = run_blocks(model, embed(model, images), 0, {(group.block, group.target): gate}).log_softmax(-1)
            assert losses.ce[group][channel] == pytest.approx(float(F.nll_loss(log_p, labels)), rel=1e-4)
            kl = float(F.kl_div(log_p, teacher, log_target=True, reduction="batchmean"))
            assert losses.kl[group][channel] == pytest.approx(kl, rel=1e-3, abs=1e-7)


def test_taylor_terms_match_finite_differences() -> None:
    """The Taylor estimator's gradient and Fisher terms are the derivatives of the real losses."""
    model = small_vit()
    images, labels = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    group = channel_groups(model)[1]
    taylor = channel_losses(model, images, labels, [group], estimator="taylor", fisher="exact", batch_size=6)
    channel, eps = 13, 1e-2
    with torch.no_grad():
        gate = torch.ones(group.size, dtype=torch.float64)
        model.double()  # the KL of a small step is ~1e-8: float32 rounding would swamp it

        def log_probs(g: float) -> torch.Tensor:
            gate[channel] = g
            return run_blocks(model, embed(model, images.double()), 0, {(1, "attention"): gate}).log_softmax(-1)

        teacher = log_probs(1.0)

        def losses_at(g: float) -> tuple[float, float]:
            log_p = log_probs(g)
            kl = float(F.kl_div(log_p, teacher, log_target=True, reduction="batchmean"))
            return float(F.nll_loss(log_p, labels)), kl

        ce_1, _ = losses_at(1.0)
        ce_plus, _ = losses_at(1.0 + eps)
        ce_minus, kl_minus = losses_at(1.0 - eps)
    model.float()
    gradient = (ce_plus - ce_minus) / (2 * eps)
    half_fisher = float(taylor.kl[group][channel])  # ½F: KL(q‖p_{1-ε}) ≈ ½ F ε²
    assert kl_minus / eps**2 == pytest.approx(half_fisher, rel=0.05)
    assert float(taylor.ce[group][channel]) == pytest.approx(ce_1 - gradient, rel=1e-3)
    sampled = channel_losses(model, images.repeat(8, 1, 1, 1), labels.repeat(8), [group], estimator="taylor")
    # One teacher-drawn label per image: an unbiased estimate, close with 128 draws.
    assert float(sampled.kl[group][channel]) == pytest.approx(half_fisher, rel=0.3)


def test_ratio_zero_keeps_the_model_exactly() -> None:
    model = small_vit()
    groups = channel_groups(model, ("attention", "mlp"))
    pruned = prune_vit(model, select_channels(weight_scores(model, groups), 0.0, "global")).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(pruned(x), model(x), atol=1e-6)
    assert count_parameters([pruned]) == count_parameters([model])


def hand_built(block_scale: float = 1.0) -> ViT:
    """A small ViT whose to_out column i has L1 norm (i + 1) * 64 (times block_scale in block 2)."""
    model = small_vit()
    with torch.no_grad():
        for block, (attention, _) in enumerate(model.transformer.layers):
            column_norms = torch.arange(1.0, 65.0) * (block_scale if block == 1 else 1.0)
            attention.to_out[0].weight.copy_(column_norms.expand(64, 64).clone())
            attention.to_out[0].weight[::2] *= -1  # signs must not matter
    return model


def test_weight_method_removes_the_smallest_l1_channels() -> None:
    model = hand_built()
    keep = select_channels(weight_scores(model, channel_groups(model)), 0.25, "uniform")
    assert keep[(0, "attention")].tolist() == list(range(16, 64))


def test_global_and_uniform_differ_on_unequal_blocks() -> None:
    model = hand_built(block_scale=10.0)
    scores = weight_scores(model, channel_groups(model))
    uniform = {k: len(v) for k, v in select_channels(scores, 0.5, "uniform").items()}
    globally = {k: len(v) for k, v in select_channels(scores, 0.5, "global").items()}
    assert uniform == {(0, "attention"): 32, (1, "attention"): 32}
    # Block 2's columns are 10x larger: the global ranking prunes block 1 first.
    assert globally[(0, "attention")] < 32 < globally[(1, "attention")]
    assert sum(globally.values()) == 64


@needs_shared_data
def test_importance_ranks_channels_of_a_vit_trained_on_real_images() -> None:
    """A small ViT trained a few steps on real CIFAR-10: removing the channels that exact
    importance calls least important costs less than removing the most important ones, and
    the Taylor estimate ranks channels like the exact one."""
    from splitbench.data import CIFAR10_MEAN, CIFAR10_STD, open_dataset
    from splitbench.data.tensors import decode_dataset
    from splitbench.pruning.scores import importance_scores, spearman
    from splitbench.training.augment import normalize

    train = open_dataset("cifar10", split="train", root=SHARED_DATA)
    subset = type(train)(train.samples[::200])  # 250 images, 25 of each class
    images, labels = decode_dataset(subset, workers=0, progress=False)
    x = normalize(images, CIFAR10_MEAN, CIFAR10_STD)
    model = small_vit().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(30):
        loss = F.cross_entropy(model(x), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    group = channel_groups(model)[0]
    exact = channel_losses(model, x[:64], labels[:64], [group], estimator="exact", channels_per_pass=16)
    taylor = channel_losses(model, x[:64], labels[:64], [group], estimator="taylor")
    importance = importance_scores(exact)[group]
    order = importance.argsort()
    with torch.no_grad():
        def loss_keeping(channels: torch.Tensor) -> float:
            return float(F.cross_entropy(prune_vit(model, {(0, "attention"): channels})(x[:64]), labels[:64]))

        assert loss_keeping(order[32:]) < loss_keeping(order[:32])
    assert spearman(importance, importance_scores(taylor)[group]) > 0.3
