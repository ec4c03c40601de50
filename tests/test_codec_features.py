"""Min-max quantisation (seed 003 eq. 7–8), tiling (Table 2) and the two layouts."""

from __future__ import annotations

import numpy as np
import pytest

from splitbench.codecs.features import (
    Quantized,
    dequantize,
    from_picture,
    quantize,
    tile,
    tile_grid,
    to_picture,
    untile,
)
from splitbench.errors import SplitbenchError


@pytest.mark.parametrize(
    "shape, picture",
    [
        ((512, 14, 14), (224, 448)),  # VGG16 pool4, seed 003 Table 2
        ((32, 28, 28), (112, 224)),  # MobileNetV2 bottleneck6, Table 2
        ((24, 56, 56), (224, 336)),  # 4 x 6 tiles
        ((96, 7, 9), (56, 108)),  # 8 x 12 tiles of non-square planes
        ((7, 5, 3), (5, 21)),  # a prime channel count: one row
        ((1, 4, 4), (4, 4)),
    ],
)
def test_tiling_round_trip_is_exact(shape: tuple[int, int, int], picture: tuple[int, int]) -> None:
    tensor = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    plane = tile(tensor)
    assert plane.shape == picture
    assert np.array_equal(untile(plane, shape), tensor)
    rows, cols = tile_grid(shape[0])
    channel = min(shape[0] - 1, cols + 1)  # row 1 (where there is one), column 1
    r, c = divmod(channel, cols)
    assert np.array_equal(plane[r * shape[1] : (r + 1) * shape[1], c * shape[2] : (c + 1) * shape[2]], tensor[channel])


def test_tile_grid_is_the_most_square_grid_and_the_seeds_table_2() -> None:
    assert [tile_grid(c) for c in (1, 2, 8, 32, 64, 160, 512, 1280, 7)] == [
        (1, 1), (1, 2), (2, 4), (4, 8), (8, 8), (10, 16), (16, 32), (32, 40), (1, 7)]


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_quantisation_error_is_at_most_half_a_step(bits: int) -> None:
    rng = np.random.default_rng(bits)
    features = np.maximum(rng.normal(1.0, 3.0, size=(32, 28, 28)), 0).astype(np.float32)  # ReLU-like
    quantized = quantize(features, bits)
    assert quantized.values.dtype == (np.uint8 if bits == 8 else np.uint16)
    assert quantized.values.min() == 0 and quantized.values.max() == (1 << bits) - 1
    assert quantized.minimum == features.min() and quantized.maximum == features.max()
    step = (float(features.max()) - float(features.min())) / ((1 << bits) - 1)
    error = np.abs(dequantize(quantized).astype(np.float64) - features.astype(np.float64))
    assert error.max() <= step / 2 + 1e-6 * float(features.max())  # float32 output rounding


def test_quantisation_matches_eq_7_and_8_by_hand() -> None:
    features = np.array([-1.0, 0.0, 0.5, 3.0], dtype=np.float32)
    quantized = quantize(features, 8)
    # (V - min) / (max - min) * 255 = 0, 63.75, 95.625, 255 -> round half up
    assert quantized.values.tolist() == [0, 64, 96, 255]
    assert dequantize(quantized).tolist() == pytest.approx([-1.0, -1 + 64 * 4 / 255, -1 + 96 * 4 / 255, 3.0])


def test_a_constant_tensor_survives_quantisation() -> None:
    features = np.full((2, 3, 3), 0.25, dtype=np.float32)
    quantized = quantize(features, 8)
    assert not quantized.values.any()
    assert np.array_equal(dequantize(quantized), features)
    assert np.array_equal(dequantize(Quantized(quantized.values, np.float32(0.25), np.float32(0.25), 8)), features)


def test_unsupported_bit_counts_fail_in_one_line() -> None:
    with pytest.raises(SplitbenchError, match=r"--bits 9 is not supported; valid: 8, 10, 12, 16"):
        quantize(np.zeros(3, dtype=np.float32), 9)


def test_layouts() -> None:
    plane = np.arange(12, dtype=np.uint8).reshape(3, 4)
    paper = to_picture(plane, "paper")
    assert paper.shape == (3, 4, 3) and np.array_equal(paper[..., 0], plane) and not paper[..., 1:].any()
    assert np.array_equal(from_picture(paper, "paper"), plane)
    assert to_picture(plane, "gray") is plane and from_picture(plane, "gray") is plane
    with pytest.raises(SplitbenchError, match="unknown layout 'rgb'; valid layouts: paper, gray"):
        to_picture(plane, "rgb")


def test_seed_preprocessing_resizes_the_whole_image_to_a_square() -> None:
    from PIL import Image

    from splitbench.data import Preprocessing

    preprocessing = Preprocessing(crop=224, resize=256, square=True)
    seen = preprocessing.geometry()(Image.new("RGB", (300, 200), (10, 20, 30)))
    assert seen.size == (224, 224)  # no crop: the aspect ratio is given up, as seed 003 eq. 5-6 do
    assert preprocessing.transform()(Image.new("RGB", (300, 200))).shape == (3, 224, 224)
    assert preprocessing.describe()["resize_to_square"] == 224 and "center_crop" not in preprocessing.describe()
