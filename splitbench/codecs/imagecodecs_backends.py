"""png, webp, avif, jpegxl and jpeg2000 through imagecodecs (libpng, libwebp, libavif, libjxl, OpenJPEG).

Each class maps the one parameter to the library's own quality knob and records the
settings that decide the result. A gray picture goes to each library as the plane itself
where the format codes one channel (PNG, JPEG XL, JPEG 2000), as R = G = B for WebP (lossy
WebP is always YUV 4:2:0) and for AVIF (whose monochrome 4:0:0 mode libavif derives from RGB).
Each reads its header's declared size with :mod:`splitbench.codecs.headers`.
"""

from __future__ import annotations

from typing import Any

import imagecodecs
import numpy as np

from splitbench.codecs import headers
from splitbench.codecs.base import Codec, DeclaredSize, register


def _library_version(name: str) -> str:
    """``libwebp-1.6.0`` from imagecodecs' version string, for the settings of a result row."""
    for part in imagecodecs.version().split(", "):
        if part.startswith(name + "-"):
            return part
    return name


def _rgb(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)


def _like(decoded: np.ndarray, channels: int, dtype: type) -> np.ndarray:
    """Decoded samples in the encoder's shape: a gray picture comes back as its first channel."""
    if channels == 1 and decoded.ndim == 3:
        decoded = decoded[..., 0]
    return np.ascontiguousarray(decoded, dtype=dtype)


@register
class PngCodec(Codec):
    name = "png"
    extension = "png"
    bit_depths = (8, 16)
    backend = "imagecodecs"
    level = 6  # zlib's default compression level

    def encode(self, image: np.ndarray) -> bytes:
        return bytes(imagecodecs.png_encode(image, level=self.level))

    def decode(self, data: bytes) -> np.ndarray:
        return _like(imagecodecs.png_decode(data), self.channels, self.sample_dtype)

    def declared_size(self, data: bytes) -> DeclaredSize:
        return headers.png_size(data)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "library": _library_version("libpng"),
                "chroma": "gray" if self.gray else "RGB", "zlib_level": self.level}


@register
class WebpCodec(Codec):
    name = "webp"
    extension = "webp"
    parameter = "quality"
    param_range = (0, 100)
    param_meaning = "libwebp quality factor (lossy)"
    default_params = (10, 20, 30, 40, 50, 60, 70, 80, 90)  # seed 003 Table 7
    backend = "imagecodecs"
    method = 4  # libwebp's default speed/quality trade-off (cwebp -m 4)

    def encode(self, image: np.ndarray) -> bytes:
        return bytes(imagecodecs.webp_encode(_rgb(image), level=self.param, lossless=False, method=self.method))

    def decode(self, data: bytes) -> np.ndarray:
        return _like(imagecodecs.webp_decode(data), self.channels, np.uint8)

    def declared_size(self, data: bytes) -> DeclaredSize:
        return headers.webp_size(data)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "library": _library_version("libwebp"),
                "chroma": "4:2:0" + (" (R=G=B)" if self.gray else ""), "method": self.method}


@register
class AvifCodec(Codec):
    name = "avif"
    extension = "avif"
    parameter = "quality"
    param_range = (0, 100)
    param_meaning = "libavif quality (100 = lossless)"
    bit_depths = (8, 10, 12)
    backend = "imagecodecs"
    # avifenc's default speed; libavif's own default through imagecodecs is ~25x slower here.
    speed = 6

    def encode(self, image: np.ndarray) -> bytes:
        formats = imagecodecs.AVIF.PIXEL_FORMAT
        pixel_format = formats.YUV400 if self.gray else formats.YUV420
        return bytes(imagecodecs.avif_encode(_rgb(image), level=self.param, bitspersample=self.bits,
                                             pixelformat=pixel_format, speed=self.speed, numthreads=1,
                                             codec=imagecodecs.AVIF.CODEC_CHOICE.AOM))

    def decode(self, data: bytes) -> np.ndarray:
        return _like(imagecodecs.avif_decode(data), self.channels, self.sample_dtype)

    def declared_size(self, data: bytes) -> DeclaredSize:
        return headers.avif_size(data)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "library": _library_version("libavif"),
                "chroma": "4:0:0" if self.gray else "4:2:0", "speed": self.speed, "av1_encoder": "aom"}


@register
class JpegxlCodec(Codec):
    name = "jpegxl"
    extension = "jxl"
    parameter = "quality"
    param_range = (0, 100)
    param_meaning = "libjxl quality (mapped to a Butteraugli distance)"
    bit_depths = (8, 16)
    backend = "imagecodecs"

    def encode(self, image: np.ndarray) -> bytes:
        return bytes(imagecodecs.jpegxl_encode(image, level=self.param, bitspersample=self.bits))

    def decode(self, data: bytes) -> np.ndarray:
        return _like(imagecodecs.jpegxl_decode(data), self.channels, self.sample_dtype)

    def declared_size(self, data: bytes) -> DeclaredSize:
        return headers.jpegxl_size(data)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "library": _library_version("libjxl"),
                "chroma": "gray" if self.gray else "RGB", "effort": "libjxl default (7)"}


@register
class Jpeg2000Codec(Codec):
    name = "jpeg2000"
    extension = "j2k"
    parameter = "quality"
    param_range = (1, 100)
    param_meaning = "OpenJPEG fixed-quality mode: target PSNR in dB"
    bit_depths = (8, 16)
    backend = "imagecodecs"

    def encode(self, image: np.ndarray) -> bytes:
        # the bare codestream, without the JP2 box container: BPG's header is minimal as well
        return bytes(imagecodecs.jpeg2k_encode(image, level=self.param, bitspersample=self.bits,
                                               codecformat=imagecodecs.JPEG2K.CODEC.J2K))

    def decode(self, data: bytes) -> np.ndarray:
        return _like(imagecodecs.jpeg2k_decode(data), self.channels, self.sample_dtype)

    def declared_size(self, data: bytes) -> DeclaredSize:
        return headers.jpeg2000_size(data)

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "library": _library_version("openjpeg"),
                "chroma": "gray" if self.gray else "RGB (ICT)", "format": "J2K codestream"}
