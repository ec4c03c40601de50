"""Structured channel pruning of the seed-002 ViT: channel scores, selection, smaller models.

- :mod:`.vit_channels` — which channels exist (attention inner channels, MLP hidden
  channels) and a forward pass with per-channel gates; :mod:`splitbench.zoo.vit_pruned`
  builds the physically smaller ViT (and rebuilds it from its file, as a model).
- :mod:`.scores` — weight (L1), importance (distillation loss without the channel; exact
  or first-order Taylor) and stability (seed 002 eq. 2) scores.
- :mod:`.select` — which channels to keep for a ratio, per block (uniform) or over all
  blocks (global).
- :mod:`.sweep` — methods × scopes × ratios, measured and written as a table.
"""

from splitbench.pruning.select import SCOPES, select_channels
from splitbench.pruning.vit_channels import ChannelGroup, channel_groups
from splitbench.zoo.vit_pruned import TARGETS, PrunedAttention, prune_vit

__all__ = ["SCOPES", "TARGETS", "ChannelGroup", "PrunedAttention", "channel_groups", "prune_vit", "select_channels"]
