"""What a coded picture declares about itself, read from its header without decoding it.

A decoder allocates what the header asks for before it looks at the rest, so a few hundred
bytes that declare 60000×60000 pixels cost gigabytes. The server checks these sizes against
the picture it expects before a decoder sees the bytes (:meth:`Codec.check_declared`).

Each reader follows its format's own syntax and reads what the library's decoder will
allocate from: PNG's IHDR; WebP's VP8X canvas and the VP8/VP8L frame header; AVIF's ``ispe``
properties and the AV1 sequence header of every coded item (the decoder sizes its frames
from the latter); JPEG XL's SizeHeader and ImageMetadata (ISO/IEC 18181-1); JPEG 2000's SIZ
marker. What none of these files here ever holds (animations, image grids, previews, image
sequences) is refused rather than read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from splitbench.codecs.base import DeclaredSize
from splitbench.codecs.bitstream import BitReader, LsbBitReader
from splitbench.errors import SplitbenchError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JXL_CODESTREAM = b"\xff\x0a"
JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
J2K_SOC_SIZ = b"\xff\x4f\xff\x51"
MAX_J2K_TILES = 4096  # OpenJPEG keeps per-tile state for every tile the SIZ marker implies


def _bytes_per_sample(bits: int) -> int:
    return 1 if bits <= 8 else 2 if bits <= 16 else 4


def _size(height: int, width: int, channels: int, bits: int) -> DeclaredSize:
    return DeclaredSize(height, width, channels, _bytes_per_sample(bits))


# --- PNG --------------------------------------------------------------------------------------

_PNG_CHANNELS = {0: 1, 2: 3, 3: 4, 4: 2, 6: 4}  # colour type -> samples; palette may expand to RGBA


def png_size(data: bytes) -> DeclaredSize:
    """IHDR, which the PNG specification requires to be the first chunk."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 26:
        raise SplitbenchError("not a PNG file (no signature and IHDR chunk)")
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    if colour not in _PNG_CHANNELS:
        raise SplitbenchError(f"invalid PNG header: colour type {colour}")
    return _size(height, width, _PNG_CHANNELS[colour], depth)


# --- WebP -------------------------------------------------------------------------------------

def _riff_chunks(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    position = 12
    while position + 8 <= len(data):
        kind, length = data[position:position + 4], struct.unpack_from("<I", data, position + 4)[0]
        yield kind, data[position + 8:position + 8 + length]
        position += 8 + length + (length & 1)


def _webp_frame(kind: bytes, body: bytes) -> tuple[int, int, bool]:
    """(width, height, alpha) of a VP8 key frame or a VP8L image."""
    if kind == b"VP8 ":
        if len(body) < 10 or body[0] & 1 or body[3:6] != b"\x9d\x01\x2a":
            raise SplitbenchError("invalid WebP: the VP8 frame is not a key frame")
        width, height = struct.unpack_from("<HH", body, 6)
        return width & 0x3FFF, height & 0x3FFF, False
    if len(body) < 5 or body[0] != 0x2F:
        raise SplitbenchError("invalid WebP: bad VP8L signature")
    bits = int.from_bytes(body[1:5], "little")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)


def webp_size(data: bytes) -> DeclaredSize:
    """The frame's size, and the VP8X canvas's where there is one (they must agree)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise SplitbenchError("not a WebP file (no RIFF/WEBP signature)")
    canvas = None
    for kind, body in _riff_chunks(data):
        if kind == b"VP8X":
            if len(body) < 10:
                raise SplitbenchError("invalid WebP: short VP8X chunk")
            if body[0] & 0x02:
                raise SplitbenchError("animated WebP files are not supported here")
            canvas = (int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1,
                      bool(body[0] & 0x10))
        elif kind in (b"VP8 ", b"VP8L"):
            width, height, alpha = _webp_frame(kind, body)
            if canvas is not None and canvas[:2] != (width, height):
                raise SplitbenchError(f"invalid WebP: canvas {canvas[0]}x{canvas[1]}, frame {width}x{height}")
            return _size(height, width, 4 if alpha or (canvas and canvas[2]) else 3, 8)
    raise SplitbenchError("invalid WebP: no VP8 or VP8L image")


# --- AVIF (ISOBMFF boxes, AV1 inside) --------------------------------------------------------

def _boxes(data: bytes, start: int, end: int) -> dict[bytes, list[tuple[int, int]]]:
    """The boxes between ``start`` and ``end``: type -> [(body start, body end)]."""
    found: dict[bytes, list[tuple[int, int]]] = {}
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, position)
        header = 8
        if size == 1:
            if position + 16 > end:
                raise SplitbenchError("malformed AVIF: truncated box header")
            size, header = struct.unpack_from(">Q", data, position + 8)[0], 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            raise SplitbenchError(f"malformed AVIF: box {kind!r} runs past its container")
        found.setdefault(kind, []).append((position + header, position + size))
        position += size
    return found


def _only(boxes: dict[bytes, list[tuple[int, int]]], kind: bytes) -> tuple[int, int]:
    if len(boxes.get(kind, [])) != 1:
        raise SplitbenchError(f"malformed AVIF: {len(boxes.get(kind, []))} {kind.decode(errors='replace')} boxes, "
                              "expected 1")
    return boxes[kind][0]


class _Cursor:
    """Big-endian fields read in order from a box body; running past its end is an error."""

    def __init__(self, data: bytes, start: int, end: int) -> None:
        self.data, self.position, self.end = data, start, end

    def read(self, size: int) -> int:
        if size == 0:
            return 0
        if self.position + size > self.end:
            raise SplitbenchError("malformed AVIF: truncated box")
        value = int.from_bytes(self.data[self.position:self.position + size], "big")
        self.position += size
        return value


_DERIVED_ITEMS = (b"grid", b"iovl", b"iden", b"tmap")  # composed from other items: sizes of their own


def _item_types(data: bytes, start: int, end: int) -> dict[int, bytes]:
    """iinf: item id -> item type (infe versions 2 and 3, the ones that carry a type)."""
    cursor = _Cursor(data, start, end)
    version = cursor.read(4) >> 24
    cursor.read(2 if version == 0 else 4)  # entry_count; the boxes themselves are what counts
    types = {}
    for body_start, body_end in _boxes(data, cursor.position, end).get(b"infe", []):
        entry = _Cursor(data, body_start, body_end)
        infe_version = entry.read(4) >> 24
        if infe_version not in (2, 3):
            raise SplitbenchError(f"malformed AVIF: infe version {infe_version}")
        item = entry.read(2 if infe_version == 2 else 4)
        entry.read(2)  # item_protection_index
        types[item] = data[entry.position:entry.position + 4]
    return types


def _item_data(data: bytes, start: int, end: int, idat: tuple[int, int] | None) -> dict[int, bytes]:
    """iloc: item id -> the item's bytes (its extents, in file or idat order)."""
    cursor = _Cursor(data, start, end)
    version = cursor.read(4) >> 24
    sizes = cursor.read(2)
    offset_size, length_size, base_size = sizes >> 12, sizes >> 8 & 15, sizes >> 4 & 15
    index_size = sizes & 15 if version in (1, 2) else 0
    items = {}
    for _ in range(cursor.read(2 if version < 2 else 4)):
        item = cursor.read(2 if version < 2 else 4)
        method = cursor.read(2) & 15 if version in (1, 2) else 0
        cursor.read(2)  # data_reference_index
        base = cursor.read(base_size)
        if method not in (0, 1) or (method == 1 and idat is None):
            raise SplitbenchError(f"malformed AVIF: item {item} has construction method {method}")
        origin, limit = (0, len(data)) if method == 0 else idat  # type: ignore[misc]
        pieces = []
        for _ in range(cursor.read(2)):
            cursor.read(index_size)
            offset, length = base + cursor.read(offset_size), cursor.read(length_size)
            first = origin + offset
            last = limit if length == 0 else first + length
            if last > limit:
                raise SplitbenchError(f"malformed AVIF: item {item}'s data runs past the file")
            pieces.append(data[first:last])
        items[item] = b"".join(pieces)
    return items


def _leb128(data: bytes, position: int) -> tuple[int, int]:
    value = 0
    for index in range(8):
        if position + index >= len(data):
            raise SplitbenchError("malformed AV1: truncated OBU size")
        value |= (data[position + index] & 0x7F) << (7 * index)
        if not data[position + index] & 0x80:
            return value, position + index + 1
    raise SplitbenchError("malformed AV1: OBU size longer than 8 bytes")


def av1_max_frame_sizes(obus: bytes) -> list[tuple[int, int]]:
    """(max_frame_width, max_frame_height) of every sequence header among ``obus`` (AV1 §5.3, §5.5)."""
    sizes, position = [], 0
    while position < len(obus):
        header = obus[position]
        kind, extension, has_size = header >> 3 & 15, header >> 2 & 1, header >> 1 & 1
        position += 1 + extension
        if has_size:
            length, position = _leb128(obus, position)
        else:
            length = len(obus) - position
        if position + length > len(obus):
            raise SplitbenchError("malformed AV1: OBU runs past its item")
        if kind == 1:  # OBU_SEQUENCE_HEADER
            sizes.append(_sequence_frame_size(BitReader(obus[position:position + length], what="AV1 sequence header")))
        position += length
    return sizes


def _sequence_frame_size(bits: BitReader) -> tuple[int, int]:
    bits.u(3)  # seq_profile
    bits.u(1)  # still_picture
    if bits.flag():  # reduced_still_picture_header
        bits.u(5)  # seq_level_idx[0]
    else:
        _skip_operating_points(bits)
    width_bits, height_bits = bits.u(4) + 1, bits.u(4) + 1
    return bits.u(width_bits) + 1, bits.u(height_bits) + 1


def _skip_operating_points(bits: BitReader) -> None:
    """timing_info, decoder_model_info and the operating points, up to the frame size fields."""
    delay_length = None
    if bits.flag():  # timing_info_present_flag
        bits.skip(64)  # num_units_in_display_tick, time_scale
        if bits.flag():  # equal_picture_interval
            bits.ue()  # num_ticks_per_picture_minus_1: uvlc(), the same code as ue(v)
        if bits.flag():  # decoder_model_info_present_flag
            delay_length = bits.u(5) + 1
            bits.skip(32 + 5 + 5)
    initial_display_delay = bits.flag()
    for _ in range(bits.u(5) + 1):
        bits.u(12)  # operating_point_idc
        if bits.u(5) > 7:  # seq_level_idx
            bits.u(1)  # seq_tier
        if delay_length is not None and bits.flag():
            bits.skip(2 * delay_length + 1)
        if initial_display_delay and bits.flag():
            bits.u(4)


def avif_size(data: bytes) -> DeclaredSize:
    """The primary image's ``ispe``, checked against the AV1 sequence headers the decoder sizes frames by."""
    top = _boxes(data, 0, len(data))
    if b"ftyp" not in top or b"moov" in top:
        raise SplitbenchError("not a still AVIF image (no ftyp box, or an image sequence)")
    meta_start, meta_end = _only(top, b"meta")
    meta = _boxes(data, meta_start + 4, meta_end)  # meta is a FullBox: 4 bytes of version and flags
    types = _item_types(data, *_only(meta, b"iinf"))
    if derived := sorted({t for t in types.values() if t in _DERIVED_ITEMS}):
        raise SplitbenchError(f"AVIF with derived images ({b', '.join(derived).decode()}) is not supported here")
    coded = [item for item, kind in types.items() if kind == b"av01"]
    if not 1 <= len(coded) <= 2:  # a colour image, and perhaps its alpha plane
        raise SplitbenchError(f"AVIF with {len(coded)} coded images is not supported here")
    properties = _boxes(data, *_only(_boxes(data, *_only(meta, b"iprp")), b"ipco"))
    extents = {struct.unpack_from(">II", data, start + 4) for start, _ in properties.get(b"ispe", [])}
    if len(extents) != 1:
        raise SplitbenchError(f"AVIF with {len(extents)} distinct image sizes (ispe) is not supported here")
    width, height = extents.pop()
    items = _item_data(data, *_only(meta, b"iloc"), meta[b"idat"][0] if b"idat" in meta else None)
    for item in coded:
        frames = av1_max_frame_sizes(items.get(item, b""))
        if not frames or any(w > width or h > height for w, h in frames):
            raise SplitbenchError(f"invalid AVIF: item {item}'s AV1 frames ({frames or 'no sequence header'}) "
                                  f"do not fit its declared {width}x{height}")
    return _size(height, width, 2 + len(coded), _avif_bits(data, properties))


def _avif_bits(data: bytes, properties: dict[bytes, list[tuple[int, int]]]) -> int:
    """The deepest sample the ``pixi`` boxes or the av1C configuration announce."""
    depths = [8]
    for start, end in properties.get(b"pixi", []):
        depths += list(data[start + 5:end])  # FullBox header, channel count, then bits per channel
    for start, end in properties.get(b"av1C", []):
        if end - start >= 3:
            depths.append(12 if data[start + 2] & 0x20 else 10 if data[start + 2] & 0x40 else 8)
    return max(depths)


# --- JPEG XL ----------------------------------------------------------------------------------

_JXL_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}
_JXL_DIMENSION = ((1, 9), (1, 13), (1, 18), (1, 30))


def _jxl_codestream(data: bytes) -> bytes:
    """The bare codestream, or its start from a container's jxlc box or first jxlp box."""
    if data[:2] == JXL_CODESTREAM:
        return data
    if not data.startswith(JXL_CONTAINER):
        raise SplitbenchError("not a JPEG XL file (no codestream or container signature)")
    boxes = _boxes(data, 0, len(data))
    if b"jxlc" in boxes:
        start, end = boxes[b"jxlc"][0]
        return data[start:end]
    if b"jxlp" in boxes:
        return b"".join(data[start + 4:end] for start, end in boxes[b"jxlp"])  # each after a 4-byte index
    raise SplitbenchError("invalid JPEG XL container: no codestream box")


def _jxl_dimensions(bits: LsbBitReader) -> tuple[int, int]:
    """SizeHeader: (width, height)."""
    small = bits.flag()
    height = (bits.u(5) + 1) * 8 if small else bits.u32(*_JXL_DIMENSION)
    ratio = bits.u(3)
    if ratio:
        numerator, denominator = _JXL_RATIOS[ratio]
        return height * numerator // denominator, height
    return ((bits.u(5) + 1) * 8 if small else bits.u32(*_JXL_DIMENSION)), height


def jpegxl_size(data: bytes) -> DeclaredSize:
    """SizeHeader and ImageMetadata up to the extra channels (orientation 5-8 turns the picture)."""
    codestream = _jxl_codestream(data)
    if codestream[:2] != JXL_CODESTREAM:
        raise SplitbenchError("invalid JPEG XL codestream signature")
    bits = LsbBitReader(codestream[2:256], "JPEG XL header")
    width, height = _jxl_dimensions(bits)
    orientation, depth, extra = 1, 8, 0
    if not bits.flag():  # ImageMetadata.all_default
        if bits.flag():  # extra_fields
            orientation = bits.u(3) + 1
            if bits.flag():  # have_intr_size: a display hint; the decoder's output is the image size
                _jxl_dimensions(bits)
            if bits.flag() or bits.flag():  # have_preview, have_animation
                raise SplitbenchError("JPEG XL with a preview or an animation is not supported here")
        if bits.flag():  # float_sample
            depth = bits.u32((32, 0), (16, 0), (24, 0), (1, 6))
            bits.u(4)  # exp_bits
        else:
            depth = bits.u32((8, 0), (10, 0), (12, 0), (1, 6))
        bits.flag()  # modular_16bit_buffers
        extra = bits.u32((0, 0), (1, 0), (2, 4), (1, 12))
    if orientation > 4:  # transposed orientations: the decoder's output swaps the axes
        width, height = height, width
    return _size(height, width, 3 + extra, depth)


# --- JPEG 2000 --------------------------------------------------------------------------------

def _j2k_codestream(data: bytes) -> bytes:
    if data[:4] == J2K_SOC_SIZ:
        return data
    if data.startswith(JP2_SIGNATURE):
        boxes = _boxes(data, 0, len(data))
        if b"jp2c" in boxes:
            start, end = boxes[b"jp2c"][0]
            return data[start:end]
    raise SplitbenchError("not a JPEG 2000 codestream or JP2 file (no SOC and SIZ markers)")


def jpeg2000_size(data: bytes) -> DeclaredSize:
    """The SIZ marker segment, which must follow SOC (ISO/IEC 15444-1 §A.5.1)."""
    codestream = _j2k_codestream(data)
    if codestream[:4] != J2K_SOC_SIZ or len(codestream) < 4 + 38:
        raise SplitbenchError("invalid JPEG 2000 codestream: no SIZ marker after SOC")
    # Lsiz, Rsiz, image and offset, tile size and offset, component count
    _, _, x, y, x0, y0, tile_w, tile_h, tile_x0, tile_y0, components = struct.unpack_from(">HHIIIIIIIIH", codestream, 4)
    if not (x > x0 and y > y0 and tile_w and tile_h and tile_x0 <= x0 and tile_y0 <= y0):
        raise SplitbenchError("invalid JPEG 2000 SIZ marker: empty image or tiles")
    tiles = -(-(x - tile_x0) // tile_w) * -(-(y - tile_y0) // tile_h)
    if tiles > MAX_J2K_TILES:
        raise SplitbenchError(f"JPEG 2000 with {tiles} tiles is not supported here (at most {MAX_J2K_TILES})")
    depths = codestream[42:42 + 3 * components:3]
    if len(depths) != components or not components:
        raise SplitbenchError("invalid JPEG 2000 SIZ marker: truncated component list")
    return _size(y - y0, x - x0, components, max((d & 0x7F) + 1 for d in depths))
