"""Bit-level reading and writing for HEVC parameter sets, the BPG header and other codecs' headers.

HEVC (and AV1) syntax is MSB-first with 0-th order Exp-Golomb codes (``ue(v)``); NAL units travel in an
Annex-B byte stream (start codes ``00 00 01`` / ``00 00 00 01``) with emulation prevention
bytes (``00 00 03``) inserted wherever the payload would otherwise contain a start code. BPG
adds ``ue7``, a big-endian base-128 integer (bpg_spec.txt §2). JPEG XL reads its bits
LSB-first (:class:`LsbBitReader`).
"""

from __future__ import annotations

import re

from splitbench.errors import SplitbenchError


class BitReader:
    """Reads MSB-first bits: an RBSP (a NAL payload with emulation prevention bytes already removed),
    or another header that ``what`` names in errors."""

    def __init__(self, data: bytes, position: int = 0, what: str = "HEVC parameter set") -> None:
        self.data = data
        self.position = position  # in bits
        self.what = what

    def u(self, n: int) -> int:
        """An unsigned integer of ``n`` bits; reading past the end is an error, not zeros."""
        if self.position + n > 8 * len(self.data):
            raise SplitbenchError(f"truncated {self.what}")
        value = 0
        for _ in range(n):
            byte = self.data[self.position >> 3]
            value = (value << 1) | ((byte >> (7 - (self.position & 7))) & 1)
            self.position += 1
        return value

    def flag(self) -> bool:
        return bool(self.u(1))

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise SplitbenchError(f"invalid Exp-Golomb code in {self.what}")
        return (1 << zeros) - 1 + (self.u(zeros) if zeros else 0)

    def skip(self, n: int) -> None:
        while n > 0:
            self.u(min(n, 32))
            n -= 32


class LsbBitReader:
    """Reads LSB-first bits, as JPEG XL's headers are written (ISO/IEC 18181-1 §B)."""

    def __init__(self, data: bytes, what: str) -> None:
        self.value = int.from_bytes(data, "little")
        self.size = 8 * len(data)
        self.position = 0
        self.what = what

    def u(self, n: int) -> int:
        if self.position + n > self.size:
            raise SplitbenchError(f"truncated {self.what}")
        value = (self.value >> self.position) & ((1 << n) - 1)
        self.position += n
        return value

    def flag(self) -> bool:
        return bool(self.u(1))

    def u32(self, *distributions: tuple[int, int]) -> int:
        """JPEG XL's ``U32``: a 2-bit selector picks one of four (offset, bits) distributions."""
        offset, bits = distributions[self.u(2)]
        return offset + (self.u(bits) if bits else 0)


class BitWriter:
    """Writes MSB-first bits; :meth:`rbsp_trailing_bits` or :meth:`align_zero` finishes a payload."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> None:
        if value < 0 or value >= 1 << n:
            raise ValueError(f"{value} does not fit in {n} bits")
        self.bits.extend((value >> (n - 1 - i)) & 1 for i in range(n))

    def flag(self, value: bool | int) -> None:
        self.u(1, int(bool(value)))

    def ue(self, value: int) -> None:
        code = value + 1
        length = code.bit_length()
        if length > 1:
            self.u(length - 1, 0)
        self.u(length, code)

    def rbsp_trailing_bits(self) -> None:
        """A stop bit and zeros to the next byte boundary (every HEVC parameter set ends so)."""
        self.bits.append(1)
        self.align_zero()

    def align_zero(self) -> None:
        """Zeros to the next byte boundary (BPG's ``trailing_bits``)."""
        self.bits.extend([0] * (-len(self.bits) % 8))

    def to_bytes(self) -> bytes:
        if len(self.bits) % 8:
            raise ValueError("bit writer is not byte aligned")
        return bytes(
            int("".join(map(str, self.bits[i : i + 8])), 2) for i in range(0, len(self.bits), 8)
        )


def read_ue7(data: bytes, offset: int) -> tuple[int, int]:
    """(value, next offset) of a BPG ``ue7(32)``; non-shortest encodings are refused as the spec says."""
    if offset >= len(data):
        raise SplitbenchError("truncated BPG header")
    if data[offset] == 0x80:
        raise SplitbenchError("invalid BPG header: non-canonical ue7 integer")
    value = 0
    for index in range(offset, offset + 5):
        if index >= len(data):
            raise SplitbenchError("truncated BPG header")
        value = (value << 7) | (data[index] & 0x7F)
        if not data[index] & 0x80:
            if value >= 1 << 32:
                break
            return value, index + 1
    raise SplitbenchError("invalid BPG header: ue7 integer longer than 32 bits")


def write_ue7(value: int) -> bytes:
    if not 0 <= value < 1 << 32:
        raise ValueError(f"ue7(32) cannot hold {value}")
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(groups))


_START_CODE = re.compile(b"\x00\x00\x01")


def split_annexb(stream: bytes) -> list[tuple[int, int]]:
    """(start, end) byte ranges of the NAL units of an Annex-B stream, start codes excluded.

    A 4-byte start code is a 3-byte one preceded by a zero byte, which belongs to neither NAL
    (trailing_zero_8bits), so it is trimmed from the end of the previous unit.
    """
    starts = [match.end() for match in _START_CODE.finditer(stream)]
    units = []
    for index, start in enumerate(starts):
        end = starts[index + 1] - 3 if index + 1 < len(starts) else len(stream)
        while end > start and stream[end - 1] == 0:
            end -= 1
        units.append((start, end))
    return units


def nal_unit_type(nal: bytes) -> int:
    return (nal[0] >> 1) & 0x3F


def remove_emulation_prevention(nal: bytes) -> bytes:
    return nal.replace(b"\x00\x00\x03", b"\x00\x00")


def add_emulation_prevention(rbsp: bytes) -> bytes:
    """Insert ``03`` after every two zero bytes that precede a byte ≤ 3 (H.265 §7.4.2)."""
    out = bytearray()
    zeros = 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)
