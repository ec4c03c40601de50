"""Counting multiply-accumulates (MACs) per stage with fvcore.

fvcore's convention: one MAC per fused multiply-add of a convolution or matrix product;
normalisation layers count one per element; element-wise activations, additions and
poolings other than adaptive average pooling count nothing. The handle added here covers
the one operator of modern attention that fvcore does not know.
"""

from __future__ import annotations

import warnings
from math import prod
from typing import Any

import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import get_shape
from torch import nn


def _sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """``scaled_dot_product_attention``: Q·Kᵀ and attention·V, both batched matrix products."""
    q, k, v = (get_shape(x) for x in inputs[:3])
    batch = prod(q[:-2])
    return batch * q[-2] * k[-2] * q[-1] + batch * q[-2] * k[-2] * v[-1]


EXTRA_HANDLES = {"aten::scaled_dot_product_attention": _sdpa_macs}


def count_macs(module: nn.Module, example: torch.Tensor) -> FlopCountAnalysis:
    """fvcore's analysis of ``module`` on ``example``, quiet about the ops it skips."""
    analysis = FlopCountAnalysis(module, example).set_op_handle(**EXTRA_HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow
        analysis.total()  # runs the trace once; later queries reuse it
    return analysis
