"""The one image decoder: a file (or a stream) → the 8-bit RGB picture torchvision would read.

Every data set, and the server's input pictures, decode here, so that a 16-bit PNG, a palette
image or a photo taken sideways means the same picture everywhere. The result equals
``torchvision.io.decode_image(path, ImageReadMode.RGB, apply_exif_orientation=True)``
converted to uint8 (``tests/test_images.py`` compares them on real files):

* EXIF orientation is applied (``ImageOps.exif_transpose``): cameras store the sensor's rows
  and a tag saying how to turn them; ignoring the tag feeds the model a rotated picture.
* 16-bit greyscale (PIL mode ``I;16``) keeps its high byte, as torchvision's ``to_dtype``
  does; PIL's own ``convert("RGB")`` clips it, so nearly every pixel came out white.
  16-bit colour PNGs already open as 8-bit RGB(A) in PIL, high byte too.
* Palette images take their palette's colours; alpha is dropped, not composited
  (libpng's strip-alpha, which ``ImageReadMode.RGB`` uses).
* More than :data:`MAX_PIXELS` pixels is refused before decoding: a small file can claim
  20000×20000 pixels and ask for gigabytes (a decompression bomb).
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings
from collections.abc import Callable, Iterator
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from splitbench.errors import SplitbenchError

# PIL's own default (a quarter of 1 GiB of 24-bit pixels, about 89 megapixels), held here so
# that a library that lifts PIL's global limit does not lift ours.
MAX_PIXELS = 89_478_485
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # "I": how older Pillows open a 16-bit PNG

ImageSource = str | os.PathLike[str] | BinaryIO


def load_rgb_image(source: ImageSource, *, check: Callable[[Image.Image], None] | None = None) -> Image.Image:
    """Decode ``source`` (a path or a binary stream) to an upright 8-bit RGB image.

    ``check`` sees the opened image before its pixels are decoded (format and size are in the
    header) and may raise to refuse it; its exception reaches the caller unchanged. A missing,
    undecodable or oversized image raises SplitbenchError naming the file.
    """
    name = _name(source)
    with _opened(source, name) as image:
        if check is not None:
            check(image)
        try:
            return _to_rgb(_upright(image))
        except Exception as error:
            # Only PIL runs here: truncated data is an OSError, a broken header a SyntaxError or
            # ValueError, a fuzzed one a struct.error or IndexError. Whatever it is, the file is at fault.
            raise SplitbenchError(_corrupt(name, error)) from None


@contextlib.contextmanager
def _opened(source: ImageSource, name: str) -> Iterator[Image.Image]:
    """``Image.open`` (the header only) with its failures and the pixel limit as one-line errors."""
    try:
        with warnings.catch_warnings():
            # PIL only warns between its limit and twice it; a bomb is refused either way.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(source)
    except FileNotFoundError:
        raise SplitbenchError(f"missing image: {name}") from None
    except UnidentifiedImageError:
        raise SplitbenchError(f"corrupt image: {name} (cannot identify image file)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        claimed = re.search(r"\((\d+) pixels\)", str(error))  # PIL's message holds the count, not the size
        raise SplitbenchError(_too_large(name, int(claimed[1]) if claimed else None)) from None
    except Exception as error:  # as in decoding: whatever PIL raises on a header, the file is at fault
        raise SplitbenchError(_corrupt(name, error)) from None
    with image:
        if image.width * image.height > MAX_PIXELS:
            raise SplitbenchError(_too_large(name, image.width * image.height, image.size))
        yield image


def _corrupt(name: str, error: Exception) -> str:
    if isinstance(error, OSError) and error.errno is not None:  # the system's (permissions, I/O), not PIL's
        return f"cannot read image {name} ({error.strerror})"
    return f"corrupt image: {name} ({str(error).strip() or type(error).__name__})"


def _too_large(name: str, pixels: int | None, size: tuple[int, int] | None = None) -> str:
    claimed = f" ({pixels / 1e6:,.0f} megapixels{f', {size[0]}x{size[1]}' if size else ''})" if pixels else ""
    return (f"image too large: {name}{claimed}; the limit is {MAX_PIXELS / 1e6:.0f} megapixels "
            f"(refused as a possible decompression bomb)")


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF orientation tag says (most images have none: returned as is)."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB; 16-bit greyscale keeps its high byte instead of clipping to white."""
    if image.mode in _SIXTEEN_BIT:
        high = (np.clip(np.asarray(image), 0, 65535) >> 8).astype(np.uint8)
        image = Image.fromarray(high, "L")
    return image.convert("RGB")


def _name(source: ImageSource) -> str:
    """How errors name the image: its path, or a stream's name where it has one."""
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    return str(getattr(source, "name", "image data"))
