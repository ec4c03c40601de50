"""Fully learnable group convolution (FLGC, Wang et al., CVPR 2019) and seed 004's duplication.

An :class:`FLGCConv2d` holds a dense weight and two assignment matrices: input channels × G
and filters × G. While training, each row goes through a softmax over the groups and is
replaced by its one-hot arg-max in the forward pass, with the softmax's gradient in the
backward pass (straight-through); filter o sees input i when they share a group. At inference
the hard assignment is fixed and :func:`to_grouped` turns the layer into real grouped
convolutions, which skip the masked connections instead of multiplying them by zero.

Duplication (seed 004 §3): after every input map is assigned to its arg-max group, each group
takes the mean of its top-``k`` maps' scores for it; a map of another group whose score for
this group exceeds that mean is fed to this group as well. Maps are then shared by several
groups, which a grouped convolution handles by gathering them once per group.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from splitbench.errors import SplitbenchError


def check_groups(groups: int, in_channels: int, out_channels: int) -> None:
    if not 1 <= groups <= min(in_channels, out_channels):
        raise SplitbenchError(
            f"groups must be between 1 and {min(in_channels, out_channels)} "
            f"(the fewer of {in_channels} input and {out_channels} output channels), got {groups}"
        )


class _OneHotStraightThrough(torch.autograd.Function):
    """Forward: the one-hot arg-max of each row, exactly 0 or 1. Backward: the identity."""

    @staticmethod
    def forward(ctx, soft: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.one_hot(soft.argmax(dim=1), soft.shape[1]).to(soft.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad


def straight_through_one_hot(logits: torch.Tensor) -> torch.Tensor:
    """One-hot arg-max of each row forward; the row's softmax gradient backward."""
    return _OneHotStraightThrough.apply(logits.softmax(dim=1))


def duplicated_maps(scores: torch.Tensor, assignment: torch.Tensor, top: int) -> torch.Tensor:
    """Boolean inputs × G: maps fed to a group besides their own (seed 004's rule).

    ``scores`` are the soft assignment scores (inputs × G), ``assignment`` each input's group.
    For group g, the threshold is the mean score for g of the ``top`` highest-scoring maps
    assigned to g (all of them if fewer); maps of other groups scoring above it are added.
    A group with no maps of its own takes none.
    """
    inputs, groups = scores.shape
    extra = torch.zeros(inputs, groups, dtype=torch.bool, device=scores.device)
    if top <= 0:
        return extra
    for g in range(groups):
        own = assignment == g
        if not own.any():
            continue
        threshold = scores[own, g].topk(min(top, int(own.sum()))).values.mean()
        extra[:, g] = (~own) & (scores[:, g] > threshold)
    return extra


class FLGCConv2d(nn.Module):
    """A 2-D convolution whose input channels and filters are split into ``groups`` learned groups."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int, *, stride: int = 1,
                 padding: int = 0, bias: bool = False, duplicate_top: int = 0) -> None:
        super().__init__()
        check_groups(groups, in_channels, out_channels)
        self.stride, self.padding, self.groups, self.duplicate_top = stride, padding, groups, duplicate_top
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        # Small random logits: a balanced random start, as the paper initialises them.
        self.input_logits = nn.Parameter(torch.randn(in_channels, groups) * 1e-2)
        self.filter_logits = nn.Parameter(torch.randn(out_channels, groups) * 1e-2)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, groups: int, duplicate_top: int = 0) -> FLGCConv2d:
        """An FLGC layer starting from ``conv``'s weights (a dense, ungrouped convolution)."""
        if conv.groups != 1 or conv.kernel_size[0] != conv.kernel_size[1] or conv.dilation != (1, 1):
            raise SplitbenchError("FLGC replaces dense square convolutions without dilation only")
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size[0], groups, stride=conv.stride[0],
                    padding=conv.padding[0], bias=conv.bias is not None, duplicate_top=duplicate_top)
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        return layer

    def input_membership(self) -> torch.Tensor:
        """Inputs × G, 1 where a map feeds a group (own group straight-through, duplicates constant)."""
        own = straight_through_one_hot(self.input_logits)
        if not self.duplicate_top:
            return own
        scores = self.input_logits.detach().softmax(dim=1)
        extra = duplicated_maps(scores, scores.argmax(dim=1), self.duplicate_top)
        return own + extra.to(own.dtype)

    def connection_mask(self) -> torch.Tensor:
        """Filters × inputs: 1 where the filter sees the input map."""
        return straight_through_one_hot(self.filter_logits) @ self.input_membership().T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight * self.connection_mask()[:, :, None, None]
        return F.conv2d(x, weight, self.bias, self.stride, self.padding)

    @torch.no_grad()
    def hard_assignment(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs × G membership, bool; each filter's group) as the layer computes them now."""
        membership = self.input_membership().round().bool()
        return membership, self.filter_logits.argmax(dim=1)

    def extra_repr(self) -> str:
        out, inputs, k, _ = self.weight.shape
        return f"{inputs}, {out}, kernel_size={k}, groups={self.groups}, stride={self.stride}, " \
               f"padding={self.padding}, duplicate_top={self.duplicate_top}"


class GroupedConv2d(nn.Module):
    """What a trained FLGC layer computes, as grouped convolutions over gathered channels.

    Inputs are gathered group by group (a duplicated map once per group it feeds); the
    filters of group g run on group g's inputs only. Equal group sizes run as one
    ``groups=G`` convolution; unequal ones as one convolution per group. The output
    channels are put back in the original filter order.
    """

    def __init__(self, layer: FLGCConv2d) -> None:
        super().__init__()
        membership, filter_group = layer.hard_assignment()
        weight = layer.weight.detach()
        self.stride, self.padding = layer.stride, layer.padding
        in_index, out_index, in_sizes, out_sizes, blocks = [], [], [], [], []
        for g in range(layer.groups):
            ins = membership[:, g].nonzero().flatten()
            outs = (filter_group == g).nonzero().flatten()
            if len(outs) == 0:
                continue  # maps of a filterless group feed nothing
            in_index.append(ins)
            out_index.append(outs)
            in_sizes.append(len(ins))
            out_sizes.append(len(outs))
            blocks.append(weight[outs][:, ins])
        self.register_buffer("in_index", torch.cat(in_index))
        self.register_buffer("out_order", torch.cat(out_index).argsort())
        self.in_sizes, self.out_sizes = in_sizes, out_sizes
        self.uniform = len(set(in_sizes)) == 1 and len(set(out_sizes)) == 1 and in_sizes[0] > 0
        if self.uniform:
            self.weight = nn.Parameter(torch.cat(blocks))
            self.convs = None
        else:
            self.weight = None
            self.convs = nn.ModuleList(self._conv(block) for block in blocks)
        bias = layer.bias.detach()[torch.cat(out_index)] if layer.bias is not None else None
        self.bias = nn.Parameter(bias) if bias is not None else None
        self.out_channels, self.kernel_size = weight.shape[0], weight.shape[-1]

    def _conv(self, block: torch.Tensor) -> nn.Conv2d | None:
        if block.shape[1] == 0:
            return None  # filters with no inputs: zero output (plus bias)
        conv = nn.Conv2d(block.shape[1], block.shape[0], block.shape[2], self.stride, self.padding, bias=False)
        conv.weight = nn.Parameter(block.clone())
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gathered = x.index_select(1, self.in_index)
        if self.uniform:
            out = F.conv2d(gathered, self.weight, None, self.stride, self.padding, groups=len(self.in_sizes))
        else:
            pieces = []
            for conv, ins, outs in zip(self.convs, gathered.split(self.in_sizes, dim=1), self.out_sizes, strict=True):
                if conv is None:
                    height = (x.shape[2] + 2 * self.padding - self.kernel_size) // self.stride + 1
                    width = (x.shape[3] + 2 * self.padding - self.kernel_size) // self.stride + 1
                    pieces.append(x.new_zeros(x.shape[0], outs, height, width))
                else:
                    pieces.append(conv(ins))
            out = torch.cat(pieces, dim=1)
        if self.bias is not None:
            out = out + self.bias[:, None, None]
        return out.index_select(1, self.out_order)

    def connections(self) -> int:
        """Weights that remain: sum over groups of inputs × filters × k²."""
        return sum(i * o for i, o in zip(self.in_sizes, self.out_sizes, strict=True)) * self.kernel_size**2


def to_grouped(model: nn.Module) -> nn.Module:
    """``model`` with every FLGCConv2d replaced by its GroupedConv2d (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, FLGCConv2d):
            setattr(model, name, GroupedConv2d(child))
        else:
            to_grouped(child)
    return model


def replace_convolutions(model: nn.Module, groups: int, duplicate_top: int = 0, *, kernel_size: int = 3) -> list[str]:
    """Swap every dense ``kernel_size`` convolution inside ``model``'s blocks for an FLGC layer (in place).

    The stem (a convolution on the image's 3 channels) stays dense: it has fewer input
    channels than most group counts. Returns the names of the replaced convolutions.
    """
    replaced = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if (isinstance(child, nn.Conv2d) and child.groups == 1 and child.kernel_size == (kernel_size, kernel_size)
                    and child.in_channels > 3):
                setattr(module, child_name, FLGCConv2d.from_conv(child, groups, duplicate_top))
                replaced.append(f"{name}.{child_name}" if name else child_name)
    if not replaced:
        raise SplitbenchError(f"no dense {kernel_size}x{kernel_size} convolution to replace")
    return replaced


def duplication_counts(model: nn.Module) -> dict[str, int]:
    """Per FLGC layer: how many (map, group) pairs duplication added beyond each map's own group."""
    counts = {}
    for name, module in model.named_modules():
        if isinstance(module, FLGCConv2d):
            membership, _ = module.hard_assignment()
            counts[name] = int(membership.sum()) - membership.shape[0]
    return counts
