"""Darknet ``.cfg`` networks as PyTorch modules, with their ``.weights`` loaded.

Covers the layers that YOLOv4-tiny (and YOLOv3-tiny) use: ``[convolutional]`` with
``batch_normalize`` and ``leaky``/``linear`` activation, ``[route]`` with ``groups`` and
``group_id``, ``[maxpool]`` (including darknet's size-2/stride-1 padding), ``[upsample]`` and
``[yolo]``. Anything else fails in one line naming the section, so that a cfg this parser does
not understand is never half-built.

The module's forward is static Python over a fixed list of layers, so ``torch.fx`` traces it
into one graph (the project derives split cuts from that graph) and every darknet layer is a
submodule ``layers.<index>``, the index darknet itself prints. It returns the raw tensors that
feed the ``[yolo]`` layers (no sigmoid, no decoding): decoding is
:func:`splitbench.detection.yolo.decode` and belongs to the tail of any split.

>>> net = Darknet.from_cfg(Path("yolov4-tiny.cfg"))            # doctest: +SKIP
>>> load_darknet_weights(net, Path("yolov4-tiny.weights"))      # doctest: +SKIP
>>> [t.shape for t in net(torch.zeros(1, 3, 416, 416))]         # doctest: +SKIP
[torch.Size([1, 255, 13, 13]), torch.Size([1, 255, 26, 26])]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from splitbench.errors import SplitbenchError

# AlexeyAB's darknet (which trained YOLOv4-tiny and scored it) folds batch norm into the conv
# at inference with sqrt(var + 1e-5) (fuse_conv_batchnorm). OpenCV's importer uses 1e-6, and
# some of YOLOv4-tiny's running variances are small enough for that to show (~2e-3 on the
# head outputs), so the reference check builds the port with OpenCV's eps.
DARKNET_BN_EPS = 1e-5
OPENCV_BN_EPS = 1e-6
LEAKY_SLOPE = 0.1  # darknet's "leaky" activation


@dataclass(frozen=True)
class Section:
    """One ``[kind]`` block of a cfg file: its options as written, and where it starts."""

    kind: str
    options: dict[str, str]
    line: int

    def as_int(self, key: str, default: int | None = None) -> int:
        return int(self._get(key, default))

    def as_float(self, key: str, default: float | None = None) -> float:
        return float(self._get(key, default))

    def int_list(self, key: str) -> list[int]:
        return [int(v) for v in self._get(key, None).split(",") if v.strip()]

    def float_list(self, key: str) -> list[float]:
        return [float(v) for v in self._get(key, None).split(",") if v.strip()]

    def _get(self, key: str, default: object) -> str:
        if key in self.options:
            return self.options[key]
        if default is None:
            raise SplitbenchError(f"cfg line {self.line}: [{self.kind}] needs '{key}='")
        return str(default)


def parse_cfg(text: str) -> list[Section]:
    """The sections of a darknet cfg, in order (``[net]`` first).

    Comments start with ``#`` or ``;``; keys and values are stripped (darknet allows
    ``layers = -1, -2`` with spaces).
    """
    sections: list[Section] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.split(r"[#;]", raw, maxsplit=1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise SplitbenchError(f"cfg line {number}: unterminated section header {line!r}")
            sections.append(Section(line[1:-1].strip().lower(), {}, number))
        elif "=" in line and sections:
            key, value = line.split("=", 1)
            sections[-1].options[key.strip()] = value.strip()
        else:
            raise SplitbenchError(f"cfg line {number}: expected '[section]' or 'key=value', got {line!r}")
    if not sections or sections[0].kind not in ("net", "network"):
        raise SplitbenchError("cfg does not start with a [net] section")
    return sections


@dataclass(frozen=True)
class YoloSpec:
    """What decoding needs from one ``[yolo]`` layer: its anchors (pixels of the network
    input), the class count and the ``scale_x_y`` grid sensitivity (YOLOv4)."""

    layer: int
    anchors: tuple[tuple[float, float], ...]
    classes: int
    scale_x_y: float


class ConvBlock(nn.Module):
    """darknet ``[convolutional]``: conv, then batch norm (replacing the conv bias), then activation."""

    def __init__(self, section: Section, in_channels: int, bn_eps: float = DARKNET_BN_EPS) -> None:
        super().__init__()
        size, stride = section.as_int("size", 1), section.as_int("stride", 1)
        # darknet: "pad=1" means size//2; "padding=N" sets it outright.
        padding = size // 2 if section.as_int("pad", 0) else section.as_int("padding", 0)
        bn = bool(section.as_int("batch_normalize", 0))
        groups = section.as_int("groups", 1)
        self.conv = nn.Conv2d(in_channels, section.as_int("filters", 1), size, stride, padding,
                              groups=groups, bias=not bn)
        self.bn = nn.BatchNorm2d(section.as_int("filters", 1), eps=bn_eps) if bn else nn.Identity()
        activation = section.options.get("activation", "logistic")
        if activation == "leaky":
            self.act: nn.Module = nn.LeakyReLU(LEAKY_SLOPE)
        elif activation == "linear":
            self.act = nn.Identity()
        else:
            raise SplitbenchError(f"cfg line {section.line}: activation {activation!r} is not supported "
                                  "(supported: leaky, linear)")

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class Route(nn.Module):
    """darknet ``[route]``: concatenate earlier outputs along channels, each optionally cut to
    its ``group_id``-th of ``groups`` equal channel slices (the CSP halves of YOLOv4-tiny)."""

    def __init__(self, groups: int, group_id: int) -> None:
        super().__init__()
        self.groups, self.group_id = groups, group_id

    def forward(self, *inputs: Tensor) -> Tensor:
        parts = [x.chunk(self.groups, dim=1)[self.group_id] if self.groups > 1 else x for x in inputs]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class MaxPool(nn.Module):
    """darknet ``[maxpool]``: its padding (default ``size - 1``) is split floor left/top,
    the rest right/bottom, and padded cells never win. With size 2 and stride 1 (YOLOv3-tiny's
    last pool) that keeps the spatial size, which ``nn.MaxPool2d`` alone cannot."""

    def __init__(self, size: int, stride: int, padding: int) -> None:
        super().__init__()
        self.size, self.stride = size, stride
        # The usual case (stride = size, default padding) is exactly ceil_mode pooling: no pad
        # op in the graph, so no pointless cut on a padded tensor.
        self.ceil_mode = stride == size and padding == size - 1
        before = 0 if self.ceil_mode else padding // 2
        after = 0 if self.ceil_mode else padding - before
        self.pad = (before, after, before, after)

    def forward(self, x: Tensor) -> Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride, ceil_mode=self.ceil_mode)


class Upsample(nn.Module):
    """darknet ``[upsample]``: nearest neighbour by an integer factor."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=float(self.stride), mode="nearest")


class Darknet(nn.Module):
    """A darknet network: ``layers[i]`` is cfg layer ``i`` (``[net]`` not counted).

    ``forward`` returns one raw tensor per ``[yolo]`` layer, ``(N, anchors*(5+classes), H, W)``,
    in cfg order; :attr:`yolo` holds what decoding each of them needs.
    """

    def __init__(self, sections: Sequence[Section], bn_eps: float = DARKNET_BN_EPS) -> None:
        super().__init__()
        net, body = sections[0], list(sections[1:])
        self.input_size = (net.as_int("height", 416), net.as_int("width", 416))
        self.in_channels = net.as_int("channels", 3)
        layers, sources, yolo = _build(body, self.in_channels, bn_eps)
        self.layers = nn.ModuleList(layers)
        # Static per-layer wiring: the indices each layer reads (-1 is "the previous one").
        self._sources: tuple[tuple[int, ...], ...] = tuple(sources)
        self.yolo: tuple[YoloSpec, ...] = tuple(yolo)
        self._outputs = tuple(spec.layer for spec in self.yolo)
        # Earlier outputs a later route or the result reads: only these are kept.
        self._kept = frozenset(i for s in sources for i in s if i >= 0) | frozenset(self._outputs)
        self.weights_header: dict[str, int] | None = None  # set by load_darknet_weights

    @classmethod
    def from_cfg(cls, path: Path, bn_eps: float = DARKNET_BN_EPS) -> Darknet:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise SplitbenchError(f"cannot read darknet cfg {path}: {error.strerror or error}") from None
        return cls(parse_cfg(text), bn_eps)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        saved: dict[int, Tensor] = {}
        for index, (layer, sources) in enumerate(zip(self.layers, self._sources)):
            inputs = [x if source == -1 else saved[source] for source in sources]
            x = layer(*inputs)
            if index in self._kept:
                saved[index] = x
        return tuple(saved[index] for index in self._outputs)


def _build(body: list[Section], in_channels: int,
           bn_eps: float) -> tuple[list[nn.Module], list[tuple[int, ...]], list[YoloSpec]]:
    """Modules, the inputs each one reads (absolute indices, or -1 for the previous layer),
    and the yolo heads, tracking each layer's output channels as darknet does."""
    out_channels: list[int] = []
    layers: list[nn.Module] = []
    sources: list[tuple[int, ...]] = []
    yolo: list[YoloSpec] = []
    for index, section in enumerate(body):
        channels = out_channels[-1] if out_channels else in_channels
        reads: tuple[int, ...] = (-1,)
        if section.kind in ("convolutional", "conv"):
            module: nn.Module = ConvBlock(section, channels, bn_eps)
            channels = module.conv.out_channels
        elif section.kind == "route":
            reads = tuple(i if i >= 0 else index + i for i in section.int_list("layers"))
            _check_sources(section, index, reads)
            groups, group_id = section.as_int("groups", 1), section.as_int("group_id", 0)
            if not 0 <= group_id < groups:
                raise SplitbenchError(f"cfg line {section.line}: group_id {group_id} not in 0..{groups - 1}")
            module = Route(groups, group_id)
            channels = sum(out_channels[i] // groups for i in reads)
        elif section.kind in ("maxpool", "max"):
            size = section.as_int("size", 1)
            module = MaxPool(size, section.as_int("stride", 1), section.as_int("padding", size - 1))
        elif section.kind == "upsample":
            module = Upsample(section.as_int("stride", 2))
        elif section.kind == "yolo":
            module = nn.Identity()
            yolo.append(_yolo_spec(section, index, channels))
        else:
            raise SplitbenchError(f"cfg line {section.line}: layer [{section.kind}] is not supported "
                                  "(supported: convolutional, route, maxpool, upsample, yolo)")
        layers.append(module)
        sources.append(reads)
        out_channels.append(channels)
    if not yolo:
        raise SplitbenchError("cfg has no [yolo] layer: nothing to detect with")
    return layers, sources, yolo


def _check_sources(section: Section, index: int, reads: tuple[int, ...]) -> None:
    for source in reads:
        if not 0 <= source < index:
            raise SplitbenchError(f"cfg line {section.line}: route to layer {source} from layer {index}")


def _yolo_spec(section: Section, index: int, channels: int) -> YoloSpec:
    pairs = section.float_list("anchors")
    anchors = list(zip(pairs[0::2], pairs[1::2]))
    mask = section.int_list("mask") if "mask" in section.options else list(range(len(anchors)))
    classes = section.as_int("classes", 20)
    if any(not 0 <= m < len(anchors) for m in mask):
        raise SplitbenchError(f"cfg line {section.line}: [yolo] mask {mask} names anchors beyond the "
                              f"{len(anchors)} given")
    needed = len(mask) * (5 + classes)
    if channels != needed:
        raise SplitbenchError(f"cfg line {section.line}: [yolo] reads {channels} channels, "
                              f"needs {len(mask)} anchors × (5 + {classes} classes) = {needed}")
    if section.as_int("new_coords", 0):
        raise SplitbenchError(f"cfg line {section.line}: [yolo] new_coords=1 is not supported")
    return YoloSpec(index, tuple(anchors[m] for m in mask), classes, section.as_float("scale_x_y", 1.0))


def load_darknet_weights(model: Darknet, path: Path) -> dict[str, int]:
    """Fill ``model`` from a darknet ``.weights`` file; returns its header (also kept as
    ``model.weights_header``).

    The file is a header (major, minor, revision as int32, then images seen as int64 from
    format 0.2 on, else int32) and then, for each ``[convolutional]`` in cfg order: biases
    (or, with batch norm, BN beta, then gamma, running mean, running variance), then the
    conv weights in (out, in, kh, kw) order, all float32. Every byte must be used: a file
    for another cfg fails instead of loading shifted weights.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise SplitbenchError(f"cannot read darknet weights {path}: {error.strerror or error}") from None
    if len(data) < 16:
        raise SplitbenchError(f"darknet weights {path} are truncated ({len(data)} bytes)")
    major, minor, revision = np.frombuffer(data, dtype="<i4", count=3)
    wide_seen = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
    offset = 20 if wide_seen else 16
    seen = int(np.frombuffer(data, dtype="<i8" if wide_seen else "<i4", count=1, offset=12)[0])
    floats = np.frombuffer(data, dtype="<f4", offset=offset)
    if (len(data) - offset) % 4:
        raise SplitbenchError(f"darknet weights {path}: body is not a whole number of float32 values")
    used = 0
    with torch.no_grad():
        for block in (m for m in model.layers if isinstance(m, ConvBlock)):
            used = _load_conv(block, floats, used, path)
    if used != floats.size:
        raise SplitbenchError(f"darknet weights {path} hold {floats.size} values, the cfg uses {used}: "
                              "weights and cfg do not match")
    model.weights_header = {"major": int(major), "minor": int(minor), "revision": int(revision), "seen": seen}
    return model.weights_header


def _load_conv(block: ConvBlock, floats: np.ndarray, used: int, path: Path) -> int:
    """Copy one conv block's parameters from ``floats[used:]``; returns the new position."""
    def take(target: Tensor) -> None:
        nonlocal used
        count = target.numel()
        if used + count > floats.size:
            raise SplitbenchError(f"darknet weights {path} end early: the cfg needs more values "
                                  "than the file holds (weights and cfg do not match)")
        target.copy_(torch.from_numpy(floats[used:used + count].copy()).view_as(target))
        used += count

    if isinstance(block.bn, nn.BatchNorm2d):
        for tensor in (block.bn.bias, block.bn.weight, block.bn.running_mean, block.bn.running_var):
            take(tensor)
    else:
        take(block.conv.bias)
    take(block.conv.weight)
    return used
