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
from splitbench.macs import count_macs
from splitbench.zoo import count_parameters


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


# Executed weights may exceed the kept ones by this factor for the layer to run as one
# zero-padded ``groups=G`` convolution; beyond it each group runs as its own convolution.
# 1.0 = only groups of equal size share one call: on oneDNN (2-core EPYC, batch 100) one
# convolution per group beat the padded grouped call for every learned, unequal layout we
# timed (64 maps at 32x32 in 4 groups: 77 vs 105 ms; 256 at 8x8: 38 vs 49 ms).
PADDING_LIMIT = 1.0


class GroupedConv2d(nn.Module):
    """What a trained FLGC layer computes, as grouped convolutions over gathered channels.

    Inputs are gathered group by group (a duplicated map once per group it feeds); the
    filters of group g run on group g's inputs only, and the outputs are put back in the
    original filter order. Groups of equal size run as one ``groups=G`` convolution; unequal
    ones (the rule once groups are learned) as one convolution per group, unless
    :data:`PADDING_LIMIT` allows padding them with zero weights to the widest group.
    :meth:`connections` counts the kept weights only.
    """

    def __init__(self, layer: FLGCConv2d) -> None:
        super().__init__()
        membership, filter_group = layer.hard_assignment()
        weight = layer.weight.detach()
        k = weight.shape[-1]
        self.stride, self.padding, self.kernel_size = layer.stride, layer.padding, k
        groups = [(membership[:, g].nonzero().flatten(), (filter_group == g).nonzero().flatten())
                  for g in range(layer.groups)]
        groups = [(ins, outs) for ins, outs in groups if len(outs)]  # maps of a filterless group feed nothing
        self.in_sizes = [len(ins) for ins, _ in groups]
        self.out_sizes = [len(outs) for _, outs in groups]
        width_in, width_out = max(max(self.in_sizes), 1), max(self.out_sizes)
        self.padded = len(groups) * width_in * width_out <= PADDING_LIMIT * max(self.kept_pairs(), 1)
        self.bias = nn.Parameter(layer.bias.detach().clone()) if layer.bias is not None else None
        if self.padded:
            self._build_padded(groups, weight, width_in, width_out)
        else:
            self._build_per_group(groups, weight)

    def _build_padded(self, groups, weight: torch.Tensor, width_in: int, width_out: int) -> None:
        k = self.kernel_size
        padded = weight.new_zeros(len(groups) * width_out, width_in, k, k)
        in_index = torch.zeros(len(groups) * width_in, dtype=torch.long)  # padding slots read map 0 with zero weight
        out_select = torch.empty(weight.shape[0], dtype=torch.long)
        for g, (ins, outs) in enumerate(groups):
            in_index[g * width_in: g * width_in + len(ins)] = ins
            out_select[outs] = g * width_out + torch.arange(len(outs))
            padded[g * width_out: g * width_out + len(outs), : len(ins)] = weight[outs][:, ins]
        self.weight = nn.Parameter(padded)
        self.convs = None
        self.register_buffer("in_index", in_index)
        self.register_buffer("out_select", out_select)

    def _build_per_group(self, groups, weight: torch.Tensor) -> None:
        self.weight = None
        self.convs = nn.ModuleList(self._conv(weight[outs][:, ins]) for ins, outs in groups)
        self.register_buffer("in_index", torch.cat([ins for ins, _ in groups]))
        self.register_buffer("out_select", torch.cat([outs for _, outs in groups]).argsort())

    def _conv(self, block: torch.Tensor) -> nn.Conv2d | None:
        if block.shape[1] == 0:
            return None  # filters with no inputs: zero output (plus bias)
        conv = nn.Conv2d(block.shape[1], block.shape[0], block.shape[2], self.stride, self.padding, bias=False)
        conv.weight = nn.Parameter(block.clone())
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gathered = x.index_select(1, self.in_index)
        if self.padded:
            out = F.conv2d(gathered, self.weight, None, self.stride, self.padding, groups=len(self.in_sizes))
        else:
            out = torch.cat([self._run_group(conv, ins, filters)
                             for conv, ins, filters in zip(self.convs, gathered.split(self.in_sizes, dim=1),
                                                           self.out_sizes, strict=True)], dim=1)
        out = out.index_select(1, self.out_select)
        return out if self.bias is None else out + self.bias[:, None, None]

    def _run_group(self, conv: nn.Conv2d | None, x: torch.Tensor, filters: int) -> torch.Tensor:
        if conv is not None:
            return conv(x)
        height = (x.shape[2] + 2 * self.padding - self.kernel_size) // self.stride + 1
        width = (x.shape[3] + 2 * self.padding - self.kernel_size) // self.stride + 1
        return x.new_zeros(x.shape[0], filters, height, width)

    def kept_pairs(self) -> int:
        """(input map, filter) pairs that remain: sum over groups of inputs × filters."""
        return sum(i * o for i, o in zip(self.in_sizes, self.out_sizes, strict=True))

    def connections(self) -> int:
        """Weights that remain: kept pairs × k² (a duplicated map counts once per group it feeds)."""
        return self.kept_pairs() * self.kernel_size**2

    def stored_weights(self) -> int:
        """Weight elements this module holds, zero padding included."""
        if self.padded:
            return self.weight.numel()
        return sum(conv.weight.numel() for conv in self.convs if conv is not None)


def to_grouped(model: nn.Module) -> nn.Module:
    """``model`` with every FLGCConv2d replaced by its GroupedConv2d (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, FLGCConv2d):
            setattr(model, name, GroupedConv2d(child))
        else:
            to_grouped(child)
    return model


def replaceable(module: nn.Module, kernel_size: int = 3) -> bool:
    """A dense ``kernel_size`` convolution inside the blocks.

    The stem (a convolution on the image's 3 channels) stays dense: it has fewer input
    channels than most group counts.
    """
    return (isinstance(module, nn.Conv2d) and module.groups == 1 and module.kernel_size == (kernel_size, kernel_size)
            and module.dilation == (1, 1) and module.in_channels > 3)


def check_groups_fit(model: nn.Module, groups: tuple[int, ...]) -> None:
    """Every group count must fit the narrowest convolution it would replace (one line otherwise)."""
    convolutions = [module for module in model.modules() if replaceable(module)]
    if not convolutions:
        raise SplitbenchError("the model has no dense 3x3 convolution inside its blocks for FLGC to replace")
    narrowest = min(min(conv.in_channels, conv.out_channels) for conv in convolutions)
    bad = [g for g in groups if not 1 <= g <= narrowest]
    if bad:
        raise SplitbenchError(f"groups must be between 1 and {narrowest} (the narrowest 3x3 convolution's "
                              f"channels), got {','.join(map(str, bad))}")


def replace_convolutions(model: nn.Module, groups: int, duplicate_top: int = 0, *, kernel_size: int = 3) -> list[str]:
    """Swap every :func:`replaceable` convolution in ``model`` for an FLGC layer (in place); their names."""
    replaced = []
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if replaceable(child, kernel_size):
                setattr(module, child_name, FLGCConv2d.from_conv(child, groups, duplicate_top))
                replaced.append(f"{name}.{child_name}" if name else child_name)
    if not replaced:
        raise SplitbenchError(f"no dense {kernel_size}x{kernel_size} convolution to replace")
    return replaced


def randomize_assignments(model: nn.Module, seed: int = 0) -> nn.Module:
    """Draw every FLGC layer's assignment logits from N(0, 1) (in place).

    Unit spread gives unequal groups, as training does, where the layer's own 1e-2 start
    gives near-balanced ones; for timings and count checks that need no training.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, FLGCConv2d):
                layer.input_logits.copy_(torch.randn(layer.input_logits.shape, generator=generator))
                layer.filter_logits.copy_(torch.randn(layer.filter_logits.shape, generator=generator))
    return model


def duplication_counts(model: nn.Module) -> dict[str, int]:
    """Per FLGC layer: how many (map, group) pairs duplication added beyond each map's own group."""
    counts = {}
    for name, module in model.named_modules():
        if isinstance(module, FLGCConv2d):
            membership, _ = module.hard_assignment()
            counts[name] = int(membership.sum()) - membership.shape[0]
    return counts


def effective_counts(model: nn.Module, example: torch.Tensor) -> tuple[int, int]:
    """Parameters and MACs of ``model`` counting only the connections grouped layers keep.

    fvcore counts what runs, which includes the zero weights a padded grouped layer
    multiplies; those are subtracted per layer (its padding × its output pixels).
    """
    output_pixels: dict[GroupedConv2d, int] = {}
    hooks = [module.register_forward_hook(lambda mod, _, out: output_pixels.__setitem__(mod, out.shape[-2] * out.shape[-1]))
             for module in model.modules() if isinstance(module, GroupedConv2d)]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    padding = {module: module.stored_weights() - module.connections() for module in output_pixels}
    params = count_parameters([model]) - sum(padding.values())
    macs = int(count_macs(model, example).total()) - sum(padding[m] * output_pixels[m] for m in padding)
    return params, macs
