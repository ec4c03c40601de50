"""``serve`` against hostile clients: real server processes and sockets on 127.0.0.1, real codecs.

What each test sends is what an audit sent (a 4 KB header nested 4000 deep, a picture that
declares 60000×60000 pixels) or what a generator makes of the wire format; after each, a good
client must still get the right answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import SHARED_DATA, needs_shared_data, run_in_process
from splitbench.codecs import codec_names, headers, hevc, make_codec
from splitbench.codecs.bitstream import BitWriter, read_ue7, write_ue7
from splitbench.codecs.bpg import parse_header
from splitbench.errors import SplitbenchError
from splitbench.link.client import LinkClient
from splitbench.link.endpoints import Receiver, Sender, SplitSetup
from splitbench.link.protocol import (MAX_HEADER_DEPTH, NonFiniteError, ProtocolError, encode_header, json_depth,
                                      read_header)
from splitbench.link.security import client_keys
from splitbench.link.server import SplitServer

PICTURE = (64, 128)  # cifar_resnet20's layer2 (32x16x16) tiled 4x8: the picture these servers expect
PARAMS = {"bpg": 35, "png": None, "webp": 50, "avif": 60, "jpegxl": 80, "jpeg2000": 40}
BPG_OPTIONS = (("chroma", "420"), ("backend", "pyav"))
HUGE = 60000


@functools.lru_cache(maxsize=1)
def _cifar():
    """cifar_resnet20 with random weights, this module's own (Sender and Receiver put it in eval mode)."""
    from splitbench.zoo import load_model

    return load_model("cifar_resnet20")


# -- forging headers ---------------------------------------------------------------------------------

def _picture(name: str, channels: int = 1, size: tuple[int, int] = PICTURE) -> bytes:
    codec = make_codec(name, PARAMS[name], 8, channels)
    shape = size if channels == 1 else (*size, 3)
    return codec.encode(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8))


class _LsbBits:
    """JPEG XL's LSB-first bits, to write headers by hand."""

    def __init__(self) -> None:
        self.value = self.size = 0

    def u(self, n: int, value: int) -> _LsbBits:
        self.value |= value << self.size
        self.size += n
        return self

    def to_bytes(self) -> bytes:
        return self.value.to_bytes(-(-self.size // 8) + 8, "little")


def _bpg_resized(data: bytes, width: int, height: int) -> bytes:
    _, offset = read_ue7(data, 6)
    _, offset = read_ue7(data, offset)
    return data[:6] + write_ue7(width) + write_ue7(height) + data[offset:]


def _forge_png(data: bytes) -> bytes:
    return data[:16] + struct.pack(">II", HUGE, HUGE) + data[24:]


def _forge_webp(data: bytes) -> bytes:
    assert data[12:16] == b"VP8 "
    return data[:26] + struct.pack("<HH", 16383, 16383) + data[30:]  # VP8's 14-bit maximum


def _forge_avif(data: bytes) -> bytes:
    at = data.index(b"ispe") + 8  # type, then the FullBox's version and flags
    return data[:at] + struct.pack(">II", HUGE, HUGE) + data[at + 8:]


def _forge_jpegxl(data: bytes) -> bytes:
    # SizeHeader: not small, height = 1 + u(30), aspect ratio 1:1; ImageMetadata all default
    return b"\xff\x0a" + _LsbBits().u(1, 0).u(2, 3).u(30, HUGE - 1).u(3, 1).u(1, 1).to_bytes() + data[10:]


def _forge_jpeg2000(data: bytes) -> bytes:
    # Xsiz, Ysiz, and one tile of that size (else the tile count is what gets refused)
    return data[:8] + struct.pack(">II", HUGE, HUGE) + data[16:24] + struct.pack(">II", HUGE, HUGE) + data[32:]


FORGE: dict[str, Callable[[bytes], bytes]] = {
    "bpg": lambda data: _bpg_resized(data, HUGE, HUGE), "png": _forge_png, "webp": _forge_webp,
    "avif": _forge_avif, "jpegxl": _forge_jpegxl, "jpeg2000": _forge_jpeg2000,
}


def _bpg_with_block_size(data: bytes, log2_min_cb_minus3: int) -> bytes:
    header = parse_header(data)
    length, offset = read_ue7(data, header.header_length)
    core = hevc.read_core(data[offset:offset + length])
    forged = hevc.write_core(dataclasses.replace(core, log2_min_luma_cb_minus3=log2_min_cb_minus3))
    return data[:header.header_length] + write_ue7(len(forged)) + forged + data[offset + length:]


def _avif_with_av1_size(data: bytes, width: int, height: int) -> bytes:
    """The AV1 sequence header in mdat rewritten in place to a reduced still-picture header of another size."""
    position = data.index(b"mdat") + 4
    while True:
        kind, extension = data[position] >> 3 & 15, data[position] >> 2 & 1
        start = position + 1 + extension
        length, start = headers._leb128(data, start)
        if kind == 1:
            break
        position = start + length
    bits = BitWriter()
    bits.u(3, 0), bits.u(1, 1), bits.u(1, 1), bits.u(5, 31)  # profile 0, still, reduced, level 31
    bits.u(4, 14), bits.u(4, 14), bits.u(15, width - 1), bits.u(15, height - 1)
    forged = bits.to_bytes()
    assert len(forged) <= length
    return data[:start] + forged + bytes(length - len(forged)) + data[start + length:]


def _jpeg2000_components(data: bytes, count: int) -> bytes:
    return data[:40] + struct.pack(">H", count) + bytes([7, 1, 1]) * count + data[42 + 3:]


def _jpegxl_extra_channels(count: int) -> bytes:
    # small SizeHeader: height 8 * (7 + 1) = 64, ratio 2:1 -> width 128; then ImageMetadata, not all default
    bits = _LsbBits().u(1, 1).u(5, 7).u(3, 7).u(1, 0).u(1, 0)  # all_default, extra_fields
    bits.u(1, 0).u(2, 0).u(1, 0)  # integer samples of 8 bits, modular_16bit_buffers
    bits.u(2, 3).u(12, count - 1)  # num_extra_channels = 1 + u(12)
    return b"\xff\x0a" + bits.to_bytes()


_ANIMATED_WEBP = (b"RIFF" + struct.pack("<I", 4 + 18) + b"WEBP" + b"VP8X" + struct.pack("<I", 10)
                  + bytes([0x02, 0, 0, 0]) + (127).to_bytes(3, "little") + (63).to_bytes(3, "little"))


# -- the codec layer ---------------------------------------------------------------------------------

def test_every_codec_has_a_forged_header_here() -> None:
    assert set(FORGE) == set(codec_names())  # a new codec needs its declared_size and a test of it


@pytest.mark.parametrize("name", sorted(PARAMS))
@pytest.mark.parametrize("channels", [1, 3])
def test_every_codec_reads_the_size_of_its_own_pictures(name: str, channels: int) -> None:
    codec = make_codec(name, PARAMS[name], 8, channels)
    data = _picture(name, channels)
    declared = codec.check_declared(data, *PICTURE)
    assert (declared.height, declared.width) == PICTURE == codec.decode(data).shape[:2]
    # PNG, JPEG 2000 and BPG code a gray plane as one channel; the other decoders return RGB
    assert declared.channels == (channels if name in ("png", "jpeg2000", "bpg") else 3)
    assert declared.sample_bytes == 1


@pytest.mark.parametrize("name", sorted(FORGE))
def test_a_picture_declaring_another_size_is_refused_before_decoding(name: str) -> None:
    codec = make_codec(name, PARAMS[name], 8, 1)
    size = "16383x16383" if name == "webp" else f"{HUGE}x{HUGE}"
    with pytest.raises(SplitbenchError, match=f"the {name} picture declares {size} pixels; expected 128x64"):
        codec.check_declared(FORGE[name](_picture(name)), *PICTURE)
    with pytest.raises(SplitbenchError, match="declares 128x64 pixels; expected 64x128"):
        codec.check_declared(_picture(name), 128, 64)  # the right area, turned: still not the picture


@pytest.mark.parametrize(("name", "forge", "message"), [
    ("bpg", lambda d: _bpg_with_block_size(d, 2 ** 31), r"coding tree blocks of 2\^\d{10} pixels"),
    ("bpg", lambda d: d + b"\x00\x00\x01" + bytes([hevc.SPS_NUT << 1, 1]) + bytes(12), "holds a VPS or SPS"),
    ("avif", lambda d: _avif_with_av1_size(d, 30000, 30000), "AV1 frames \\(\\[\\(30000, 30000\\)\\]\\) do not fit"),
    ("webp", lambda d: _ANIMATED_WEBP, "animated WebP"),
    ("jpeg2000", lambda d: _jpeg2000_components(d, 5000), "5000 channels of 1-byte samples"),
    ("jpegxl", lambda d: _jpegxl_extra_channels(4000), "4003 channels"),
])
def test_headers_that_would_take_more_memory_than_the_picture_are_refused(name: str, forge, message: str) -> None:
    codec = make_codec(name, PARAMS[name], 8, 1)
    with pytest.raises(SplitbenchError, match=message):
        codec.check_declared(forge(_picture(name)), *PICTURE)


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_damaged_headers_fail_as_one_error_never_a_crash(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(PARAMS)))
    original = _SAMPLES.setdefault(name, _picture(name))
    cut = data.draw(st.integers(0, min(len(original), 400)))
    noise = data.draw(st.binary(max_size=64))
    at = data.draw(st.integers(0, cut))
    damaged = original[:at] + noise + original[at + len(noise):cut]
    try:
        make_codec(name, PARAMS[name], 8, 1).check_declared(damaged, *PICTURE)
    except SplitbenchError:
        pass  # refused in one line; anything else (IndexError, struct.error, MemoryError) fails the test


_SAMPLES: dict[str, bytes] = {}


# -- the wire format ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "message"), [
    (b'{"v":1,"op":"infer","id":"x","shape":' + b"[" * 4000, "header nests 4001 levels deep; at most 8"),
    (b'{"a":' * 600 + b"1" + b"}" * 600, "header nests 600 levels"),
    (b'{"v":NaN,"op":"info","id":"x"}', "header holds NaN, which is not JSON"),
    (b'{"v":1,"op":"info","id":"x","t":-Infinity}', "header holds -Infinity"),
    (b'{"v":1e999,"op":"info","id":"x"}', "header holds 1e999, a number out of range"),
])
def test_headers_that_are_not_standard_json_or_too_deep_are_refused(header: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        read_header(header)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = json.dumps({"id": "[[[[[[[[[[[[\\\"{{{{{{{{{{", "shape": [[1]]})
    assert json_depth(text) == 3 and read_header(text.encode())["shape"] == [[1]]
    assert json_depth("[" * MAX_HEADER_DEPTH + "]" * MAX_HEADER_DEPTH) == MAX_HEADER_DEPTH


def test_a_reply_with_a_non_finite_number_is_refused_not_sent() -> None:
    with pytest.raises(NonFiniteError, match=r"non-finite number at top5\[1\]\[1\]"):
        encode_header({"top5": [[3, 0.5], [4, float("nan")]]})
    with pytest.raises(NonFiniteError, match="server_s.decode"):
        encode_header({"server_s": {"decode": float("inf")}})


# -- real servers ------------------------------------------------------------------------------------

def _strict_reply(frames: list[bytes]) -> dict:
    """A reply as a strict JSON parser reads it: one frame, no NaN or Infinity anywhere."""
    assert len(frames) == 1

    def refuse(constant: str) -> None:
        raise AssertionError(f"the reply holds {constant}")

    reply = json.loads(frames[0], parse_constant=refuse)
    assert isinstance(reply, dict) and isinstance(reply["ok"], bool) and reply["v"] == 1
    assert reply["ok"] or isinstance(reply["error"], str)
    return reply


def _exchange(endpoint: str, frames: list[bytes], timeout_s: float = 20.0) -> dict:
    """One raw message on a fresh DEALER socket, and its one reply."""
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(endpoint)
    try:
        socket.send_multipart(frames)
        assert socket.poll(int(timeout_s * 1000)), f"no reply to {[f[:60] for f in frames]}"
        return _strict_reply(socket.recv_multipart())
    finally:
        socket.close()


class ServerProcess:
    """``splitbench serve ARGS --port 0`` in a child process; its stderr drained so it never blocks."""

    def __init__(self, *arguments: str) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "splitbench", "serve", *arguments, "--port", "0"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("listening on tcp://127.0.0.1:"):
            self.process.kill()
            pytest.fail(f"server did not start: {line!r} {self.process.stderr.read()}")  # type: ignore[union-attr]
        self.endpoint = line.split()[2]
        self.stderr: list[str] = []
        drain = threading.Thread(target=lambda: self.stderr.extend(self.process.stderr), daemon=True)  # type: ignore[arg-type]
        drain.start()

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1]) / 1024

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> str:
        """SIGTERM; what the server printed on stdout (stderr is the drain thread's)."""
        self.process.terminate()
        self.process.wait(timeout=30)
        return self.process.stdout.read()  # type: ignore[union-attr]


def _sender(codec: str) -> Sender:
    options = BPG_OPTIONS if codec == "bpg" else ()
    return Sender(_cifar(), SplitSetup("layer2", codec, PARAMS.get(codec), "gray", 8, options))


def _good_request(codec: str) -> tuple[bytes, dict]:
    """A real request: a noise picture's layer2 features through ``codec``, and its header fields."""
    sender = _sender(codec)
    noise = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    sent = sender.send(sender.picture(Image.fromarray(noise)))
    return sent.payload, sent.header


@pytest.fixture(scope="module")
def bpg_server():
    server = ServerProcess("cifar_resnet20", "--weights", "none", "--at", "layer2", "--codec", "bpg", "--qp", "35",
                           "--workers", "2", "--max-message-mb", "1")
    payload, header = _good_request("bpg")
    with LinkClient(server.endpoint, timeout_s=60) as client:
        top5 = client.request("infer", payload, **header)["top5"]
    server.good = (payload, header, top5)  # type: ignore[attr-defined]
    yield server
    out = server.stop()
    assert server.process.returncode == 0 and "stopped: answered" in out, "".join(server.stderr)[-2000:]


def _check_good_client(server: ServerProcess) -> None:
    payload, header, top5 = server.good  # type: ignore[attr-defined]
    assert server.alive(), "".join(server.stderr)[-2000:]
    with LinkClient(server.endpoint, timeout_s=60) as client:
        assert client.request("infer", payload, **header)["top5"] == top5


def _infer_header(**fields) -> bytes:
    return json.dumps({"v": 1, "op": "infer", "id": "h", "input": "features", "codec": "bpg",
                       "shape": [32, 16, 16], **fields}).encode()


def test_a_deeply_nested_header_is_answered_and_the_server_goes_on(bpg_server: ServerProcess) -> None:
    # the audit's message: 4 KB that starts like a request and nests 4000 arrays (RecursionError in json)
    audit = b'{"v":1,"op":"infer","id":"deep","shape":' + b"[" * 4000 + b"]" * 40
    assert len(audit) < 4096
    for frames in ([audit, b""], [b"[" * 4096, b""], [b'{"a":' * 600 + b"1" + b"}" * 600, b""],
                   [_infer_header(shape=[[[[[[[[[[1]]]]]]]]]]), b""], [b'{"v":NaN,"op":"info","id":"n"}', b""],
                   [b'{"v":1,"op":"info","id":"i","x":1e999}', b""]):
        reply = _exchange(bpg_server.endpoint, frames)
        assert not reply["ok"] and reply["error"].startswith(("header nests", "header holds", "shape must")), reply
    assert _exchange(bpg_server.endpoint, [audit, b""])["id"] is None  # its id cannot be read: none is claimed
    _check_good_client(bpg_server)


def test_a_picture_declaring_a_huge_size_costs_the_server_nothing(bpg_server: ServerProcess) -> None:
    payload, header, _ = bpg_server.good  # type: ignore[attr-defined]
    range_, bitstream = payload[:8], payload[8:]
    forged = [_bpg_resized(bitstream, HUGE, HUGE), _bpg_resized(bitstream, 16384, 16384),
              _bpg_with_block_size(bitstream, 2 ** 31), bitstream + b"\x00\x00\x01\x42\x01" + bytes(40)]
    before = bpg_server.rss_mb()
    for n in range(20):
        reply = _exchange(bpg_server.endpoint, [_infer_header(id=f"f{n}"), range_ + forged[n % len(forged)]])
        assert not reply["ok"] and reply["id"] == f"f{n}"
        assert reply["error"].startswith("cannot decode the bpg payload: ")
        assert ("declares" in reply["error"]) == (n % len(forged) < 2), reply["error"]
    assert "declares 60000x60000 pixels; expected 128x64" in _exchange(
        bpg_server.endpoint, [_infer_header(), range_ + forged[0]])["error"]
    assert bpg_server.rss_mb() - before < 50  # before the check: 0.9 -> 6.8 GB for one such picture
    _check_good_client(bpg_server)


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_generated_messages_get_one_standard_reply_and_the_server_goes_on(bpg_server: ServerProcess,
                                                                         data: st.DataObject) -> None:
    payload, _, top5 = bpg_server.good  # type: ignore[attr-defined]
    frames = [data.draw(_HEADERS, label="header")]
    frames += data.draw(st.lists(_payloads(payload), max_size=4), label="payloads")
    reply = _exchange(bpg_server.endpoint, frames)
    if frames == [_infer_header(), payload]:
        assert reply["ok"] and reply["top5"] == top5
    _CALLS[0] += 1
    if _CALLS[0] % 25 == 0:  # after each batch, a good client is still served correctly
        _check_good_client(bpg_server)


_CALLS = [0]
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30)
_REQUEST_LIKE = st.fixed_dictionaries({}, optional={
    "v": st.just(1) | _JSON, "op": st.sampled_from(["info", "infer", "exec"]) | _JSON,
    "id": st.text(min_size=1, max_size=80) | _JSON, "input": st.sampled_from(["features", "image"]) | _JSON,
    "codec": st.sampled_from(["bpg", "none", "png"]) | _JSON,
    "shape": st.just([32, 16, 16]) | st.lists(st.integers(-5, 1 << 17), max_size=6) | _JSON,
})
_HEADERS = st.one_of(
    st.just(_infer_header()),  # a valid request, so that damaged payloads reach the decoder
    _REQUEST_LIKE.map(lambda fields: json.dumps(fields).encode()),  # NaN and Infinity as Python writes them
    _JSON.map(lambda value: json.dumps(value).encode()),
    st.integers(1, 6000).map(lambda n: b"[" * n),
    st.integers(1, 2000).map(lambda n: b'{"v":1,"op":"info","id":"x","a":' + b"{" * n),
    st.integers(1, 1000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.binary(max_size=5000),
)


def _payloads(good: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, and the good payload cut short or with bytes overwritten (range and bitstream)."""
    damaged = st.tuples(st.integers(0, len(good)), st.binary(min_size=1, max_size=16), st.integers(0, len(good)))
    return st.one_of(st.binary(max_size=1 << 16), st.just(good),
                     damaged.map(lambda d: (good[:d[0]] + d[1] + good[d[0] + len(d[1]):])[:max(d[2], 8)]))


@contextlib.contextmanager
def _served(receiver: Receiver, **options) -> Iterator[str]:
    """A :class:`SplitServer` on a real loopback socket in a thread of this process."""
    server = SplitServer(receiver, None, port=0, **options)
    thread = threading.Thread(target=server.serve, kwargs={"handle_signals": False}, daemon=True)
    thread.start()
    try:
        yield server.endpoint
    finally:
        server.stop()
        thread.join(30)


@pytest.mark.parametrize("name", sorted(set(PARAMS) - {"bpg"}))
def test_every_codec_refuses_a_huge_declared_size_over_the_wire(name: str) -> None:
    options = BPG_OPTIONS if name == "bpg" else ()
    receiver = Receiver(_cifar(), SplitSetup("layer2", name, PARAMS[name], "gray", 8, options))
    assert receiver.transport.picture_size == PICTURE
    payload, header = _good_request(name)
    with _served(receiver) as endpoint:
        good = _exchange(endpoint, [encode_header({"op": "infer", "id": "g", **header}), payload])
        assert good["ok"] and len(good["top5"]) == 5
        forged = payload[:8] + FORGE[name](payload[8:])
        reply = _exchange(endpoint, [encode_header({"op": "infer", "id": "f", **header}), forged])
        assert not reply["ok"] and f"the {name} picture declares" in reply["error"]
        again = _exchange(endpoint, [encode_header({"op": "infer", "id": "g", **header}), payload])
        assert again["top5"] == good["top5"]


def test_an_input_jpeg_declaring_a_huge_size_is_refused() -> None:
    # --at input takes the model's picture as a JPEG; its size is read from the SOF header, not decoded
    sender = Sender(_cifar(), SplitSetup("input", "jpeg"))
    noise = np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    sent = sender.send(sender.picture(Image.fromarray(noise)))
    sof = sent.payload.index(b"\xff\xc0") + 5  # baseline SOF0: length, precision, then height and width
    forged = sent.payload[:sof] + struct.pack(">HH", 65000, 65000) + sent.payload[sof + 4:]
    with _served(Receiver(_cifar(), SplitSetup("input", "jpeg"))) as endpoint:
        header = encode_header({"op": "infer", "id": "j", **sent.header})
        assert _exchange(endpoint, [header, sent.payload])["ok"]
        reply = _exchange(endpoint, [header, forged])
        # refused from the header: as the wrong size, or (PIL's bomb check at open) as too large
        assert not reply["ok"] and ("65000x65000" in reply["error"] or "4,225 megapixels" in reply["error"]), reply


def test_features_that_overflow_the_tail_get_an_error_not_nan() -> None:
    receiver = Receiver(_cifar(), SplitSetup("layer2", "minmax8"))
    values = np.random.default_rng(0).integers(0, 256, receiver.shape, dtype=np.uint8).tobytes()
    huge = struct.pack("<ff", -3e38, 3e38) + values
    with _served(receiver) as endpoint:
        header = encode_header({"op": "infer", "id": "o", "input": "features", "codec": "minmax8",
                                "shape": list(receiver.shape)})
        reply = _exchange(endpoint, [header, huge])
        assert reply == {"v": 1, "id": "o", "ok": False,
                         "error": "the model's output is not finite for these features (NaN or Infinity)"}
        sane = _exchange(endpoint, [header, struct.pack("<ff", -1.0, 1.0) + values])
        assert sane["ok"] and all(np.isfinite(p) for _, p in sane["top5"])


# -- authentication ----------------------------------------------------------------------------------

def _make_keys(folder: Path) -> None:
    done = run_in_process("serve", "--make-keys", str(folder))
    assert done.returncode == 0, done.stderr
    assert {path.name for path in folder.rglob("*") if path.is_file()} == {
        "server.key", "server.key_secret", "client.key", "client.key_secret"}
    assert all((path.stat().st_mode & 0o777) == 0o600 for path in folder.rglob("*") if path.is_file())
    assert (folder.stat().st_mode & 0o777) == 0o700


def _no_answer_within(endpoint: str, keys, seconds: float = 3.0) -> None:
    began = time.monotonic()
    with LinkClient(endpoint, keys=keys) as client, pytest.raises(SplitbenchError, match=f"within {seconds:g} s"):
        client.info(timeout_s=seconds)
    assert time.monotonic() - began < seconds + 2


def test_only_a_client_with_the_right_keys_is_served(tmp_path: Path) -> None:
    keys, other = tmp_path / "keys", tmp_path / "other"
    _make_keys(keys)
    _make_keys(other)
    server = ServerProcess("cifar_resnet20", "--weights", "none", "--at", "layer2", "--auth", str(keys))
    try:
        right = client_keys(keys / "server.key", keys / "client.key_secret")
        with LinkClient(server.endpoint, timeout_s=30, keys=right) as client:
            assert client.info()["model"] == "cifar_resnet20"
        wrong_server, unlisted = other / "server.key", other / "client.key_secret"
        _no_answer_within(server.endpoint, client_keys(wrong_server, keys / "client.key_secret"))
        _no_answer_within(server.endpoint, client_keys(keys / "server.key", unlisted))
        _no_answer_within(server.endpoint, client_keys(keys / "server.key", None))  # a fresh, unlisted key pair
        _no_answer_within(server.endpoint, None)  # no CURVE at all
        with LinkClient(server.endpoint, timeout_s=30, keys=right) as client:  # and the right one still is
            assert client.info()["ok"]
    finally:
        assert "stopped: answered 0, refused 0, failed 0" in server.stop()


def test_a_secret_key_file_serves_any_client_that_knows_the_server_key(tmp_path: Path) -> None:
    from splitbench.link.security import server_keys

    _make_keys(tmp_path / "keys")
    receiver = Receiver(_cifar(), SplitSetup("layer2", "none"))
    with _served(receiver, keys=server_keys(tmp_path / "keys" / "server.key_secret")) as endpoint:
        with LinkClient(endpoint, timeout_s=30, keys=client_keys(tmp_path / "keys" / "server.key", None)) as client:
            assert client.info()["ok"]
        _no_answer_within(endpoint, None)


@needs_shared_data
def test_link_with_keys_is_served_and_with_a_wrong_key_ends_in_one_line(tmp_path: Path) -> None:
    keys, other = tmp_path / "keys", tmp_path / "other"
    _make_keys(keys)
    _make_keys(other)
    server = ServerProcess("cifar_resnet20", "--weights", "none", "--at", "layer2", "--auth", str(keys))
    common = ["link", "cifar_resnet20", "--weights", "none", "--data", str(SHARED_DATA), "--at", "layer2",
              "--server", server.endpoint, "--shaper", "none", "--bandwidth", "none", "--limit", "2"]
    try:
        done = run_in_process(*common, "--server-key", str(keys / "server.key"), "--client-key",
                              str(keys / "client.key_secret"), "--out", str(tmp_path / "out"))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out" / "link.csv").is_file()
        done = run_in_process(*common, "--server-key", str(other / "server.key"), "--client-key",
                              str(keys / "client.key_secret"), "--out", str(tmp_path / "out2"))
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"error: no splitbench server answers at {server.endpoint}")
        assert "a key that is not the server's" in done.stderr
    finally:
        server.stop()


# -- command line ------------------------------------------------------------------------------------

def _serve_dry_run(*arguments: str):
    return run_in_process("serve", "cifar_resnet20", "--weights", "none", "--at", "layer2", *arguments, "--dry-run")


@pytest.mark.parametrize("host", ["0.0.0.0", "*", "192.0.2.7"])
def test_a_reachable_address_without_auth_is_refused_in_one_line(host: str) -> None:
    done = _serve_dry_run("--host", host)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"error: --host {host} is reachable from other machines and --auth is not given")


def test_insecure_bind_warns_and_auth_or_loopback_need_nothing(tmp_path: Path) -> None:
    done = _serve_dry_run("--host", "0.0.0.0", "--insecure-bind")
    assert done.returncode == 0 and done.stderr.startswith("warning: --host 0.0.0.0 without --auth")
    assert done.stderr.count("\n") == 1
    _make_keys(tmp_path / "keys")
    for arguments in (["--host", "0.0.0.0", "--auth", str(tmp_path / "keys")], ["--host", "localhost"],
                      ["--host", "127.0.0.1"], ["--host", "::1"]):
        done = _serve_dry_run(*arguments)
        assert done.returncode == 0 and done.stderr == "", (arguments, done.stderr)


def test_bad_keys_end_in_one_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    _make_keys(keys)
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.key").write_text("hello\n")
    open_secret = tmp_path / "open.key_secret"
    open_secret.write_text((keys / "server.key_secret").read_text())
    open_secret.chmod(0o644)
    cases = [
        (["serve", "--make-keys", str(keys)], "error: --make-keys", "already holds server.key"),
        (["serve", "cifar_resnet20", "--auth", str(tmp_path / "missing"), "--dry-run"], "error: --auth",
         "no such key file"),
        (["serve", "cifar_resnet20", "--auth", str(tmp_path / "empty"), "--dry-run"], "error: --auth",
         "no server.key_secret in this folder"),
        (["serve", "cifar_resnet20", "--auth", str(keys / "server.key"), "--dry-run"], "error: --auth",
         "holds a public key only"),
        (["serve", "cifar_resnet20", "--auth", str(tmp_path / "text.key"), "--dry-run"], "error: --auth",
         "not a ZeroMQ CURVE key file"),
        (["link", "cifar_resnet20", "--server-key", str(keys / "server.key"), "--dry-run"], "error: --server-key",
         "is for a running server"),
        (["link", "cifar_resnet20", "--client-key", str(keys / "client.key_secret"), "--dry-run"],
         "error: --client-key", "needs --server-key"),
    ]
    for arguments, start, middle in cases:
        done = run_in_process(*arguments)
        assert done.returncode == 2 and done.stderr.startswith(start), (arguments, done.stderr)
        assert middle in done.stderr, (arguments, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
    done = run_in_process("serve", "cifar_resnet20", "--weights", "none", "--auth", str(open_secret), "--host", "0.0.0.0",
                          "--dry-run")
    assert done.returncode == 0 and done.stderr.startswith("warning: --auth") and "chmod 600" in done.stderr
    assert os.stat(keys / "server.key_secret").st_mode & 0o777 == 0o600
