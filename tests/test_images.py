"""The one image decoder (issue 29): real files of every awkward kind against torchvision's own decoder."""

from __future__ import annotations

import io
import json
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, run_in_process
from splitbench.data import load_rgb_image, open_dataset
from splitbench.data.images import MAX_PIXELS
from splitbench.errors import SplitbenchError

PNG_COLOUR_TYPES = {"grey": 0, "rgb": 2, "grey_alpha": 4, "rgba": 6}


def write_png(path: Path, pixels: np.ndarray, colour: str, depth: int = 16) -> Path:
    """A PNG written byte by byte (PIL cannot write 16-bit colour): signature, IHDR, one IDAT, IEND."""
    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2" if depth == 16 else "u1").reshape(height, -1)
    body = b"".join(b"\0" + row.tobytes() for row in rows)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, depth, PNG_COLOUR_TYPES[colour], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(body))
                     + _chunk(b"IEND", b""))
    return path


def write_blank_png(path: Path, width: int, height: int) -> Path:
    """A real 1-bit PNG of any size, compressed as it streams (a 20000×20000 one is about 50 kB)."""
    compressor, parts, row = zlib.compressobj(9), [], b"\0" * (1 + (width + 7) // 8)
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts))
                     + _chunk(b"IEND", b""))
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real file of each kind an audit or a camera produces."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    files = {
        "grey16.png": write_png(folder / "grey16.png", rng.integers(0, 65536, (9, 11)), "grey"),
        "rgb16.png": write_png(folder / "rgb16.png", rng.integers(0, 65536, (9, 11, 3)), "rgb"),
        "rgba16.png": write_png(folder / "rgba16.png", rng.integers(0, 65536, (9, 11, 4)), "rgba"),
        "grey_alpha16.png": write_png(folder / "grey_alpha16.png", rng.integers(0, 65536, (9, 11, 2)), "grey_alpha"),
    }
    Image.fromarray(rng.integers(0, 256, (9, 11, 4), dtype=np.uint8), "RGBA").save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 256, (9, 11, 2), dtype=np.uint8), "LA").save(folder / "grey_alpha.png")
    palette = Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).quantize(16)
    palette.save(folder / "palette.png")
    palette.save(folder / "palette_transparent.png", transparency=3)
    Image.fromarray(rng.integers(0, 2, (9, 11), dtype=np.uint8) * 255).convert("1").save(folder / "bilevel.png")
    # blocks of 8×8 keep JPEG's loss small; 64×48, so that a quarter turn shows in the size
    photo = Image.fromarray(np.kron(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), np.ones((8, 8, 1), np.uint8)))
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        photo.save(folder / f"exif{orientation}.jpg", exif=exif, quality=95)
    photo.convert("L").save(folder / "grey.jpg")
    photo.convert("CMYK").save(folder / "cmyk.jpg")
    photo.save(folder / "progressive.jpg", progressive=True)
    return {path.name: path for path in sorted(folder.iterdir())} | files


def torchvision_rgb(path: Path) -> np.ndarray:
    """torchvision's reader in RGB mode with the EXIF orientation applied, as 8-bit H×W×3."""
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2.functional import to_dtype

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torchvision 0.29 points to TorchCodec
        decoded = decode_image(str(path), mode=ImageReadMode.RGB, apply_exif_orientation=True)
    return to_dtype(decoded, torch.uint8, scale=True).permute(1, 2, 0).numpy()


KINDS = ["grey16.png", "rgb16.png", "rgba16.png", "grey_alpha16.png", "rgba.png", "grey_alpha.png", "palette.png",
         "palette_transparent.png", "bilevel.png", *(f"exif{o}.jpg" for o in range(1, 9)), "grey.jpg", "cmyk.jpg",
         "progressive.jpg"]


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_of_image_decodes_as_torchvision_decodes_it(images: dict[str, Path], name: str) -> None:
    ours = load_rgb_image(images[name])
    assert ours.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(ours), torchvision_rgb(images[name]))


def test_a_16_bit_png_keeps_its_high_byte_instead_of_turning_white(images: dict[str, Path]) -> None:
    with Image.open(images["grey16.png"]) as opened:
        grey = np.asarray(opened).astype(np.int64)
        assert opened.mode == "I;16" and (np.asarray(opened.convert("RGB")) == 255).mean() > 0.95  # the audit's white
    decoded = np.asarray(load_rgb_image(images["grey16.png"]))
    assert np.array_equal(decoded[..., 0], grey >> 8) and decoded.std() > 50


def test_a_photo_taken_sideways_is_turned_upright(images: dict[str, Path]) -> None:
    upright = np.asarray(load_rgb_image(images["exif1.jpg"]))
    assert upright.shape == (48, 64, 3)
    turned = np.asarray(load_rgb_image(images["exif6.jpg"]))  # 6: the camera was turned a quarter clockwise
    assert turned.shape == (64, 48, 3)
    assert np.abs(turned.astype(int) - np.rot90(upright, k=-1).astype(int)).max() <= 8  # the JPEG's loss only


@pytest.mark.parametrize("side", [20000, 10000])  # 400 megapixels: PIL's error; 100: only PIL's warning
def test_a_decompression_bomb_is_refused_in_one_line(tmp_path: Path, side: int) -> None:
    bomb = write_blank_png(tmp_path / "bomb.png", side, side)
    assert bomb.stat().st_size < 200_000
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning gets out either
        with pytest.raises(SplitbenchError, match=rf"^image too large: {bomb} \({side * side // 10**6:,} megapixels\); "
                                                  r"the limit is 89 megapixels \(refused as a possible decompression bomb\)$"):
            load_rgb_image(bomb)


def test_the_pixel_limit_holds_when_pil_s_own_is_lifted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = write_blank_png(tmp_path / "bomb.png", 10000, 9000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # as a library that handles huge scans does
    with pytest.raises(SplitbenchError, match=r"image too large: .*bomb.png \(90 megapixels, 10000x9000\)"):
        load_rgb_image(bomb)
    assert 10000 * 9000 > MAX_PIXELS


def test_a_bomb_in_a_data_set_ends_eval_in_one_line(tmp_path: Path) -> None:
    write_blank_png(tmp_path / "bomb.png", 20000, 20000)
    Image.new("RGB", (32, 32), "red").save(tmp_path / "fine.png")
    (tmp_path / "set.csv").write_text("path,label\nfine.png,0\nbomb.png,1\n")
    done = run_in_process("eval", f"{REPO}/examples/tiny_net.py:build", "--weights", "none", "--dataset",
                          f"csv:{tmp_path / 'set.csv'}", "--loader-workers", "1", "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: image too large: {tmp_path / 'bomb.png'} (400 megapixels)")
    assert not (tmp_path / "out").exists()


def test_streams_decode_too_and_a_check_sees_the_header_first(images: dict[str, Path]) -> None:
    payload = images["exif6.jpg"].read_bytes()
    seen = []
    picture = load_rgb_image(io.BytesIO(payload), check=lambda image: seen.append((image.format, image.size)))
    assert seen == [("JPEG", (64, 48))] and picture.size == (48, 64)  # the header's size; the picture upright

    class NotThisOne(ValueError):  # the server's ProtocolError is a ValueError: it must pass unchanged
        pass

    def refuse(image: Image.Image) -> None:
        raise NotThisOne(f"the image must be a 224x224 JPEG, got {image.format}")

    with pytest.raises(NotThisOne, match="got JPEG"):
        load_rgb_image(io.BytesIO(payload), check=refuse)
    with pytest.raises(SplitbenchError, match=r"^corrupt image: image data \(cannot identify image file\)$"):
        load_rgb_image(io.BytesIO(b"GIF89a but not really"))
    with pytest.raises(SplitbenchError, match=r"^corrupt image: image data "):
        load_rgb_image(io.BytesIO(payload[:300]))


def test_data_sets_decode_through_it(images: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "set.csv").write_text("path,label\n" + "".join(f"{images[n]},0\n" for n in ("grey16.png", "exif6.jpg")))
    dataset = open_dataset(f"csv:{tmp_path / 'set.csv'}")
    for index, name in enumerate(("grey16.png", "exif6.jpg")):
        np.testing.assert_array_equal(np.asarray(dataset[index][0]), torchvision_rgb(images[name]))


def test_the_eval_sidecar_of_decoded_pictures_is_written(images: dict[str, Path], tmp_path: Path) -> None:
    """A palette, a 16-bit and an RGBA PNG and a rotated JPEG go through eval like any image."""
    names = ("palette_transparent.png", "grey16.png", "rgba16.png", "exif6.jpg")
    (tmp_path / "set.csv").write_text("path,label\n" + "".join(f"{images[n]},{i}\n" for i, n in enumerate(names)))
    done = run_in_process("eval", f"{REPO}/examples/tiny_net.py:build", "--weights", "none", "--dataset",
                          f"csv:{tmp_path / 'set.csv'}", "--loader-workers", "0", "--out", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    sidecar = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert sidecar["data"]["images"] == 4 and sidecar["warnings"] == []


def test_the_server_decodes_input_pictures_through_it_and_refuses_bombs(tmp_path: Path) -> None:
    from splitbench.link.endpoints import Receiver, SplitSetup
    from splitbench.link.protocol import ProtocolError
    from splitbench.zoo import load_model

    receiver = Receiver(load_model("mobilenet_v2"), SplitSetup("input", "jpeg"))

    def encoded(size: tuple[int, int], kind: str = "JPEG") -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", size, "red").save(buffer, kind)
        return buffer.getvalue()

    assert receiver._picture(encoded((224, 224))).size == (224, 224)
    refusals = {
        encoded((100, 100)): "the image must be a 224x224 JPEG, got JPEG 100x100",
        encoded((224, 224), "PNG"): "the image must be a 224x224 JPEG, got PNG 224x224",
        b"junk": "cannot decode the image: corrupt image: image data (cannot identify image file)",
        write_blank_png(tmp_path / "bomb.png", 20000, 20000).read_bytes():
            "cannot decode the image: image too large: image data (400 megapixels); the limit is 89 megapixels",
    }
    for payload, message in refusals.items():
        with pytest.raises(ProtocolError, match=f"^{re.escape(message)}"):
            receiver._picture(payload)
