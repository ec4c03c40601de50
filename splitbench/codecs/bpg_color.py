"""bpgenc's RGB → YCbCr conversion and 4:2:0 decimation, and libbpg's inverse, in integers.

The ``paper`` layout hands the codec an RGB picture (features in R, G = B = 0). What reaches
the receiver then depends on the colour conversion and chroma resampling as much as on HEVC,
so these functions reproduce libbpg 0.9.8's fixed-point arithmetic exactly (bpgenc.c:
``convert_init``, ``rgb24_to_ycc``, ``decimate2_hv`` with the phase-0.5 "JPEG" filter;
libbpg.c: ``interp2_vh``, ``ycc_to_rgb24``): JFIF-style BT.601 full-range YCbCr, chroma
sited between luma samples. Arithmetic right shifts round towards −∞, as C's do on the
compilers libbpg targets.
"""

from __future__ import annotations

import numpy as np

_K_R, _K_B = 0.299, 0.114
# bpgenc decimate2p1: 10 taps at offsets −4 … +5 around each even sample (sum 128).
_DECIMATE = np.array([2, -4, -8, 17, 57, 57, 17, -8, -4, 2], dtype=np.int64)
# libbpg interp2p1: 7 taps at offsets −3 … +3 for even and odd output samples (sum 64).
_INTERP_EVEN = np.array([2, -6, 18, 57, -10, 4, -1], dtype=np.int64)
_INTERP_ODD = _INTERP_EVEN[::-1].copy()


def _lrint(value: float) -> int:
    return int(round(value))  # C's lrint in the default mode: to nearest, ties to even


def rgb_to_ycbcr(rgb: np.ndarray, bit_depth: int) -> list[np.ndarray]:
    """bpgenc ``rgb24_to_ycc``/``rgb48_to_ycc`` with input and output at ``bit_depth``."""
    shift = 31 - bit_depth
    mult = float(1 << shift)  # out_max · 2^shift / in_max with equal depths
    rows = [
        (_K_R, 1 - _K_R - _K_B, _K_B),
        (-0.5 * _K_R / (1 - _K_B), -0.5 * (1 - _K_R - _K_B) / (1 - _K_B), 0.5),
        (0.5, -0.5 * (1 - _K_R - _K_B) / (1 - _K_R), -0.5 * _K_B / (1 - _K_R)),
    ]
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    rnd, center, top = 1 << (shift - 1), 1 << (bit_depth - 1), (1 << bit_depth) - 1
    planes = []
    for index, (cr, cg, cb) in enumerate(rows):
        mixed = (_lrint(cr * mult) * r + _lrint(cg * mult) * g + _lrint(cb * mult) * b + rnd) >> shift
        planes.append(np.clip(mixed + (center if index else 0), 0, top))
    return planes


def _taps(padded: np.ndarray, taps: np.ndarray, first: int, count: int, step: int, axis: int) -> np.ndarray:
    """Σ_k taps[k] · padded[first + step·i + k] along ``axis`` for i < count."""
    total = np.zeros_like(np.take(padded, np.arange(count), axis=axis))
    for k, tap in enumerate(taps):
        total += tap * np.take(padded, first + k + step * np.arange(count), axis=axis)
    return total


def decimate_420(plane: np.ndarray, bit_depth: int) -> np.ndarray:
    """bpgenc ``decimate2_hv``: halve both axes (rounding up), horizontal pass first.

    Edges are extended by repeating the border sample. The horizontal pass keeps
    ``14 − bit_depth`` extra bits and the vertical pass rounds and clips once at the end.
    """
    height, width = plane.shape
    x = np.pad(plane.astype(np.int64), 5, mode="edge")
    shift_h = bit_depth - 7
    h = (_taps(x, _DECIMATE, 1, (width + 1) // 2, 2, axis=1) + (1 << (shift_h - 1))) >> shift_h
    shift_v = 21 - bit_depth
    v = (_taps(h, _DECIMATE, 1, (height + 1) // 2, 2, axis=0) + (1 << (shift_v - 1))) >> shift_v
    return np.clip(v, 0, (1 << bit_depth) - 1)


def upsample_420(plane: np.ndarray, width: int, height: int, bit_depth: int) -> np.ndarray:
    """libbpg ``interp2_vh``: chroma of a ``width``×``height`` picture back to full size.

    ``plane`` is the decoded chroma plane cropped to ⌈height/2⌉ × ⌈width/2⌉. Vertical pass
    first (reduced to 14 bits), then horizontal; rows and columns beyond the border repeat it.
    """
    half_h, half_w = (height + 1) // 2, (width + 1) // 2
    x = plane[:half_h, :half_w].astype(np.int64)
    shift_v = bit_depth - 8
    rnd_v = (1 << shift_v) >> 1
    rows = np.pad(x, ((3, 3), (0, 0)), mode="edge")
    vertical = np.empty((height, half_w), dtype=np.int64)
    vertical[0::2] = (_taps(rows, _INTERP_EVEN, 0, (height + 1) // 2, 1, axis=0) + rnd_v) >> shift_v
    vertical[1::2] = (_taps(rows, _INTERP_ODD, 0, height // 2, 1, axis=0) + rnd_v) >> shift_v
    cols = np.pad(vertical, ((0, 0), (3, 4)), mode="edge")
    shift_h = 20 - bit_depth
    out = np.empty((height, width), dtype=np.int64)
    out[:, 0::2] = (_taps(cols, _INTERP_EVEN, 0, (width + 1) // 2, 1, axis=1) + (1 << (shift_h - 1))) >> shift_h
    out[:, 1::2] = (_taps(cols, _INTERP_ODD, 0, width // 2, 1, axis=1) + (1 << (shift_h - 1))) >> shift_h
    return np.clip(out, 0, (1 << bit_depth) - 1)


def ycbcr_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, bit_depth: int) -> np.ndarray:
    """libbpg ``ycc_to_rgb24`` (for 8 bits; the same arithmetic at ``bit_depth`` otherwise)."""
    shift = 30 - bit_depth
    mult = float(1 << shift)
    one = _lrint(mult)
    c_r_cr = _lrint(2 * (1 - _K_R) * mult)
    c_g_cb = _lrint(2 * _K_B * (1 - _K_B) / (1 - _K_B - _K_R) * mult)
    c_g_cr = _lrint(2 * _K_R * (1 - _K_R) / (1 - _K_B - _K_R) * mult)
    c_b_cb = _lrint(2 * (1 - _K_B) * mult)
    center, rnd, top = 1 << (bit_depth - 1), 1 << (shift - 1), (1 << bit_depth) - 1
    luma = y.astype(np.int64) * one + rnd
    blue_diff, red_diff = cb.astype(np.int64) - center, cr.astype(np.int64) - center
    r = (luma + c_r_cr * red_diff) >> shift
    g = (luma - c_g_cb * blue_diff - c_g_cr * red_diff) >> shift
    b = (luma + c_b_cb * blue_diff) >> shift
    return np.clip(np.stack([r, g, b], axis=-1), 0, top)
