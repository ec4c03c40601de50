"""Image codecs for split features: one interface, a registry by name, real libraries behind it.

``bpg`` (libx265 through PyAV, genuine .bpg files), ``png``, ``webp``, ``avif``, ``jpegxl`` and
``jpeg2000`` (imagecodecs). Nothing here imports torch, so that encoding worker processes start
quickly; the feature pipeline lives in :mod:`splitbench.codecs.pipeline`.
"""

from splitbench.codecs import bpg, imagecodecs_backends  # noqa: F401  (registration, in listing order)
from splitbench.codecs.base import Codec, CodecSpec, codec_class, codec_names, make_codec

__all__ = ["Codec", "CodecSpec", "codec_class", "codec_names", "make_codec"]
