"""Grouped convolutions: FLGC (learned groups) and seed 004's duplication of important maps."""

from splitbench.grouping.flgc import (
    FLGCConv2d,
    GroupedConv2d,
    duplicated_maps,
    to_grouped,
)

__all__ = ["FLGCConv2d", "GroupedConv2d", "duplicated_maps", "to_grouped"]
