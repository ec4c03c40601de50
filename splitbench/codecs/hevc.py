"""The parts of HEVC (H.265) that BPG rewrites: the sequence parameter set and its VPS.

A BPG file drops the VPS and SPS NAL units and keeps a few SPS fields in a compressed header
(bpg_spec.txt §3); everything else is implied. :func:`parse_sps` reads what x265 wrote,
:func:`check_bpg_assumptions` refuses an SPS the implied values would not reproduce (as
libbpg's encoder does), and :func:`vps_nal` / :func:`sps_nal` rebuild standard NAL units from
the compressed header so that an unmodified HEVC decoder (FFmpeg's, through PyAV) reads the
picture.
"""

from __future__ import annotations

from dataclasses import dataclass

from splitbench.codecs.bitstream import BitReader, BitWriter, add_emulation_prevention, remove_emulation_prevention
from splitbench.errors import SplitbenchError

VPS_NUT, SPS_NUT, PPS_NUT = 32, 33, 34
MAX_CTB_LOG2 = 6  # HEVC's largest coding tree block is 64x64 (H.265 §7.4.3.2.1)


@dataclass(frozen=True)
class Pcm:
    bit_depth_luma_minus1: int
    bit_depth_chroma_minus1: int
    log2_min_luma_cb_minus3: int
    log2_diff_max_min_luma_cb: int
    loop_filter_disabled: bool


@dataclass(frozen=True)
class SpsCore:
    """The SPS fields that a BPG header carries (``hevc_header()``), in its order."""

    log2_min_luma_cb_minus3: int
    log2_diff_max_min_luma_cb: int
    log2_min_tb_minus2: int
    log2_diff_max_min_tb: int
    max_transform_hierarchy_depth_intra: int
    sample_adaptive_offset: bool
    pcm: Pcm | None
    strong_intra_smoothing: bool
    extension_present: bool
    range_extension: bool
    extension_7bits: int
    range_extension_flags: int  # the 9 sps_range_extension() flags, MSB first

    @property
    def cb_size(self) -> int:
        return 1 << (self.log2_min_luma_cb_minus3 + 3)


@dataclass(frozen=True)
class Sps:
    """A parsed SPS: the fields BPG implies, and the :class:`SpsCore` it keeps."""

    vps_id: int
    max_sub_layers_minus1: int
    sps_id: int
    chroma_format_idc: int
    separate_colour_plane: bool
    width: int
    height: int
    conformance_window: tuple[int, int, int, int] | None
    bit_depth_luma: int
    bit_depth_chroma: int
    log2_max_poc_lsb: int
    max_transform_hierarchy_depth_inter: int
    scaling_list: bool
    amp: bool
    num_short_term_ref_pic_sets: int
    long_term_ref_pics: bool
    temporal_mvp: bool
    core: SpsCore


def parse_sps(nal: bytes) -> Sps:
    """Parse an SPS NAL unit (2-byte NAL header included, emulation prevention bytes allowed)."""
    bits = BitReader(remove_emulation_prevention(nal), 16)
    vps_id, max_sub_layers_minus1 = bits.u(4), bits.u(3)
    bits.skip(1)  # sps_temporal_id_nesting_flag
    if max_sub_layers_minus1:
        raise SplitbenchError("HEVC SPS with temporal sub-layers is not supported by BPG")
    bits.skip(96)  # profile_tier_level(1, 0): profile, 32 compatibility flags, 48 constraint bits, level
    sps_id, chroma = bits.ue(), bits.ue()
    separate = bits.flag() if chroma == 3 else False
    width, height = bits.ue(), bits.ue()
    window = (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.flag() else None
    depth_luma, depth_chroma, poc_lsb = bits.ue() + 8, bits.ue() + 8, bits.ue() + 4
    for _ in range(max_sub_layers_minus1 + 1 if bits.flag() else 1):  # sub_layer_ordering_info_present_flag
        bits.ue(), bits.ue(), bits.ue()  # max_dec_pic_buffering, num_reorder, max_latency
    min_cb, diff_cb, min_tb, diff_tb = bits.ue(), bits.ue(), bits.ue(), bits.ue()
    depth_inter, depth_intra = bits.ue(), bits.ue()
    scaling = bits.flag()
    if scaling and bits.flag():
        raise SplitbenchError("HEVC SPS with scaling list data is not supported by BPG")
    amp, sao = bits.flag(), bits.flag()
    pcm = _read_pcm(bits) if bits.flag() else None
    st_rps = bits.ue()
    if st_rps:
        raise SplitbenchError("HEVC SPS with short-term reference picture sets is not supported by BPG")
    long_term = bits.flag()
    if long_term:
        raise SplitbenchError("HEVC SPS with long-term reference pictures is not supported by BPG")
    tmvp, strong = bits.flag(), bits.flag()
    if bits.flag():
        _skip_vui(bits)
    extension = bits.flag()
    range_ext = bits.flag() if extension else False
    ext_7bits = bits.u(7) if extension else 0
    range_flags = bits.u(9) if range_ext else 0
    core = SpsCore(min_cb, diff_cb, min_tb, diff_tb, depth_intra, sao, pcm, strong, extension,
                   range_ext, ext_7bits, range_flags)
    return Sps(vps_id, max_sub_layers_minus1, sps_id, chroma, separate, width, height, window,
               depth_luma, depth_chroma, poc_lsb, depth_inter, scaling, amp, st_rps, long_term, tmvp, core)


def _read_pcm(bits: BitReader) -> Pcm:
    return Pcm(bits.u(4), bits.u(4), bits.ue(), bits.ue(), bits.flag())


def _skip_vui(bits: BitReader) -> None:
    """vui_parameters() (H.265 E.2.1). BPG drops the VUI: its range and colour live in the BPG header."""
    if bits.flag() and bits.u(8) == 255:  # aspect_ratio_info_present_flag, aspect_ratio_idc
        bits.skip(32)  # sar_width, sar_height
    if bits.flag():  # overscan_info_present_flag
        bits.skip(1)
    if bits.flag():  # video_signal_type_present_flag
        bits.skip(4)  # video_format, video_full_range_flag
        if bits.flag():  # colour_description_present_flag
            bits.skip(24)
    if bits.flag():  # chroma_loc_info_present_flag
        bits.ue(), bits.ue()
    bits.skip(3)  # neutral_chroma_indication, field_seq, frame_field_info_present
    if bits.flag():  # default_display_window_flag
        raise SplitbenchError("HEVC VUI with a default display window is not supported by BPG")
    if bits.flag():  # vui_timing_info_present_flag
        bits.skip(64)
        if bits.flag():
            bits.ue()
        if bits.flag():
            raise SplitbenchError("HEVC VUI with HRD parameters is not supported by BPG")
    if bits.flag():  # bitstream_restriction_flag
        bits.skip(3)
        for _ in range(5):
            bits.ue()


def check_bpg_assumptions(sps: Sps, width: int, height: int, chroma_format_idc: int, bit_depth: int) -> None:
    """Refuse an SPS whose omitted fields differ from what a BPG decoder assumes (spec §3.2)."""
    cb = sps.core.cb_size
    expected = {
        "vps/sps id": ((sps.vps_id, sps.sps_id), (0, 0)),
        "chroma_format_idc": (sps.chroma_format_idc, chroma_format_idc),
        "separate_colour_plane_flag": (sps.separate_colour_plane, False),
        "coded size": ((sps.width, sps.height), (-(-width // cb) * cb, -(-height // cb) * cb)),
        "conformance window": (sps.conformance_window in (None, (0, 0, 0, 0)), True),
        "bit depth": ((sps.bit_depth_luma, sps.bit_depth_chroma), (bit_depth, bit_depth)),
        "log2_max_pic_order_cnt_lsb": (sps.log2_max_poc_lsb, 8),
        "max_transform_hierarchy_depth_inter": (
            sps.max_transform_hierarchy_depth_inter, sps.core.max_transform_hierarchy_depth_intra),
        "scaling_list_enabled_flag": (sps.scaling_list, False),
        "amp_enabled_flag": (sps.amp, True),
        "sps_temporal_mvp_enabled_flag": (sps.temporal_mvp, True),
        "sps_extension_7bits": (sps.core.extension_7bits, 0),
    }
    for field, (actual, wanted) in expected.items():
        if actual != wanted:
            raise SplitbenchError(f"x265 wrote an SPS that BPG cannot imply: {field} is {actual}, BPG assumes {wanted}")


def check_core(core: SpsCore) -> None:
    """Refuse block sizes no HEVC stream may have, before anything is computed from them: a
    hostile ``log2_min_luma_coding_block_size_minus3`` near 2³² would make ``cb_size`` an
    integer of billions of bits, and :func:`sps_nal` a list of as many."""
    ctb_log2 = core.log2_min_luma_cb_minus3 + 3 + core.log2_diff_max_min_luma_cb
    if ctb_log2 > MAX_CTB_LOG2:
        raise SplitbenchError(f"invalid HEVC header: coding tree blocks of 2^{ctb_log2} pixels (at most 64)")
    if core.log2_min_tb_minus2 + 2 + core.log2_diff_max_min_tb > 5:
        raise SplitbenchError("invalid HEVC header: transform blocks larger than 32 pixels")


def write_core(core: SpsCore) -> bytes:
    """``hevc_header()`` without its length: the SPS fields in BPG's order, zero-padded to a byte."""
    bits = BitWriter()
    for value in (core.log2_min_luma_cb_minus3, core.log2_diff_max_min_luma_cb, core.log2_min_tb_minus2,
                  core.log2_diff_max_min_tb, core.max_transform_hierarchy_depth_intra):
        bits.ue(value)
    bits.flag(core.sample_adaptive_offset)
    _write_pcm(bits, core.pcm)
    bits.flag(core.strong_intra_smoothing)
    _write_extension(bits, core)
    bits.align_zero()
    return bits.to_bytes()


def read_core(data: bytes) -> SpsCore:
    """Inverse of :func:`write_core` (trailing zero bits are ignored)."""
    bits = BitReader(data)
    min_cb, diff_cb, min_tb, diff_tb, depth_intra = (bits.ue() for _ in range(5))
    sao = bits.flag()
    pcm = _read_pcm(bits) if bits.flag() else None
    strong, extension = bits.flag(), bits.flag()
    range_ext = bits.flag() if extension else False
    ext_7bits = bits.u(7) if extension else 0
    range_flags = bits.u(9) if range_ext else 0
    return SpsCore(min_cb, diff_cb, min_tb, diff_tb, depth_intra, sao, pcm, strong, extension,
                   range_ext, ext_7bits, range_flags)


def _write_pcm(bits: BitWriter, pcm: Pcm | None) -> None:
    bits.flag(pcm is not None)
    if pcm is not None:
        bits.u(4, pcm.bit_depth_luma_minus1)
        bits.u(4, pcm.bit_depth_chroma_minus1)
        bits.ue(pcm.log2_min_luma_cb_minus3)
        bits.ue(pcm.log2_diff_max_min_luma_cb)
        bits.flag(pcm.loop_filter_disabled)


def _write_extension(bits: BitWriter, core: SpsCore) -> None:
    bits.flag(core.extension_present)
    if core.extension_present:
        bits.flag(core.range_extension)
        bits.u(7, core.extension_7bits)
        if core.range_extension:
            bits.u(9, core.range_extension_flags)


def _profile_tier_level(bits: BitWriter, chroma_format_idc: int, bit_depth: int) -> None:
    """general profile: Main, Main 10 or format range extensions (RExt); level 8.5 (spec §3.3)."""
    if chroma_format_idc == 1 and bit_depth == 8:
        profile = 1
    elif chroma_format_idc == 1 and bit_depth <= 10:
        profile = 2
    else:
        profile = 4
    bits.u(2, 0)  # general_profile_space
    bits.flag(False)  # general_tier_flag
    bits.u(5, profile)
    bits.u(32, 1 << (31 - profile))  # general_profile_compatibility_flag[profile]
    bits.u(4, 0b1001)  # progressive_source, interlaced_source, non_packed_constraint, frame_only
    bits.u(32, 0)  # 43 reserved / constraint bits and general_inbld_flag: 44 zero bits
    bits.u(12, 0)
    bits.u(8, 255)  # general_level_idc: level 8.5


def _nal(unit_type: int, bits: BitWriter) -> bytes:
    bits.rbsp_trailing_bits()
    return b"\x00\x00\x00\x01" + bytes([unit_type << 1, 1]) + add_emulation_prevention(bits.to_bytes())


def vps_nal(chroma_format_idc: int, bit_depth: int) -> bytes:
    """A VPS for one layer and one sub-layer with id 0, as BPG implies."""
    bits = BitWriter()
    bits.u(4, 0)  # vps_video_parameter_set_id
    bits.u(2, 0b11)  # vps_base_layer_internal_flag, vps_base_layer_available_flag
    bits.u(6, 0)  # vps_max_layers_minus1
    bits.u(3, 0)  # vps_max_sub_layers_minus1
    bits.flag(True)  # vps_temporal_id_nesting_flag
    bits.u(16, 0xFFFF)
    _profile_tier_level(bits, chroma_format_idc, bit_depth)
    bits.flag(True)  # vps_sub_layer_ordering_info_present_flag
    bits.ue(0), bits.ue(0), bits.ue(0)  # max_dec_pic_buffering_minus1, num_reorder, max_latency
    bits.u(6, 0)  # vps_max_layer_id
    bits.ue(0)  # vps_num_layer_sets_minus1
    bits.flag(False)  # vps_timing_info_present_flag
    bits.flag(False)  # vps_extension_flag
    return _nal(VPS_NUT, bits)


def sps_nal(core: SpsCore, width: int, height: int, chroma_format_idc: int, bit_depth: int) -> bytes:
    """The SPS that BPG's compressed header stands for (spec §3.2's list of assumptions)."""
    cb = core.cb_size
    bits = BitWriter()
    bits.u(4, 0)  # sps_video_parameter_set_id
    bits.u(3, 0)  # sps_max_sub_layers_minus1
    bits.flag(True)  # sps_temporal_id_nesting_flag
    _profile_tier_level(bits, chroma_format_idc, bit_depth)
    bits.ue(0)  # sps_seq_parameter_set_id
    bits.ue(chroma_format_idc)
    if chroma_format_idc == 3:
        bits.flag(False)  # separate_colour_plane_flag
    bits.ue(-(-width // cb) * cb)
    bits.ue(-(-height // cb) * cb)
    bits.flag(False)  # conformance_window_flag: the BPG decoder crops instead
    bits.ue(bit_depth - 8), bits.ue(bit_depth - 8)
    bits.ue(4)  # log2_max_pic_order_cnt_lsb_minus4
    bits.flag(True)  # sps_sub_layer_ordering_info_present_flag
    bits.ue(0), bits.ue(0), bits.ue(0)
    for value in (core.log2_min_luma_cb_minus3, core.log2_diff_max_min_luma_cb, core.log2_min_tb_minus2,
                  core.log2_diff_max_min_tb, core.max_transform_hierarchy_depth_intra,
                  core.max_transform_hierarchy_depth_intra):  # inter = intra
        bits.ue(value)
    bits.flag(False)  # scaling_list_enabled_flag
    bits.flag(True)  # amp_enabled_flag
    bits.flag(core.sample_adaptive_offset)
    _write_pcm(bits, core.pcm)
    bits.ue(0)  # num_short_term_ref_pic_sets
    bits.flag(False)  # long_term_ref_pics_present_flag
    bits.flag(True)  # sps_temporal_mvp_enabled_flag
    bits.flag(core.strong_intra_smoothing)
    bits.flag(False)  # vui_parameters_present_flag
    _write_extension(bits, core)
    return _nal(SPS_NUT, bits)
