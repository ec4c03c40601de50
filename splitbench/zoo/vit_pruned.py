"""A physically smaller seed-002 ViT: pruned channels removed, and the file that rebuilds it.

Pruning (:mod:`splitbench.pruning`) decides which channels to keep; this module builds the
smaller model from those indices, writes it as safetensors with its structure in the
metadata, and rebuilds it from the file alone. It sits with the models so that an export is a
model every command takes by its path (:func:`pruned_spec`), with no pruning code loaded.

Channels (``targets``): ``attention`` inner channel ``i`` is row ``i`` of q, k and v in
``to_qkv`` and column ``i`` of ``to_out`` (head ``i // dim_head``); ``mlp`` hidden channel ``j``
is row ``j`` of the feed-forward's first Linear and column ``j`` of its second.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from einops import rearrange
from torch import nn
from vit_pytorch.vit import ViT

from splitbench.errors import SplitbenchError
from splitbench.weights import safetensors_metadata
from splitbench.zoo.registry import ModelSpec

TARGETS = ("attention", "mlp")
METADATA = "pruned_channels"  # the safetensors metadata entry that holds the kept channels


def attention_channels(attention: nn.Module) -> int:
    return attention.to_qkv.out_features // 3


def head_dim(attention: nn.Module) -> int:
    """Channels per head of the *unpruned* attention (vit-pytorch's ``dim_head``)."""
    if isinstance(attention, PrunedAttention):
        return attention.dim_head
    return attention_channels(attention) // attention.heads


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
        if not 0 <= block < len(pruned.transformer.layers):
            raise SplitbenchError(f"block {block + 1} is not in this ViT ({len(pruned.transformer.layers)} blocks)")
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


def save_pruned_vit(model: ViT, keep: dict[tuple[int, str], torch.Tensor], path: Path, base: str = "vit") -> Path:
    """Write a pruned ViT as safetensors with the kept channels (and the ``base`` model's name) in its metadata.

    :func:`load_pruned_vit` rebuilds the same smaller modules from that metadata and loads
    the weights strictly, so the file alone is enough to use the model: every command takes
    it by its path in place of a model name (:func:`pruned_spec`).
    """
    from splitbench.weights import save_safetensors

    structure = {f"{block}.{target}": sorted(int(i) for i in indices) for (block, target), indices in keep.items()}
    return save_safetensors(model, path, metadata={METADATA: json.dumps(structure), "model": base})


def load_pruned_vit(path: Path, build: Callable[[], ViT]) -> ViT:
    """The pruned ViT stored at ``path``; ``build()`` makes the unpruned architecture."""
    from splitbench.weights import apply_state_dict, read_state_dict

    model = prune_vit(build(), _kept_channels(path, safetensors_metadata(path)))
    apply_state_dict(model, read_state_dict(path), "vit (pruned)", str(path))
    return model


def is_export(name: str) -> bool:
    """Whether a model name is a file path (a pruned export) rather than a registered name."""
    return name.endswith(".safetensors")


def pruned_spec(name: str) -> ModelSpec:
    """The model that a pruned export is: the base model's spec (cuts, data, preprocessing), built
    with the file's smaller layers; ``--weights auto`` (every command) and ``default`` load the
    file's own weights, ``none`` leaves the smaller layers randomly initialised."""
    from splitbench.weights import WeightsInfo, apply_state_dict, read_state_dict, sha256_of
    from splitbench.zoo import get_spec

    path = Path(name).expanduser()
    if not path.is_file():
        raise SplitbenchError(f"model file not found: {path}")
    metadata = safetensors_metadata(path)
    kept = _kept_channels(path, metadata)
    base_name = metadata.get("model", "vit")  # files written before the name was recorded: the seed's ViT
    if is_export(base_name):
        raise SplitbenchError(f"{path} names another file as its base model ({base_name}); it must name a model")
    base = get_spec(base_name)

    def own_weights(model: nn.Module) -> WeightsInfo:
        apply_state_dict(model, read_state_dict(path), name, str(path))
        return WeightsInfo(str(path), sha256_of(path))

    pruned = ", ".join(f"block {block + 1} {target} {len(indices)}" for (block, target), indices in sorted(kept.items()))
    return replace(base, name=name, description=f"{base.name} pruned ({pruned} channels kept), from {path.name}",
                   build=lambda: prune_vit(base.build(), kept), torchvision_weights=None,  # the export's shapes
                   default_weights=own_weights, default_weights_note=lambda: f"the export's own weights ({path})",
                   # heads of several widths: a loop that torch.fx cannot trace; the block stays whole
                   leaf_modules=(*base.leaf_modules, "PrunedAttention"), source="export")


def _kept_channels(path: Path, metadata: dict[str, str]) -> dict[tuple[int, str], torch.Tensor]:
    if METADATA not in metadata:
        raise SplitbenchError(f"{path} holds no pruned-ViT structure (metadata '{METADATA}'): not a model export")
    try:
        structure = json.loads(metadata[METADATA])
        return {(int(key.split(".")[0]), key.split(".")[1]): torch.tensor(v, dtype=torch.long)
                for key, v in structure.items()}
    except (ValueError, IndexError, TypeError, AttributeError) as error:
        raise SplitbenchError(f"{path} holds a damaged pruned-ViT structure: {error}") from None
