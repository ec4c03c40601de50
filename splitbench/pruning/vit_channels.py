"""The prunable channels of a vit-pytorch ViT, gated forward passes, and physical pruning.

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

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from einops import rearrange
from torch import nn
from vit_pytorch.vit import ViT

from splitbench.errors import SplitbenchError

TARGETS = ("attention", "mlp")


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


def attention_channels(attention: nn.Module) -> int:
    return attention.to_qkv.out_features // 3


def head_dim(attention: nn.Module) -> int:
    """Channels per head of the *unpruned* attention (vit-pytorch's ``dim_head``)."""
    if isinstance(attention, PrunedAttention):
        return attention.dim_head
    return attention_channels(attention) // attention.heads


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


# ----------------------------------------------------------------------------- physical pruning


class PrunedAttention(nn.Module):
    """vit-pytorch attention with some inner channels removed; heads may differ in width.

    The kept channels are laid out so that heads of equal width are contiguous:
    ``widths`` lists ``(width, heads)`` runs in layout order, e.g. ``[(30, 2), (33, 1)]`` is
    two 30-channel heads then one of 33. Each run is one batched product and needs no
    gather, so a pruned block costs what its channels cost.
    """

    def __init__(self, norm: nn.LayerNorm, to_qkv: nn.Linear, to_out: nn.Module, widths: list[tuple[int, int]], dim_head: int,
                 dropout: nn.Module | None = None) -> None:
        super().__init__()
        self.norm = norm
        self.dropout = dropout or nn.Dropout(0.0)  # on the attention matrix, as the original's
        self.to_qkv = to_qkv
        self.to_out = to_out
        self.widths = [(int(w), int(h)) for w, h in widths if w > 0 and h > 0]
        self.dim_head = dim_head
        self.scale = dim_head ** -0.5  # as trained: the scale does not follow the pruned width

    @property
    def channels(self) -> int:
        return sum(width * heads for width, heads in self.widths)

    @property
    def heads(self) -> int:
        return sum(heads for _, heads in self.widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        sizes = [width * heads for width, heads in self.widths]
        runs = zip(q.split(sizes, -1), k.split(sizes, -1), v.split(sizes, -1), self.widths)
        out = [self._attend(q_run, k_run, v_run, heads) for q_run, k_run, v_run, (_, heads) in runs]
        if not out:  # no channel left: the block adds to_out's bias only, as the masked original does
            return self.to_out(q)
        return self.to_out(out[0] if len(out) == 1 else torch.cat(out, dim=-1))

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=heads) for t in (q, k, v))
        attn = self.dropout(torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * self.scale, dim=-1))
        return rearrange(torch.matmul(attn, v), "b h n d -> b n (h d)")


def attention_layout(keep: torch.Tensor, dim_head: int, heads: int) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Kept channels reordered so that heads of equal width are contiguous, and the runs.

    Heads keep their channels in ascending order; runs go by ascending width, heads within a
    run by index. Heads that keep nothing are dropped.
    """
    keep = keep.sort().values
    by_head = [keep[keep // dim_head == h] for h in range(heads)]
    order, widths = [], []
    for width in sorted({len(c) for c in by_head if len(c)}):
        members = [c for c in by_head if len(c) == width]
        order.extend(members)
        widths.append((width, len(members)))
    return (torch.cat(order) if order else keep), widths


def prune_vit(model: ViT, keep: dict[tuple[int, str], torch.Tensor]) -> ViT:
    """A new ViT whose pruned groups have smaller Linear layers; ``model`` is left untouched.

    ``keep[(block, target)]`` lists the channel indices to keep (any order; sorted here).
    Groups absent from ``keep`` are copied whole.
    """
    pruned = copy.deepcopy(model)
    for (block, target), indices in keep.items():
        indices = torch.as_tensor(indices, dtype=torch.long).sort().values
        attention, feedforward = pruned.transformer.layers[block]
        if target == "attention":
            pruned.transformer.layers[block][0] = _prune_attention(attention, indices)
        elif target == "mlp":
            _prune_feedforward(feedforward, indices)
        else:
            raise SplitbenchError(f"unknown pruning target {target!r}; valid: {', '.join(TARGETS)}")
    return pruned


def _prune_attention(attention: nn.Module, keep: torch.Tensor) -> PrunedAttention:
    if isinstance(attention, PrunedAttention):
        raise SplitbenchError("this attention block is already pruned; prune the original model")
    inner, dim_head = attention_channels(attention), head_dim(attention)
    _check_indices(keep, inner)
    layout, widths = attention_layout(keep, dim_head, attention.heads)
    rows = torch.cat([layout, layout + inner, layout + 2 * inner])
    to_qkv = _linear_subset(attention.to_qkv, rows=rows)
    out_linear = attention.to_out[0] if isinstance(attention.to_out, nn.Sequential) else attention.to_out
    out_dropout = attention.to_out[1] if isinstance(attention.to_out, nn.Sequential) else nn.Dropout(0.0)
    to_out = nn.Sequential(_linear_subset(out_linear, columns=layout), out_dropout)
    return PrunedAttention(attention.norm, to_qkv, to_out, widths, dim_head, getattr(attention, "dropout", None))


def _prune_feedforward(feedforward: nn.Module, keep: torch.Tensor) -> None:
    _check_indices(keep, feedforward.net[1].out_features)
    feedforward.net[1] = _linear_subset(feedforward.net[1], rows=keep)
    feedforward.net[4] = _linear_subset(feedforward.net[4], columns=keep)


def _check_indices(keep: torch.Tensor, size: int) -> None:
    if keep.numel() and (keep.min() < 0 or keep.max() >= size or keep.unique().numel() != keep.numel()):
        raise SplitbenchError(f"channel indices must be distinct and in 0..{size - 1}")


def _linear_subset(linear: nn.Linear, rows: torch.Tensor | None = None, columns: torch.Tensor | None = None) -> nn.Linear:
    """A new Linear holding the selected output rows and/or input columns of ``linear``."""
    weight = linear.weight.detach()
    bias = linear.bias.detach() if linear.bias is not None else None
    if rows is not None:
        weight = weight[rows]
        bias = bias[rows] if bias is not None else None
    if columns is not None:
        weight = weight[:, columns]
    smaller = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        smaller.weight.copy_(weight)
        if bias is not None:
            smaller.bias.copy_(bias)
    return smaller


def save_pruned_vit(model: ViT, keep: dict[tuple[int, str], torch.Tensor], path: Path) -> Path:
    """Write a pruned ViT as safetensors with the kept channels in its metadata.

    :func:`load_pruned_vit` rebuilds the same smaller modules from that metadata and loads
    the weights strictly, so the file alone is enough to use the model.
    """
    from splitbench.weights import save_safetensors

    structure = {f"{block}.{target}": sorted(int(i) for i in indices) for (block, target), indices in keep.items()}
    return save_safetensors(model, path, metadata={"pruned_channels": json.dumps(structure)})


def load_pruned_vit(path: Path, build: Callable[[], ViT]) -> ViT:
    """The pruned ViT stored at ``path``; ``build()`` makes the unpruned architecture."""
    from safetensors import safe_open

    from splitbench.weights import apply_state_dict, read_state_dict

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    if "pruned_channels" not in metadata:
        raise SplitbenchError(f"{path} holds no pruned-ViT structure (metadata 'pruned_channels')")
    structure = json.loads(metadata["pruned_channels"])
    keep = {(int(key.split(".")[0]), key.split(".")[1]): torch.tensor(v, dtype=torch.long) for key, v in structure.items()}
    model = prune_vit(build(), keep)
    apply_state_dict(model, read_state_dict(path), "vit (pruned)", str(path))
    return model
