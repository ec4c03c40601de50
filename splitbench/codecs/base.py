"""One interface for every image codec, and a registry of them by name.

A codec turns a picture of ``bits``-bit samples (H×W gray for ``channels=1`` or H×W×3 RGB for
``channels=3``; uint8 for 8 bits and uint16 above) into bytes and back. Each codec is one small class that says what its parameter
is called and which values it takes, which sample depths it codes, which library does the
work, and, in :meth:`Codec.settings`, everything a result row must record to be reproducible
(chroma format, bit depth, preset …). Bad values fail with one line naming the valid ones.

Each codec also reads the size a bitstream declares from its header (:meth:`Codec.declared_size`),
so that bytes from a peer are checked against the expected picture before any decoder
allocates what they ask for (:meth:`Codec.check_declared`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from splitbench.errors import SplitbenchError, unknown_name


# Bytes per pixel of the largest picture a decoder here returns: RGBA (an alpha plane) at 16 bits.
# A header that implies more for the expected height and width asks for memory no codec needs.
MAX_PIXEL_BYTES = 4 * 2


@dataclass(frozen=True)
class DeclaredSize:
    """What a coded picture's header says its decoder will produce."""

    height: int
    width: int
    channels: int  # samples per pixel the decoder may allocate, alpha and extra channels included
    sample_bytes: int  # 1 up to 8 bits, 2 up to 16, 4 above

    @property
    def decoded_bytes(self) -> int:
        return self.height * self.width * self.channels * self.sample_bytes


@dataclass(frozen=True)
class CodecSpec:
    """What builds a codec: picklable, so that worker processes can build their own."""

    name: str
    param: int | None
    bits: int = 8
    channels: int = 1
    options: tuple[tuple[str, Any], ...] = field(default=())

    def build(self) -> Codec:
        return make_codec(self.name, self.param, self.bits, self.channels, **dict(self.options))


class Codec(ABC):
    """An image codec with one integer parameter (or none, for lossless ones)."""

    name: ClassVar[str]
    parameter: ClassVar[str | None] = None  # the CLI option that sets it: "qp" or "quality"
    param_range: ClassVar[tuple[int, int] | None] = None
    param_meaning: ClassVar[str] = ""
    default_params: ClassVar[tuple[int, ...]] = ()  # a sweep's values when none are given
    bit_depths: ClassVar[tuple[int, ...]] = (8,)
    backend: ClassVar[str]
    extension: ClassVar[str]  # of a kept coded file (--keep-bitstreams)

    def __init__(self, param: int | None, bits: int, channels: int) -> None:
        self.param = self._check_param(param)
        if channels not in (1, 3):
            raise ValueError(f"a picture has 1 or 3 channels, not {channels}")
        self.channels = channels
        if bits not in self.bit_depths:
            raise SplitbenchError(
                f"{self.name} codes {', '.join(map(str, self.bit_depths))}-bit samples; --bits {bits} is not supported"
            )
        self.bits = bits

    @classmethod
    def _check_param(cls, param: int | None) -> int | None:
        if cls.parameter is None:
            if param is not None:
                raise SplitbenchError(f"{cls.name} is lossless and takes no --qp or --quality")
            return None
        if param is None:
            raise SplitbenchError(f"{cls.name} needs --{cls.parameter}")
        low, high = cls.param_range  # type: ignore[misc]
        if not low <= param <= high:
            raise SplitbenchError(f"--{cls.parameter} {param} is out of range for {cls.name} ({low}–{high})")
        return param

    @abstractmethod
    def encode(self, image: np.ndarray) -> bytes:
        """Bytes of ``image`` (H×W or H×W×3 of ``bits``-bit samples), as a file would hold them."""

    @abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """The decoded picture, with the shape and dtype that :meth:`encode` was given."""

    @abstractmethod
    def declared_size(self, data: bytes) -> DeclaredSize:
        """The picture ``data``'s header declares, read without decoding (:class:`SplitbenchError` if unreadable)."""

    def check_declared(self, data: bytes, height: int, width: int) -> DeclaredSize:
        """Refuse ``data`` unless its header declares a ``height``×``width`` picture whose decoding needs no
        more memory than such a picture can (:data:`MAX_PIXEL_BYTES` per pixel); call before :meth:`decode`."""
        try:
            declared = self.declared_size(data)
        except SplitbenchError:
            raise
        except Exception as error:  # a parser's slip on hostile bytes is still "unreadable", never a crash
            raise SplitbenchError(f"cannot read the {self.name} header: {type(error).__name__}") from None
        if (declared.height, declared.width) != (height, width):
            raise SplitbenchError(f"the {self.name} picture declares {declared.width}x{declared.height} pixels; "
                                  f"expected {width}x{height}")
        limit = height * width * MAX_PIXEL_BYTES
        if declared.decoded_bytes > limit:
            raise SplitbenchError(f"the {self.name} picture declares {declared.channels} channels of "
                                  f"{declared.sample_bytes}-byte samples: {declared.decoded_bytes} bytes decoded, "
                                  f"more than the {limit} a {width}x{height} picture may take")
        return declared

    def settings(self) -> dict[str, Any]:
        """Backend and settings that a result row records."""
        return {"backend": self.backend, "bit_depth": self.bits}

    @property
    def gray(self) -> bool:
        return self.channels == 1

    @property
    def sample_dtype(self) -> type:
        return np.uint8 if self.bits == 8 else np.uint16


_REGISTRY: dict[str, type[Codec]] = {}


def register(cls: type[Codec]) -> type[Codec]:
    if cls.name in _REGISTRY:
        raise ValueError(f"codec {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def codec_names() -> list[str]:
    return list(_REGISTRY)


def codec_class(name: str) -> type[Codec]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise unknown_name("codec", name, _REGISTRY) from None


def make_codec(name: str, param: int | None, bits: int = 8, channels: int = 1, **options: Any) -> Codec:
    """Build codec ``name`` for ``channels``-channel pictures; ``options`` are codec-specific
    (``chroma`` and ``backend`` for bpg)."""
    return codec_class(name)(param, bits, channels, **options)  # type: ignore[call-arg]
