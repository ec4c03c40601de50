"""BPG files written through libx265: header fields per bpg_spec.txt, our reader, bpgenc's colour path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA, needs_shared_data
from splitbench.codecs import bpg, hevc
from splitbench.codecs.bitstream import (
    add_emulation_prevention,
    nal_unit_type,
    read_ue7,
    remove_emulation_prevention,
    split_annexb,
    write_ue7,
)
from splitbench.codecs.bpg_color import decimate_420, rgb_to_ycbcr, upsample_420, ycbcr_to_rgb
from splitbench.errors import SplitbenchError


def test_ue7_matches_the_spec_examples() -> None:
    for value, encoded in [(8, b"\x08"), (542, b"\x84\x1e"), (728855, b"\xac\xbe\x17"), (0, b"\x00")]:
        assert write_ue7(value) == encoded
        assert read_ue7(b"\xff" + encoded, 1) == (value, 1 + len(encoded))
    with pytest.raises(SplitbenchError, match="non-canonical"):
        read_ue7(b"\x80\x08", 0)  # the spec forbids a leading 0x80


def test_emulation_prevention_round_trip() -> None:
    rbsp = bytes([0, 0, 0, 0, 0, 1, 0, 0, 2, 0, 0, 3, 0, 0, 4, 7])
    escaped = add_emulation_prevention(rbsp)
    assert b"\x00\x00\x00" not in escaped and b"\x00\x00\x01" not in escaped
    assert remove_emulation_prevention(escaped) == rbsp


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """A real photograph (an ImageNet validation image) as 8-bit RGB, 112 x 224."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no shared data at {SHARED_DATA}")
    path = sorted((SHARED_DATA / "imagenet-val-1300" / "images").iterdir())[0]
    return np.asarray(Image.open(path).convert("RGB").resize((224, 112)))


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb).convert("L"))


@needs_shared_data
@pytest.mark.parametrize("bit_depth", [8, 10, 12])
def test_gray_bpg_header_and_reader(photo: np.ndarray, bit_depth: int) -> None:
    plane = _luma(photo)[:109, :221].astype(np.uint16) << (bit_depth - 8)  # sizes not multiples of 8
    plane = plane.astype(np.uint8 if bit_depth == 8 else np.uint16)
    data = bpg.encode_bpg(plane, 30, bit_depth)
    assert data[:4] == b"BPG\xfb"
    header = bpg.parse_header(data)
    assert (header.width, header.height, header.pixel_format, header.bit_depth) == (221, 109, bpg.GRAY, bit_depth)
    flags = (header.color_space, header.alpha1, header.alpha2, header.limited_range, header.animation)
    assert flags == (0, False, False, False, False)
    assert data[4] == bit_depth - 8 and data[5] == 0  # pixel_format 0 | alpha1 0 | bit_depth - 8; color 0, flags 0
    assert header.picture_data_length == 0  # "up to the end of the file", as bpgenc 0.9.8 writes it
    decoded = bpg.decode_bpg(data)
    assert decoded.shape == plane.shape and decoded.dtype == plane.dtype
    # lossy at QP 30, by the same relative amount at every depth (HEVC scales QP with the depth)
    assert 1.5 < np.abs(decoded.astype(int) - plane.astype(int)).mean() / 2 ** (bit_depth - 8) < 3.5


@needs_shared_data
@pytest.mark.parametrize("pixel_format", [bpg.GRAY, bpg.YUV420, bpg.YUV444])
def test_reader_rebuilds_exactly_the_stream_x265_wrote(photo: np.ndarray, pixel_format: int) -> None:
    """Our VPS/SPS rebuilt from the compressed header decode to the same pixels as x265's own."""
    image = _luma(photo) if pixel_format == bpg.GRAY else photo
    annexb = bpg.x265_encode(image, 25, pixel_format, 8)
    units = split_annexb(annexb)
    assert [nal_unit_type(annexb[s:e]) for s, e in units][:3] == [hevc.VPS_NUT, hevc.SPS_NUT, hevc.PPS_NUT]
    data = bpg.write_bpg(annexb, 224, 112, pixel_format, 8)
    header, stream = bpg.read_bpg(data)
    assert header.pixel_format == pixel_format
    # the file drops VPS and SPS (~60 bytes) and adds a header of ~15
    assert len(data) < len(annexb) - 30
    original, rebuilt = bpg.hevc_decode_planes(annexb), bpg.hevc_decode_planes(stream)
    assert len(original) == len(rebuilt) == (1 if pixel_format == bpg.GRAY else 3)
    assert all(np.array_equal(a, b) for a, b in zip(original, rebuilt, strict=True))
    # the compressed header holds x265's SPS fields, and the rebuilt SPS parses back to them
    original_sps = hevc.parse_sps(annexb[units[1][0] : units[1][1]])
    rebuilt_units = split_annexb(stream)
    assert hevc.parse_sps(stream[rebuilt_units[1][0] : rebuilt_units[1][1]]).core == original_sps.core


@needs_shared_data
def test_bpgenc_settings_reach_x265(photo: np.ndarray) -> None:
    """veryslow's deep transform tree (3 levels) and SAO are in the SPS; a CTU of 64 and 8x8 CUs."""
    annexb = bpg.x265_encode(_luma(photo), 35, bpg.GRAY, 8)
    start, end = split_annexb(annexb)[1]
    core = hevc.parse_sps(annexb[start:end]).core
    assert core.max_transform_hierarchy_depth_intra == 2  # x265 --tu-intra-depth 3 (veryslow)
    assert core.cb_size == 8 and core.log2_diff_max_min_luma_cb == 3 and core.sample_adaptive_offset


def test_truncated_or_foreign_files_fail_in_one_line() -> None:
    with pytest.raises(SplitbenchError, match="not a BPG file"):
        bpg.parse_header(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(SplitbenchError, match="truncated BPG header"):
        bpg.parse_header(b"BPG\xfb\x00\x00\x81")


def test_colour_conversion_round_trip_at_444() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, size=(16, 20, 3), dtype=np.uint8)
    back = ycbcr_to_rgb(*rgb_to_ycbcr(rgb, 8), 8)
    assert np.abs(back - rgb.astype(np.int64)).max() <= 2  # two 8-bit roundings of BT.601


def _decimate_by_loops(plane: np.ndarray, bit_depth: int) -> np.ndarray:
    """bpgenc decimate2_h16 then decimate2_v, sample by sample with explicit edge clamping."""
    taps = [2, -4, -8, 17, 57, 57, 17, -8, -4, 2]
    height, width = plane.shape
    clamp = lambda i, n: min(max(i, 0), n - 1)  # noqa: E731
    shift_h, shift_v = bit_depth - 7, 21 - bit_depth
    half = [[(sum(t * int(plane[y, clamp(2 * x + k - 4, width)]) for k, t in enumerate(taps))
              + (1 << (shift_h - 1))) >> shift_h for x in range((width + 1) // 2)] for y in range(height)]
    out = np.zeros(((height + 1) // 2, (width + 1) // 2), dtype=np.int64)
    for y in range(out.shape[0]):
        for x in range(out.shape[1]):
            total = sum(t * half[clamp(2 * y + k - 4, height)][x] for k, t in enumerate(taps))
            out[y, x] = min(max((total + (1 << (shift_v - 1))) >> shift_v, 0), (1 << bit_depth) - 1)
    return out


def _upsample_by_loops(plane: np.ndarray, width: int, height: int, bit_depth: int) -> np.ndarray:
    """libbpg interp2_vh (phase 0.5) sample by sample with explicit edge clamping."""
    even, odd = [2, -6, 18, 57, -10, 4, -1], [-1, 4, -10, 57, 18, -6, 2]
    half_h, half_w = (height + 1) // 2, (width + 1) // 2
    clamp = lambda i, n: min(max(i, 0), n - 1)  # noqa: E731
    shift_v, shift_h = bit_depth - 8, 20 - bit_depth
    out = np.zeros((height, width), dtype=np.int64)
    for y in range(height):
        taps = odd if y & 1 else even
        column = [(sum(t * int(plane[clamp((y >> 1) + k - 3, half_h), x]) for k, t in enumerate(taps))
                   + ((1 << shift_v) >> 1)) >> shift_v for x in range(half_w)]
        for x in range(width):
            taps_h = odd if x & 1 else even
            total = sum(t * column[clamp((x >> 1) + k - 3, half_w)] for k, t in enumerate(taps_h))
            out[y, x] = min(max((total + (1 << (shift_h - 1))) >> shift_h, 0), (1 << bit_depth) - 1)
    return out


@pytest.mark.parametrize("bit_depth, shape", [(8, (9, 13)), (10, (8, 6)), (12, (5, 4))])
def test_chroma_filters_match_libbpg_sample_by_sample(bit_depth: int, shape: tuple[int, int]) -> None:
    plane = np.random.default_rng(bit_depth).integers(0, 1 << bit_depth, size=shape)
    small = decimate_420(plane, bit_depth)
    assert np.array_equal(small, _decimate_by_loops(plane, bit_depth))
    assert np.array_equal(upsample_420(small, shape[1], shape[0], bit_depth),
                          _upsample_by_loops(small, shape[1], shape[0], bit_depth))
    flat = np.full(shape, 77 << (bit_depth - 8))
    assert np.array_equal(upsample_420(decimate_420(flat, bit_depth), shape[1], shape[0], bit_depth), flat)


@needs_shared_data
def test_paper_layout_codes_the_r_channel_as_bpgenc_does(photo: np.ndarray) -> None:
    """R with G = B = 0 becomes Y = 0.299 R and Cr = 0.5 R + 128: 4:2:0 halves the Cr detail."""
    red = np.zeros_like(photo)
    red[..., 0] = _luma(photo)
    y, cb, cr = rgb_to_ycbcr(red, 8)
    assert np.abs(y - 0.299 * red[..., 0]).max() <= 1 and np.abs(cr - (128 + 0.5 * red[..., 0])).max() <= 1
    errors = {}
    for chroma in ("420", "444"):
        data = bpg.encode_bpg(red, 20, 8, chroma)
        assert bpg.parse_header(data).pixel_format == {"420": bpg.YUV420, "444": bpg.YUV444}[chroma]
        decoded = bpg.decode_bpg(data)
        assert decoded.shape == red.shape
        errors[chroma] = np.abs(decoded[..., 0].astype(int) - red[..., 0]).mean()
    assert errors["444"] < 2 < 2 * errors["444"] < errors["420"]
