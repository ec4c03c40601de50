"""The prunable channels of a vit-pytorch ViT and gated forward passes (physical pruning: :mod:`splitbench.zoo.vit_pruned`).

Two kinds of channel (``targets``):

- ``attention``: inner channel ``i`` of a block's attention (``0 <= i < heads*dim_head``) is
  the triple (q_i, k_i, v_i): row ``i`` of q, k and v in ``to_qkv`` and column ``i`` of
  ``to_out``. Channel ``i`` belongs to head ``i // dim_head``. Removing it removes its term
  from that head's dot products and its column from that head's output, so heads may keep
  different numbers of channels; the softmax scale stays ``dim_head ** -0.5`` as trained.
  A head that keeps no channel has all-zero scores and values and contributes nothing,
  which is what the masked original computes, so it is dropped.
- ``mlp``: hidden channel ``j`` of a block's feed-forward: row ``j`` (and bias ``j``) of the
  first Linear and column ``j`` of the second.

A *gate* is a per-channel multiplier (1 = kept, 0 = removed). Scoring runs the original
model with gates; pruning builds new, smaller Linear layers from the kept indices, and the
result computes exactly what the gated original computes (tested to float tolerance).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn
from vit_pytorch.vit import ViT

from splitbench.errors import SplitbenchError
from splitbench.zoo.vit_pruned import TARGETS, attention_channels



@dataclass(frozen=True)
class ChannelGroup:
    """The channels of one kind in one block, e.g. block 2's attention (512 channels)."""

    block: int
    target: str
    size: int

    @property
    def name(self) -> str:
        return f"block{self.block + 1}.{self.target}"


def parse_targets(targets: str | list[str]) -> tuple[str, ...]:
    names = [t.strip() for t in targets.split(",")] if isinstance(targets, str) else list(targets)
    unknown = [t for t in names if t not in TARGETS]
    if unknown or not names:
        raise SplitbenchError(f"unknown pruning target {','.join(unknown) or '(none)'}; valid: {', '.join(TARGETS)}")
    return tuple(dict.fromkeys(names))


def channel_groups(model: ViT, targets: tuple[str, ...] = ("attention",)) -> list[ChannelGroup]:
    groups = []
    for block, (attention, feedforward) in enumerate(model.transformer.layers):
        if "attention" in targets:
            groups.append(ChannelGroup(block, "attention", attention_channels(attention)))
        if "mlp" in targets:
            groups.append(ChannelGroup(block, "mlp", feedforward.net[1].out_features))
    return groups


# ----------------------------------------------------------------------------- gated forward


def gated_attention(attention: nn.Module, x: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
    """vit-pytorch ``Attention.forward`` (eval mode) with q, k, v channels multiplied by ``gate``.

    ``gate`` is (channels,) or (batch, channels); None runs the block unchanged.
    """
    x = attention.norm(x)
    q, k, v = attention.to_qkv(x).chunk(3, dim=-1)
    if gate is not None:
        g = gate.unsqueeze(-2) if gate.dim() == 2 else gate  # (batch, 1, channels) broadcasts over tokens
        q, k, v = q * g, k * g, v * g
    q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=attention.heads) for t in (q, k, v))
    attn = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * attention.scale, dim=-1)
    out = rearrange(torch.matmul(attn, v), "b h n d -> b n (h d)")
    return attention.to_out(out)


def gated_feedforward(feedforward: nn.Module, x: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
    norm, first, act, _drop, second, _drop2 = feedforward.net
    hidden = act(first(norm(x)))
    if gate is not None:
        hidden = hidden * (gate.unsqueeze(-2) if gate.dim() == 2 else gate)
    return second(hidden)


def embed(model: ViT, images: torch.Tensor) -> torch.Tensor:
    """Tokens entering block 1 (ViT.forward up to the transformer, eval mode)."""
    x = model.to_patch_embedding(images)
    dim = x.shape[-1]
    cls = model.cls_token.reshape(1, -1, dim).expand(x.shape[0], -1, -1)
    x = torch.cat((cls, x), dim=1)
    return x + model.pos_embedding.reshape(-1, dim)[: x.shape[1]]


def run_blocks(
    model: ViT, x: torch.Tensor, start: int = 0, gates: dict[tuple[int, str], torch.Tensor] | None = None
) -> torch.Tensor:
    """Blocks ``start..`` then norm, pooling and head; ``gates`` maps (block, target) to a gate."""
    gates = gates or {}
    for block in range(start, len(model.transformer.layers)):
        attention, feedforward = model.transformer.layers[block]
        x = gated_attention(attention, x, gates.get((block, "attention"))) + x
        x = gated_feedforward(feedforward, x, gates.get((block, "mlp"))) + x
    x = model.transformer.norm(x)
    x = x.mean(dim=1) if model.pool == "mean" else x[:, 0]
    return model.mlp_head(model.to_latent(x))


def block_input(model: ViT, images: torch.Tensor, block: int) -> torch.Tensor:
    """Tokens entering ``block`` (blocks before it run ungated): cached by exact scoring."""
    x = embed(model, images)
    for attention, feedforward in list(model.transformer.layers)[:block]:
        x = gated_attention(attention, x, None) + x
        x = gated_feedforward(feedforward, x, None) + x
    return x


