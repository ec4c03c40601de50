"""BPG files: HEVC intra pictures coded by libx265 (through PyAV), in Bellard's container.

Encoding follows libbpg 0.9.8's ``bpgenc`` with its defaults: colour conversion and chroma
decimation as in :mod:`splitbench.codecs.bpg_color`, padding to the 8-pixel coding block by
repeating the last row and column, and one x265 picture with constant QP, intra only, preset
``veryslow`` (bpgenc's default level 8), tune ``ssim``, no info SEI, AMP and rectangular
partitions on (x265_glue.c); unlike bpgenc, without wavefront parallel processing (one
thread per picture, see :func:`x265_params`). The Annex-B output then becomes a ``.bpg`` file
(``bpg_spec.txt``): the header, the SPS compressed to the handful of fields BPG keeps, and
the remaining NAL units (PPS, slices) without the first start code.

Decoding parses the header, rebuilds a standard VPS and SPS from it and hands the stream to
FFmpeg's HEVC decoder; the planes are cropped to the picture size and, for colour pictures,
turned back into RGB as ``bpgdec`` does.
"""

from __future__ import annotations

import fractions
import functools
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import imagecodecs
import numpy as np

from splitbench.codecs import hevc
from splitbench.codecs.base import Codec, DeclaredSize, register
from splitbench.codecs.bitstream import nal_unit_type, read_ue7, split_annexb, write_ue7
from splitbench.codecs.bpg_color import decimate_420, rgb_to_ycbcr, upsample_420, ycbcr_to_rgb
from splitbench.errors import SplitbenchError

MAGIC = b"\x42\x50\x47\xfb"
GRAY, YUV420, YUV422, YUV444, YUV420_MPEG2, YUV422_MPEG2 = range(6)
PIXEL_FORMAT_NAMES = {GRAY: "4:0:0", YUV420: "4:2:0", YUV422: "4:2:2", YUV444: "4:4:4",
                      YUV420_MPEG2: "4:2:0 (MPEG2 siting)", YUV422_MPEG2: "4:2:2 (MPEG2 siting)"}
CHROMA_FORMAT_IDC = {GRAY: 0, YUV420: 1, YUV422: 2, YUV444: 3, YUV420_MPEG2: 1, YUV422_MPEG2: 2}
COLOR_SPACE_YCBCR_BT601 = 0
CB_SIZE = 8  # bpgenc pads to this; x265's minimum coding block must match (checked)
BIT_DEPTHS = (8, 10, 12)  # what libx265's 8/10/12-bit builds code (bpgenc's -b 8 … 12)

# bpgenc 0.9.8 defaults as x265 parameters: level 8 = preset veryslow, tune ssim.
X265_PRESET, X265_TUNE = "veryslow", "ssim"


@dataclass(frozen=True)
class BpgHeader:
    """The fixed part of a BPG file header (bpg_spec.txt §3.1)."""

    pixel_format: int
    alpha1: bool
    bit_depth: int
    color_space: int
    extension_present: bool
    alpha2: bool
    limited_range: bool
    animation: bool
    width: int
    height: int
    picture_data_length: int  # 0: up to the end of the file
    header_length: int  # bytes up to the first hevc_header(), extension data included

    @property
    def chroma_format_idc(self) -> int:
        return CHROMA_FORMAT_IDC[self.pixel_format]


def parse_header(data: bytes) -> BpgHeader:
    """Read and validate a BPG header; anything malformed is a one-line error."""
    if len(data) < 6 or data[:4] != MAGIC:
        raise SplitbenchError("not a BPG file (bad magic)")
    flags1, flags2 = data[4], data[5]
    pixel_format, bit_depth, color_space = flags1 >> 5, (flags1 & 0xF) + 8, flags2 >> 4
    if pixel_format > 5 or bit_depth > 14 or color_space > 4:
        raise SplitbenchError(f"invalid BPG header: pixel_format {pixel_format}, bit depth {bit_depth}, "
                              f"color_space {color_space}")
    if pixel_format == GRAY and color_space != 0:
        raise SplitbenchError("invalid BPG header: grayscale pictures must have color_space 0")
    width, offset = read_ue7(data, 6)
    height, offset = read_ue7(data, offset)
    length, offset = read_ue7(data, offset)
    if width == 0 or height == 0:
        raise SplitbenchError("invalid BPG header: zero picture width or height")
    extension = bool(flags2 & 0x08)
    if extension:
        extension_length, offset = read_ue7(data, offset)
        offset += extension_length  # metadata (EXIF, ICC, …) is skipped, as the spec allows
    if offset > len(data) or (length and offset + length > len(data)):
        raise SplitbenchError("truncated BPG file")
    return BpgHeader(pixel_format, bool(flags1 & 0x10), bit_depth, color_space, extension,
                     bool(flags2 & 0x04), bool(flags2 & 0x02), bool(flags2 & 0x01), width, height,
                     length, offset)


def write_bpg(annexb: bytes, width: int, height: int, pixel_format: int, bit_depth: int) -> bytes:
    """A ``.bpg`` file from one x265 picture (VPS, SPS, PPS, slices) of a ``width``×``height`` image.

    Like bpgenc 0.9.8, picture_data_length is written as 0 (the data runs to the end of the
    file) and no extension or alpha plane is stored; colour is BT.601 full-range YCbCr.
    """
    units = split_annexb(annexb)
    if len(units) < 3 or [nal_unit_type(annexb[s:e]) for s, e in units[:2]] != [hevc.VPS_NUT, hevc.SPS_NUT]:
        raise SplitbenchError("x265 output does not start with VPS and SPS NAL units")
    sps = hevc.parse_sps(annexb[units[1][0] : units[1][1]])
    hevc.check_bpg_assumptions(sps, width, height, CHROMA_FORMAT_IDC[pixel_format], bit_depth)
    if sps.core.cb_size != CB_SIZE:
        raise SplitbenchError(f"x265 used {sps.core.cb_size}-pixel minimum coding blocks; BPG files here assume {CB_SIZE}")
    core = hevc.write_core(sps.core)
    header = MAGIC + bytes([
        (pixel_format << 5) | (bit_depth - 8),  # alpha1_flag = 0
        COLOR_SPACE_YCBCR_BT601 << 4,  # no extension, alpha2, limited range or animation
    ]) + write_ue7(width) + write_ue7(height) + write_ue7(0)
    # hevc_data(): everything after the SPS, less the start code of the NAL that follows it.
    return header + write_ue7(len(core)) + core + annexb[units[2][0] :]


def read_bpg(data: bytes) -> tuple[BpgHeader, bytes]:
    """The header and a standard Annex-B HEVC stream (VPS and SPS rebuilt) of a BPG file.

    The picture data may not hold parameter sets of its own (spec §3.2): a later SPS would
    replace the one the header stands for, and with it the picture size the decoder allocates.
    """
    header = parse_header(data)
    if header.alpha1 or header.alpha2 or header.animation:
        raise SplitbenchError("BPG files with alpha planes or animations are not supported here")
    end = header.header_length + header.picture_data_length if header.picture_data_length else len(data)
    core_length, offset = read_ue7(data, header.header_length)
    if offset + core_length > end:
        raise SplitbenchError("truncated BPG file: the HEVC header runs past the picture data")
    core = hevc.read_core(data[offset : offset + core_length])
    hevc.check_core(core)
    pictures = b"\x00\x00\x00\x01" + data[offset + core_length : end]
    if any(nal_unit_type(pictures[s:e]) in (hevc.VPS_NUT, hevc.SPS_NUT) for s, e in split_annexb(pictures) if e > s):
        raise SplitbenchError("invalid BPG file: its picture data holds a VPS or SPS (the header stands for them)")
    idc = header.chroma_format_idc
    stream = (
        hevc.vps_nal(idc, header.bit_depth)
        + hevc.sps_nal(core, header.width, header.height, idc, header.bit_depth)
        + pictures
    )
    return header, stream


def declared_size(data: bytes) -> DeclaredSize:
    """The picture a BPG file declares, its header and parameter sets checked as decoding would check them."""
    header, _ = read_bpg(data)
    return DeclaredSize(header.height, header.width, 1 if header.pixel_format == GRAY else 3,
                        1 if header.bit_depth == 8 else 2)


# --- x265 through PyAV ------------------------------------------------------------------------

_GRAY_FORMATS = {8: "gray", 10: "gray10le", 12: "gray12le"}
_YUV_FORMATS = {(YUV420, 8): "yuv420p", (YUV420, 10): "yuv420p10le", (YUV420, 12): "yuv420p12le",
                (YUV444, 8): "yuv444p", (YUV444, 10): "yuv444p10le", (YUV444, 12): "yuv444p12le"}


def x265_params(qp: int) -> str:
    """bpgenc's x265_glue.c settings on top of the preset, as libx265 parameter string."""
    return ":".join([
        f"qp={qp}",  # rc.rateControlMode = X265_RC_CQP
        "keyint=1", "min-keyint=1",  # keyframeMax = 1: intra only
        "info=0",  # bEmitInfoSEI = 0
        "amp=1", "rect=1",  # bEnableAMP, bEnableRectInter (BPG's SPS implies amp_enabled_flag = 1)
        "repeat-headers=1", "hash=0",
        # One thread: parallelism is per image. Without a thread pool x265 turns wavefront
        # parallel processing off; bpgenc keeps x265's default pool and with it WPP (a few bytes
        # of entry points per CTU row). The one known difference from bpgenc, stated, not hidden.
        "frame-threads=1", "pools=none", "wpp=0", "lookahead-slices=0",
        "log-level=none",
    ])


def _pad_plane(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """bpgenc ``image_pad``: repeat the last column, then the last row."""
    return np.pad(plane, ((0, height - plane.shape[0]), (0, width - plane.shape[1])), mode="edge")


def _planes(image: np.ndarray, pixel_format: int, bit_depth: int) -> list[np.ndarray]:
    """The planes bpgenc hands x265, padded to a multiple of the coding block."""
    height, width = image.shape[:2]
    padded_h, padded_w = -(-height // CB_SIZE) * CB_SIZE, -(-width // CB_SIZE) * CB_SIZE
    if pixel_format == GRAY:
        planes = [image.astype(np.int64)]
    else:
        planes = rgb_to_ycbcr(image, bit_depth)
        if pixel_format == YUV420:
            planes = [planes[0]] + [decimate_420(p, bit_depth) for p in planes[1:]]
    scale = ([1] + [2 if pixel_format == YUV420 else 1] * 2)[: len(planes)]
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return [_pad_plane(p, padded_h // s, padded_w // s).astype(dtype) for p, s in zip(planes, scale, strict=True)]


def _frame_from_planes(planes: list[np.ndarray], pix_fmt: str) -> av.VideoFrame:
    frame = av.VideoFrame(planes[0].shape[1], planes[0].shape[0], pix_fmt)
    for target, plane in zip(frame.planes, planes, strict=True):
        row_bytes = plane.shape[1] * plane.itemsize
        buffer = np.zeros((plane.shape[0], target.line_size), dtype=np.uint8)
        buffer[:, :row_bytes] = plane.view(np.uint8).reshape(plane.shape[0], row_bytes)
        target.update(buffer.tobytes())
    return frame


def x265_encode(image: np.ndarray, qp: int, pixel_format: int, bit_depth: int) -> bytes:
    """One picture through libx265 configured as bpgenc configures it; Annex-B bytes."""
    planes = _planes(image, pixel_format, bit_depth)
    pix_fmt = _GRAY_FORMATS[bit_depth] if pixel_format == GRAY else _YUV_FORMATS[(pixel_format, bit_depth)]
    context = av.CodecContext.create("libx265", "w")
    context.width, context.height = planes[0].shape[1], planes[0].shape[0]
    context.pix_fmt = pix_fmt
    context.time_base = fractions.Fraction(1, 25)  # bpgenc's dummy frame rate
    context.options = {"preset": X265_PRESET, "tune": X265_TUNE, "x265-params": x265_params(qp)}
    packets = list(context.encode(_frame_from_planes(planes, pix_fmt))) + list(context.encode(None))
    return b"".join(bytes(packet) for packet in packets)


def hevc_decode_planes(stream: bytes) -> list[np.ndarray]:
    """Decode one Annex-B picture with FFmpeg's HEVC decoder; its planes at coded size."""
    context = av.CodecContext.create("hevc", "r")
    try:
        frames = list(context.decode(av.Packet(stream))) + list(context.decode(None))
    except av.error.FFmpegError as error:
        raise SplitbenchError(f"HEVC decoding failed: {error}") from None
    if len(frames) != 1:
        raise SplitbenchError(f"HEVC stream decoded to {len(frames)} pictures, expected 1")
    frame = frames[0]
    dtype = np.uint16 if frame.format.name.endswith("le") else np.uint8
    planes = []
    for plane in frame.planes:
        rows = np.frombuffer(plane, dtype=np.uint8).reshape(plane.height, plane.line_size)
        planes.append(rows.view(dtype)[:, : plane.width])
    return planes


def encode_bpg(image: np.ndarray, qp: int, bit_depth: int, chroma: str = "420") -> bytes:
    """A ``.bpg`` file of a gray (H×W) or RGB (H×W×3) image holding ``bit_depth``-bit samples."""
    if image.ndim == 2:
        pixel_format = GRAY
    else:
        pixel_format = {"420": YUV420, "444": YUV444}[chroma]
    annexb = x265_encode(image, qp, pixel_format, bit_depth)
    return write_bpg(annexb, image.shape[1], image.shape[0], pixel_format, bit_depth)


def decode_bpg(data: bytes) -> np.ndarray:
    """Samples of a BPG file: H×W for grayscale, H×W×3 RGB (as bpgdec converts) otherwise."""
    header, stream = read_bpg(data)
    if header.color_space != COLOR_SPACE_YCBCR_BT601 or header.limited_range:
        raise SplitbenchError("only full-range BT.601 YCbCr BPG files are supported here")
    planes = hevc_decode_planes(stream)
    width, height, depth = header.width, header.height, header.bit_depth
    luma = planes[0][:height, :width]
    dtype = np.uint8 if depth == 8 else np.uint16
    if header.pixel_format == GRAY:
        return luma.astype(dtype)
    if header.pixel_format in (YUV420,):
        chroma = [upsample_420(p, width, height, depth) for p in planes[1:]]
    elif header.pixel_format == YUV444:
        chroma = [p[:height, :width] for p in planes[1:]]
    else:
        raise SplitbenchError(f"BPG pixel format {PIXEL_FORMAT_NAMES[header.pixel_format]} is not supported here")
    return ycbcr_to_rgb(luma, chroma[0], chroma[1], depth).astype(dtype)


# --- the codec classes ------------------------------------------------------------------------

BPG_BACKENDS = ("pyav", "bpgenc")
CHROMA_FORMATS = ("420", "444")


@register
class BpgCodec(Codec):
    """BPG with libx265 in-process (``pyav``), or Bellard's ``bpgenc``/``bpgdec`` (``bpgenc``)."""

    name = "bpg"
    extension = "bpg"
    parameter = "qp"
    param_range = (0, 51)
    param_meaning = "HEVC quantisation parameter (x265 CQP; x265 codes the I slice at qp − 3, ipratio 1.4)"
    bit_depths = BIT_DEPTHS
    default_params = (10, 20, 30, 35, 40, 50)  # seed 003 Table 6

    def __init__(self, param: int | None, bits: int, channels: int, chroma: str = "420", backend: str = "pyav") -> None:
        super().__init__(param, bits, channels)
        if chroma not in CHROMA_FORMATS:
            raise SplitbenchError(f"unknown chroma format '{chroma}'; valid: {', '.join(CHROMA_FORMATS)}")
        if backend not in BPG_BACKENDS:
            raise SplitbenchError(f"unknown BPG backend '{backend}'; valid: {', '.join(BPG_BACKENDS)}")
        self.chroma = chroma
        self.external = _external_bpg() if backend == "bpgenc" else None

    @property
    def backend(self) -> str:  # type: ignore[override]
        return "bpgenc" if self.external else "x265-pyav"

    def encode(self, image: np.ndarray) -> bytes:
        if self.external:
            return self.external.encode(image, self.param, self.bits, self.chroma)  # type: ignore[arg-type]
        return encode_bpg(image, self.param, self.bits, self.chroma)  # type: ignore[arg-type]

    def decode(self, data: bytes) -> np.ndarray:
        if self.external:
            return self.external.decode(data, self.bits, self.channels)
        return decode_bpg(data)

    def declared_size(self, data: bytes) -> DeclaredSize:
        return declared_size(data)

    def settings(self) -> dict[str, Any]:
        chroma = "4:0:0" if self.gray else {"420": "4:2:0", "444": "4:4:4"}[self.chroma]
        base = {**super().settings(), "chroma": chroma, "color": "BT.601 full-range YCbCr" if not self.gray else "gray"}
        if self.external:
            return {**base, "encoder": self.external.version, "level": 8}
        return {**base, "encoder": f"libx265 {_x265_version()} via PyAV {av.__version__}", "preset": X265_PRESET,
                "tune": X265_TUNE, "x265_params": x265_params(self.param)}  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1)
def _x265_version() -> str:
    """The version of the libx265 bundled with PyAV (FFmpeg's wrapper does not report one)."""
    libraries = Path(av.__file__).resolve().parent.parent / "av.libs"
    for library in sorted(libraries.glob("libx265*")):
        found = re.search(rb"\d+\.\d+\+\d+-[0-9a-f]{7}", library.read_bytes())
        if found:
            return found.group().decode()
    return "unknown version"


class _ExternalBpg:
    """``bpgenc``/``bpgdec`` on PATH, through PNG files in a temporary folder (CompressAI's way)."""

    def __init__(self, encoder: str, decoder: str) -> None:
        self.encoder, self.decoder = encoder, decoder
        done = subprocess.run([encoder, "-h"], capture_output=True, text=True)
        first = (done.stdout or done.stderr).strip().splitlines()
        self.version = first[0] if first else "bpgenc"

    def encode(self, image: np.ndarray, qp: int, bits: int, chroma: str) -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            source, target = Path(folder, "in.png"), Path(folder, "out.bpg")
            source.write_bytes(imagecodecs.png_encode(_to_png_depth(image, bits)))
            self._run([self.encoder, "-q", str(qp), "-f", chroma, "-b", str(bits), "-m", "8", "-o", str(target), str(source)])
            return target.read_bytes()

    def decode(self, data: bytes, bits: int, channels: int) -> np.ndarray:
        with tempfile.TemporaryDirectory() as folder:
            source, target = Path(folder, "in.bpg"), Path(folder, "out.png")
            source.write_bytes(data)
            self._run([self.decoder, *(["-b", "16"] if bits > 8 else []), "-o", str(target), str(source)])
            decoded = imagecodecs.png_decode(target.read_bytes())
        if channels == 1 and decoded.ndim == 3:
            decoded = decoded[..., 0]
        if bits > 8:  # bpgdec -b 16 scales to 16 bits
            decoded = np.rint(decoded.astype(np.float64) * ((1 << bits) - 1) / 65535)
        return decoded.astype(np.uint8 if bits == 8 else np.uint16)

    @staticmethod
    def _run(command: list[str]) -> None:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip().splitlines()
            raise SplitbenchError(f"{Path(command[0]).name} failed: {message[0] if message else done.returncode}")


def _to_png_depth(image: np.ndarray, bits: int) -> np.ndarray:
    """bpgenc reads 8- or 16-bit PNGs; deeper samples are scaled to 16 bits for it."""
    if bits == 8:
        return image
    return np.rint(image.astype(np.float64) * 65535 / ((1 << bits) - 1)).astype(np.uint16)


def _external_bpg() -> _ExternalBpg:
    encoder, decoder = shutil.which("bpgenc"), shutil.which("bpgdec")
    if not encoder or not decoder:
        raise SplitbenchError("--bpg-backend bpgenc needs bpgenc and bpgdec on PATH (libbpg); "
                              "they are not installed here, use the default --bpg-backend pyav")
    return _ExternalBpg(encoder, decoder)
