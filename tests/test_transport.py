"""Every way a cut's tensor crosses the link, behind one interface (splitbench.transport).

Round trips are checked byte for byte or to the codec's own error bound; hostile payloads get
one line each; and a learned codec trained by ``rd`` crosses a real served link with the bytes
and top-1 that ``rd`` measured on the same images.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import SHARED_DATA, few_cifar_images, needs_shared_data, needs_shared_weights, run_in_process, shared_weights
from splitbench.compression.export import CodecRecipe, export_codec, load_codec
from splitbench.compression.models import FeatureCodec
from splitbench.compression.pipeline import update_entropy_tables
from splitbench.errors import SplitbenchError
from splitbench.transport import (Float32, Learned, MinMax8, Pictured, UserCodec, is_user_codec, learned_file,
                                  takes_parameter, tensor_codec)

SHAPE = (8, 6, 10)
CIFAR_WEIGHTS = "cifar-resnet20-12fca82f.th"


def features(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2, SHAPE).astype(np.float32)


def test_float32_travels_byte_for_byte_and_refuses_any_other_size() -> None:
    codec, tensor = tensor_codec("none", SHAPE), features()
    payload = codec.encode(tensor)
    assert isinstance(codec, Float32) and len(payload) == codec.expected_bytes == 8 * 6 * 10 * 4
    assert codec.decode(payload).tobytes() == tensor.tobytes()
    with pytest.raises(SplitbenchError, match="^none payload must be 1920 bytes, got 1919$"):
        codec.decode(payload[:-1])
    with pytest.raises(SplitbenchError, match="not finite"):
        codec.decode(np.full(SHAPE, np.nan, np.float32).tobytes())


def test_minmax8_is_within_half_a_step_and_one_byte_per_element() -> None:
    codec, tensor = tensor_codec("minmax8", SHAPE), features()
    payload = codec.encode(tensor)
    assert isinstance(codec, MinMax8) and len(payload) == 480 + 8
    step = (tensor.max() - tensor.min()) / 255
    assert np.abs(codec.decode(payload) - tensor).max() <= step / 2 + 1e-6


def test_a_lossless_image_codec_returns_what_minmax_quantisation_keeps() -> None:
    codec, tensor = tensor_codec("png", SHAPE, layout="gray"), features()
    assert isinstance(codec, Pictured) and codec.picture_size == (12, 40)  # 8 planes as 2×4 tiles of 6×10
    minmax = tensor_codec("minmax8", SHAPE)
    assert codec.decode(codec.encode(tensor)).tobytes() == minmax.decode(minmax.encode(tensor)).tobytes()
    with pytest.raises(SplitbenchError, match="^cannot decode the png payload: "):
        codec.decode(codec.encode(tensor)[:20])


def test_the_codec_strings_are_told_apart() -> None:
    assert [takes_parameter(text) for text in ("bpg", "bpg:35", "webp:80/90", "none", "learned:x.safetensors",
                                               "my/codecs.py:build", "pkg.codecs:build")] == [
        True, True, True, False, False, False, False]
    assert is_user_codec("codecs.py:half") and not is_user_codec("bpg:35") and not is_user_codec("learned:a.py:b")


HALF = '''
import numpy as np

class Half:
    """float16 on the wire: half the bytes of float32."""
    def encode(self, tensor):
        return tensor.astype("<f2").tobytes()
    def decode(self, data, shape):
        return np.frombuffer(data, dtype="<f2").reshape(shape).astype(np.float32)

def half():
    return Half()

class Text:
    def encode(self, tensor):
        return "not bytes"
    def decode(self, data, shape):
        return np.zeros((1,), np.float32)

def text():
    return Text()

def nothing():
    return 42
'''


def test_a_user_codec_file_codes_tensors_and_its_mistakes_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "codecs.py"
    path.write_text(HALF)
    codec, tensor = tensor_codec(f"{path}:half", SHAPE), features()
    payload = codec.encode(tensor)
    assert isinstance(codec, UserCodec) and len(payload) == 480 * 2
    np.testing.assert_array_equal(codec.decode(payload), tensor.astype(np.float16).astype(np.float32))
    wrong = tensor_codec(f"{path}:text", SHAPE)
    with pytest.raises(SplitbenchError, match=r"^codec .*:text: encode returned str, not bytes$"):
        wrong.encode(tensor)
    with pytest.raises(SplitbenchError, match=r"^codec .*:text's decode gave a tensor of shape \[1\]; expected \[8, 6, 10\]$"):
        wrong.decode(b"")
    with pytest.raises(SplitbenchError, match=r"^codec .*:nothing returned int, which has no encode and decode methods$"):
        tensor_codec(f"{path}:nothing", SHAPE)
    with pytest.raises(SplitbenchError, match=r"has no function 'absent'$"):
        tensor_codec(f"{path}:absent", SHAPE)
    with pytest.raises(SplitbenchError, match=r"^codec file not found: "):
        tensor_codec(f"{tmp_path / 'none.py'}:half", SHAPE)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FeatureCodec]:
    """An (untrained, seeded) factorised codec with its range coder's tables, as rd exports one."""
    torch.manual_seed(0)
    codec = FeatureCodec(SHAPE[0], 8, "none", "factorized").eval()
    update_entropy_tables(codec)
    recipe = CodecRecipe("cifar_resnet20", "layer9", SHAPE, 8, "none", "factorized", 4.0, 2)
    return export_codec(codec, recipe, tmp_path_factory.mktemp("learned") / "codec.safetensors"), codec


def test_a_learned_codec_sends_its_range_coded_streams_and_decodes_them_as_compressai_does(exported) -> None:
    path, original = exported
    codec, tensor = tensor_codec(f"learned:{path}", SHAPE), features()
    assert isinstance(codec, Learned) and codec.recipe.lam == 4.0 and codec.streams == 1
    payload = codec.encode(tensor)
    with torch.inference_mode():
        reference = original.compress(torch.from_numpy(tensor)[None])
        x_hat = original.decompress(reference["strings"], reference["shape"])["x_hat"][0, :, :6, :10]
    assert payload[4:] == reference["strings"][0][0] and codec.stream_bytes(payload) == len(reference["strings"][0][0])
    np.testing.assert_array_equal(codec.decode(payload), x_hat.numpy())


@pytest.mark.parametrize("mangle, message", [
    (lambda p: p[:3], "ends inside a stream's length"),
    (lambda p: p[:-1], r"declares a \d+-byte stream; \d+ bytes are left"),
    (lambda p: p + b"x", "has 1 bytes after its streams"),
    (lambda p: b"\0\0\0\0" + p[4:], "declares a 0-byte stream"),
])
def test_a_learned_codec_refuses_malformed_payloads_in_one_line(exported, mangle, message: str) -> None:
    codec = tensor_codec(f"learned:{exported[0]}", SHAPE)
    with pytest.raises(SplitbenchError, match=message):
        codec.decode(mangle(codec.encode(features())))


def test_a_learned_codec_refuses_a_stream_longer_than_any_it_writes(exported) -> None:
    codec = tensor_codec(f"learned:{exported[0]}", SHAPE)
    longest = codec.max_stream_bytes  # 2 bytes a latent symbol (8 × 3 × 5) and 1,024
    assert longest == 2 * 8 * 3 * 5 + 1024
    with pytest.raises(SplitbenchError, match=f"declares a {longest + 1}-byte stream; a stream of this codec holds "
                                              f"at most {longest} bytes"):
        codec.decode((longest + 1).to_bytes(4, "little") + bytes(longest + 1))


def test_a_learned_codec_refuses_another_shape_and_files_that_are_not_one(exported, tmp_path: Path) -> None:
    path = exported[0]
    with pytest.raises(SplitbenchError, match=r"was trained for cifar_resnet20 at layer9 \(8x6x10\); the tensor here is 8x6x12$"):
        tensor_codec(f"learned:{path}", (8, 6, 12))
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(foreign))
    with pytest.raises(SplitbenchError, match="is not a learned codec that rd exported"):
        load_codec(foreign)
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(SplitbenchError, match=r"cannot read learned codec .*junk.safetensors: not a safetensors file"):
        load_codec(tmp_path / "junk.safetensors")
    with pytest.raises(SplitbenchError, match="is a folder; name a λ"):
        learned_file(f"learned:{tmp_path}")


@needs_shared_data
@needs_shared_weights
def test_a_learned_codec_from_rd_crosses_a_served_link_with_rd_s_bytes_and_top1(tmp_path: Path) -> None:
    images = few_cifar_images(tmp_path / "few")
    weights = str(shared_weights(CIFAR_WEIGHTS))
    data = ["--dataset", f"imagefolder:{images}", "--data", str(SHARED_DATA)]
    rd = run_in_process("rd", "cifar_resnet20", "--weights", weights, "--at", "layer3", "--variant", "none",
                        "--lambdas", "16", "--epochs", "3", "--warmup-epochs", "2", "--train-limit", "512",
                        "--channels", "32", *data, "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "rd"))
    assert rd.returncode == 0, rd.stderr
    trained = pd.read_csv(tmp_path / "rd" / "rd.csv").iloc[0]
    assert trained["test_images"] == 40 and trained["top1"] > 50  # a codec that works, not chance (10 %)
    link = run_in_process("link", "cifar_resnet20", "--weights", weights, "--at", "layer3",
                          "--codec", f"learned:{tmp_path / 'rd'}@16", "--preprocess", "model", "--shaper", "none",
                          "--bandwidth", "none", *data, "--limit", "40", "--out", str(tmp_path / "link"))
    assert link.returncode == 0, link.stderr
    per_image = pd.read_csv(tmp_path / "link" / "link_images.csv")
    assert len(per_image) == 40
    # the served decoder's predictions score rd's top-1, and the streams are rd's bytes (4 bytes of framing each)
    assert 100 * per_image["hit1"].mean() == pytest.approx(trained["top1"])
    assert (per_image["payload_bytes"] - 4).sum() * 8 == pytest.approx(trained["bpp_actual"] * 40 * 32 * 32)
    # codec's own sweep takes it too, beside the image codecs: rd's top-1, and rd's bytes plus 4 of framing
    swept = run_in_process("codec", "cifar_resnet20", "--weights", weights, "--at", "layer3", "--codec",
                           f"none,learned:{tmp_path / 'rd'}@16", "--preprocess", "model", *data, "--workers", "1",
                           "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "codec"))
    assert swept.returncode == 0, swept.stderr
    learned_row = pd.read_csv(tmp_path / "codec" / "codec.csv").set_index("codec").loc[f"learned:{tmp_path / 'rd'}@16"]
    assert learned_row["top1"] == pytest.approx(trained["top1"])
    assert learned_row["bpp"] == pytest.approx(per_image["payload_bytes"].mean() * 8 / (32 * 32), abs=1e-4)  # 4 decimals
    refused = run_in_process("codec", "cifar_resnet20", "--weights", "none", "--at", "layer3.1", "--codec",
                             f"learned:{tmp_path / 'rd'}@16", "--dry-run")
    assert refused.returncode == 2 and refused.stderr.strip().endswith("not at layer3.1"), refused.stderr
    # plan --search weighs the same codec among others: its calibration is the link's top-1 and bytes
    search = run_in_process("plan", "cifar_resnet20", "--weights", weights, "--search", "--at", "layer3",
                            "--codec", f"minmax8,learned:{tmp_path / 'rd'}@16", "--preprocess", "model", *data,
                            "--limit", "40", "--bandwidth", "1", "--max-drop", "100", "--cache", str(tmp_path / "cache"),
                            "--out", str(tmp_path / "search"))
    assert search.returncode == 0, search.stderr
    candidates = pd.read_csv(tmp_path / "search" / "candidates.csv").set_index("codec")
    assert list(candidates.index) == ["jpeg", "minmax8", f"learned:{tmp_path / 'rd'}@16", "none"]
    assert candidates.loc[f"learned:{tmp_path / 'rd'}@16", "top1"] == pytest.approx(trained["top1"])
    assert candidates.loc[f"learned:{tmp_path / 'rd'}@16", "payload_bytes"] == pytest.approx(
        per_image["payload_bytes"].mean(), abs=0.05)
    # a point cached before rd exported codecs gets its file from its epoch checkpoint: the same tensors
    exported = Path(trained["codec_file"])
    original = load_file(str(exported))
    exported.unlink()
    for point in (tmp_path / "cache").glob("rd/cifar_resnet20/*/none-alpha0-lambda16/point-epochs3.json"):
        stored = json.loads(point.read_text())
        del stored["row"]["codec_file"]
        point.write_text(json.dumps(stored))
    again = run_in_process("rd", "cifar_resnet20", "--weights", weights, "--at", "layer3", "--variant", "none",
                           "--lambdas", "16", "--epochs", "3", "--warmup-epochs", "2", "--train-limit", "512",
                           "--channels", "32", *data, "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "rd"))
    assert again.returncode == 0, again.stderr
    assert pd.read_csv(tmp_path / "rd" / "rd.csv").iloc[0]["codec_file"] == str(exported)
    rebuilt = load_file(str(exported))
    assert rebuilt.keys() == original.keys() and all(torch.equal(rebuilt[k], original[k]) for k in original)
    # another λ of the run, another cut, another model: one line each, before any work
    for codec, at, model, message in [
        ("@3", "layer3", "cifar_resnet20", "has no λ 3; its λ: 16"),
        ("@16", "layer2", "cifar_resnet20", "was trained for cifar_resnet20 at layer3 (64x8x8); the tensor here is 32x16x16"),
        ("@16", "layer3", "cifar_resnet56", "was trained for cifar_resnet20 at layer3, not for cifar_resnet56"),
        ("@16", "layer3.1", "cifar_resnet20", "was trained for cifar_resnet20 at layer3, not at layer3.1"),  # same shape
    ]:
        refused = run_in_process("link", model, "--weights", "none", "--at", at, "--codec",
                                 f"learned:{tmp_path / 'rd'}{codec}", "--shaper", "none", "--bandwidth", "none",
                                 "--dry-run")
        assert refused.returncode == 2 and refused.stderr.strip().endswith(message), refused.stderr


@needs_shared_data
def test_a_user_codec_file_crosses_a_served_link(tmp_path: Path) -> None:
    (tmp_path / "codecs.py").write_text(HALF)
    out = tmp_path / "link"
    done = run_in_process("link", "cifar_resnet20", "--weights", "none", "--at", "layer3",
                          "--codec", f"{tmp_path / 'codecs.py'}:half", "--shaper", "none", "--bandwidth", "none",
                          "--data", str(SHARED_DATA), "--limit", "4", "--out", str(out))
    assert done.returncode == 0, done.stderr
    per_image = pd.read_csv(out / "link_images.csv")
    assert (per_image["payload_bytes"] == 64 * 8 * 8 * 2).all()  # float16: two bytes per element
    # the same codec in codec's own sweep, beside float32: the same bytes, the same answers
    swept = run_in_process("codec", "cifar_resnet20", "--weights", "none", "--at", "layer3", "--codec",
                           f"none,{tmp_path / 'codecs.py'}:half", "--data", str(SHARED_DATA), "--limit", "4",
                           "--workers", "1", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "codec"))
    assert swept.returncode == 0, swept.stderr
    rows = pd.read_csv(tmp_path / "codec" / "codec.csv").set_index("codec")
    assert rows.loc[f"{tmp_path / 'codecs.py'}:half", "bpp"] == 64 * 8 * 8 * 2 * 8 / (32 * 32)
    assert rows.loc[f"{tmp_path / 'codecs.py'}:half", "top1"] == rows.loc["none", "top1"]


def test_a_learned_codec_file_given_as_weights_is_refused_in_one_line(exported) -> None:
    done = run_in_process("profile", "cifar_resnet20", "--weights", str(exported[0]))
    assert done.returncode == 2 and done.stderr == (f"error: --weights {exported[0]} is a learned feature codec that rd "
                                                    "exported: pass it as --codec learned:FILE\n")


FUZZ = """
import random, sys
from pathlib import Path
from splitbench.errors import SplitbenchError
from splitbench.transport import tensor_codec

codec = tensor_codec("learned:" + sys.argv[1], (64, 32, 32))
rng = random.Random(0)
refused = 0
for trial in range(300):
    size = rng.choice([1, 2, 5, 8, 64, 1000])
    stream = (b"\\xff" * size if trial % 3 == 0 else bytes(rng.getrandbits(8) for _ in range(size)))
    try:
        decoded = codec.decode(len(stream).to_bytes(4, "little") + stream)
        assert decoded.shape == (64, 32, 32)
    except SplitbenchError:
        refused += 1
print("decoded", 300 - refused, "refused", refused)
"""


def test_a_learned_decoder_survives_garbage_streams(tmp_path: Path) -> None:
    """CompressAI's range decoder reads past a stream's end; unpadded, a 5-byte stream killed the process."""
    import subprocess
    import sys

    torch.manual_seed(0)
    codec = FeatureCodec(64, 64, "none", "factorized").eval()  # a 64×16×16 latent, as big as the crash needed
    update_entropy_tables(codec)
    recipe = CodecRecipe("cifar_resnet20", "layer1", (64, 32, 32), 64, "none", "factorized", 1.0, 1)
    path = export_codec(codec, recipe, tmp_path / "codec.safetensors")
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ)
    done = subprocess.run([sys.executable, str(script), str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]  # a segfault is -11
    assert done.stdout.startswith("decoded ")
