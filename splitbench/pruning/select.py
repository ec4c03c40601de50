"""Which channels to keep for a pruning ratio.

- ``uniform``: every group (one block's attention, say) loses ``round(ratio * size)`` of its
  lowest-scored channels, so all blocks keep the same width.
- ``global``: for each target kind, one ranking of every channel of every block; the
  ``round(ratio * total)`` lowest go wherever they are, so blocks end up with different
  widths.

Either way each group keeps at least ``min_keep`` channels (its best ones), so that no block
disappears entirely; with the ratios of seed 002 (≤ 70 %) this never binds in practice.

Lower score = less important = pruned first. Ties are broken by position, so a selection
is a deterministic function of the scores.
"""

from __future__ import annotations

import torch

from splitbench.errors import SplitbenchError
from splitbench.pruning.vit_channels import ChannelGroup

SCOPES = ("uniform", "global")
GroupKey = tuple[int, str]


def check_ratio(ratio: float) -> float:
    if not 0.0 <= ratio < 1.0:
        raise SplitbenchError(f"pruning ratio must be in [0, 1), got {ratio}")
    return ratio


def select_channels(
    scores: dict[ChannelGroup, torch.Tensor], ratio: float, scope: str, min_keep: int = 1
) -> dict[GroupKey, torch.Tensor]:
    """Indices to keep per (block, target), in ascending order."""
    check_ratio(ratio)
    if scope not in SCOPES:
        raise SplitbenchError(f"unknown scope {scope!r}; valid: {', '.join(SCOPES)}")
    for group, values in scores.items():
        if values.shape != (group.size,):
            raise ValueError(f"{group.name}: {tuple(values.shape)} scores for {group.size} channels")
    if scope == "uniform":
        return {(g.block, g.target): _keep_top(v, max(g.size - round(ratio * g.size), min_keep)) for g, v in scores.items()}
    keep: dict[GroupKey, torch.Tensor] = {}
    for target in dict.fromkeys(g.target for g in scores):
        groups = [g for g in scores if g.target == target]
        keep.update(_select_global(groups, [scores[g] for g in groups], ratio, min_keep))
    return keep


def _keep_top(values: torch.Tensor, count: int) -> torch.Tensor:
    # A stable descending sort: among equal scores the earlier channel is kept.
    order = torch.sort(values.double(), descending=True, stable=True).indices
    return order[:count].sort().values


def _select_global(groups: list[ChannelGroup], values: list[torch.Tensor], ratio: float, min_keep: int) -> dict[GroupKey, torch.Tensor]:
    total = sum(g.size for g in groups)
    protected = [v.double().clone() for v in values]
    for v in protected:  # each group's best min_keep channels are never pruned
        v[torch.sort(v, descending=True, stable=True).indices[:min_keep]] = float("inf")
    flat = torch.cat(protected)
    count = max(total - round(ratio * total), min_keep * len(groups))  # the protected channels always fit
    order = torch.sort(flat, descending=True, stable=True).indices[:count]
    kept = torch.zeros(total, dtype=torch.bool)
    kept[order] = True
    keep, offset = {}, 0
    for group in groups:
        keep[(group.block, group.target)] = kept[offset : offset + group.size].nonzero().flatten()
        offset += group.size
    return keep
