"""The codec registry: every codec round-trips real pixels through its library; bad values fail in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA
from PIL import Image

from splitbench.codecs import CodecSpec, codec_names, make_codec
from splitbench.errors import SplitbenchError


@pytest.fixture(scope="module")
def plane() -> np.ndarray:
    """A real photograph's luma where ../shared is present, else a deterministic texture."""
    images = SHARED_DATA / "imagenet-val-1300" / "images"
    if images.is_dir():
        path = sorted(images.iterdir())[1]
        return np.asarray(Image.open(path).convert("L").resize((224, 112)))
    y, x = np.mgrid[0:112, 0:224]
    return (128 + 60 * np.sin(x / 7.0) * np.cos(y / 5.0)).astype(np.uint8)


def test_registry_lists_the_paper_codecs_and_the_extra_ones() -> None:
    assert set(codec_names()) == {"png", "webp", "bpg", "avif", "jpegxl", "jpeg2000"}


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("channels", [1, 3])
def test_png_is_lossless_byte_for_byte(plane: np.ndarray, bits: int, channels: int) -> None:
    samples = plane.astype(np.uint16) * 257 if bits == 16 else plane
    picture = samples if channels == 1 else np.stack([samples, samples // 2, samples // 3], axis=-1)
    codec = make_codec("png", None, bits, channels)
    data = codec.encode(picture)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    decoded = codec.decode(data)
    assert decoded.dtype == picture.dtype and np.array_equal(decoded, picture)


@pytest.mark.parametrize(
    "name, param, magic",
    [("webp", 75, b"RIFF"), ("bpg", 30, b"BPG\xfb"), ("avif", 60, b"\x00\x00\x00"), ("jpegxl", 75, b"\xff\x0a"),
     ("jpeg2000", 40, b"\xff\x4f\xff\x51")],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_lossy_codecs_round_trip_with_bounded_error(plane: np.ndarray, name: str, param: int, magic: bytes,
                                                    channels: int) -> None:
    picture = plane if channels == 1 else np.stack([plane, np.zeros_like(plane), np.zeros_like(plane)], axis=-1)
    codec = make_codec(name, param, 8, channels)
    data = codec.encode(picture)
    assert data.startswith(magic) or (name == "avif" and data[4:8] == b"ftyp")
    decoded = codec.decode(data)
    assert decoded.shape == picture.shape and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(int) - picture.astype(int))[..., 0] if channels == 3 else \
        np.abs(decoded.astype(int) - picture.astype(int))
    assert 0 < error.mean() < 25 and len(data) < picture.size  # lossy, smaller, still the same picture
    settings = codec.settings()
    assert settings["bit_depth"] == 8 and settings["backend"] and settings["chroma"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("bpg", 52), r"--qp 52 is out of range for bpg \(0–51\)"),
        (("bpg", -1), r"--qp -1 is out of range for bpg"),
        (("webp", 101), r"--quality 101 is out of range for webp \(0–100\)"),
        (("png", 5), r"png is lossless and takes no --qp or --quality"),
        (("webp", None), r"webp needs --quality"),
        (("jpeg99", 3), r"unknown codec 'jpeg99'; did you mean jpegxl\? valid codecs: bpg, png, webp, avif, jpegxl, jpeg2000"),
        (("webp", 50, 16), r"webp codes 8-bit samples; --bits 16 is not supported"),
        (("bpg", 30, 16), r"bpg codes 8, 10, 12-bit samples; --bits 16 is not supported"),
    ],
)
def test_bad_codec_settings_fail_in_one_line(args: tuple, message: str) -> None:
    with pytest.raises(SplitbenchError, match=message):
        make_codec(*args)


def test_bpg_options_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no bpgenc, wherever libbpg is installed
    with pytest.raises(SplitbenchError, match="unknown chroma format '422'; valid: 420, 444"):
        make_codec("bpg", 30, 8, 3, chroma="422")
    with pytest.raises(SplitbenchError, match="--bpg-backend bpgenc needs bpgenc and bpgdec on PATH"):
        make_codec("bpg", 30, 8, 1, backend="bpgenc")


def test_a_spec_rebuilds_the_same_codec_in_a_worker() -> None:
    spec = CodecSpec("bpg", 35, 10, 1, (("chroma", "444"), ("backend", "pyav")))
    codec = spec.build()
    assert (codec.param, codec.bits, codec.channels, codec.chroma) == (35, 10, 1, "444")
    assert codec.settings()["chroma"] == "4:0:0"  # one channel is coded 4:0:0 whatever --chroma says
