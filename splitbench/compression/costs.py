"""Seed 000 Table 1: computation (GFLOPs, counted as fvcore MACs) and parameter size per variant."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn

from splitbench.compression.models import VARIANTS, FeatureCodec
from splitbench.macs import count_macs
from splitbench.zoo import count_parameters

# The paper's row names for the variants.
PAPER_NAMES = {"none": "w/o Attention", "attention1": "Attention1", "attention2": "Attention2"}


class _Transforms(nn.Module):
    """Encoder and decoder: what runs per image (the entropy coder's arithmetic is not a MAC)."""

    def __init__(self, codec: FeatureCodec) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.codec.decoder(self.codec.encoder(x))


def cost_table(in_channels: int, height: int, width: int, channels: int, entropy: str = "factorized",
               variants: tuple[str, ...] = VARIANTS, reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """GMACs of encoder + decoder on one C×H×W feature, parameters and their float32 size (MB = 10⁶ B)."""
    rows = []
    for variant in variants:
        codec = FeatureCodec(in_channels, channels, variant, entropy).eval()
        params = count_parameters([codec])
        macs = count_macs(_Transforms(codec), torch.zeros(1, in_channels, height, width)).total()
        rows.append({"variant": variant, "feature_shape": f"{in_channels}x{height}x{width}", "channels": channels,
                     "gmacs": round(macs / 1e9, 6), "params": params, "param_size_mb": round(4 * params / 1e6, 3)})
    table = pd.DataFrame(rows)
    table["gmacs_over_none"] = (table["gmacs"] - table["gmacs"].iloc[0]).round(6)
    table["param_mb_over_none"] = (table["param_size_mb"] - table["param_size_mb"].iloc[0]).round(3)
    if reference is not None:
        paper = reference.set_index("variant")
        table["paper_gflops"] = [paper["gflops"].get(PAPER_NAMES[v]) for v in table["variant"]]
        table["paper_param_size_mb"] = [paper["param_size_mb"].get(PAPER_NAMES[v]) for v in table["variant"]]
    return table
