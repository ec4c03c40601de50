"""How a cut's tensor crosses the link: one interface for every way of coding it.

A :class:`TensorCodec` is built for one C×H×W (or any) tensor shape and turns a float32 tensor
of that shape into bytes and back. ``serve``, ``link`` and ``plan`` take the same ``--codec``
strings, parsed here by :func:`tensor_codec`:

============================  ==========================================================
``none``                      float32 as it is (little-endian)
``minmax8``                   seed 003's eq. 7 to 8 bits, no codec; eq. 8's range in front
``bpg``, ``webp``, … (+ value)  quantise, tile, one image codec (:mod:`splitbench.codecs`)
``learned:FILE``              a feature codec trained by ``rd``: real range-coded bitstreams
``learned:RUN@λ``             the codec ``rd`` trained at λ in result folder RUN (its most
                              epochs; ``RUN@λ/E`` for the one evaluated after E epochs)
``FILE.py:FUNCTION``          the user's codec: ``FUNCTION()`` returns an object with
                              ``encode(tensor) -> bytes`` and ``decode(bytes, shape) -> tensor``
============================  ==========================================================

Every decoder checks what arrives before it allocates anything the bytes ask for, and turns a
library's failure on hostile bytes into :class:`SplitbenchError`; the server answers that
with an error message. CompressAI's range decoder does not check where its stream ends (a
5-byte stream crashed the process): :class:`Learned` hands it each stream followed by enough
zero bytes that every read it can make stays inside the buffer. A user's codec decodes what a
peer sent with the user's own code, which must be as careful. Nothing is unpickled.
"""

from __future__ import annotations

import math
import struct
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from splitbench.codecs.base import CodecSpec
from splitbench.codecs.features import SIDE_INFO_BYTES, Quantized, dequantize, quantize, tile_grid
from splitbench.codecs.worker import decode_features, encode_features
from splitbench.errors import SplitbenchError

if TYPE_CHECKING:
    from splitbench.zoo import ZooModel

BASELINES = ("none", "minmax8")  # float32 as it is; eq. 7 to 8 bits with no codec
LEARNED_PREFIX = "learned:"
RANGE = struct.Struct("<ff")  # eq. 8's minimum and maximum in front of a quantised payload (SIDE_INFO_BYTES)
LENGTH = struct.Struct("<I")  # a learned codec's stream length, in front of each stream


class TensorCodec(ABC):
    """Bytes of a float32 tensor of one ``shape`` and back; ``name`` is what ``--codec`` said."""

    name: str

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(int(s) for s in shape)

    @abstractmethod
    def encode(self, tensor: np.ndarray) -> bytes:
        """The payload for ``tensor`` (float32 of :attr:`shape`)."""

    @abstractmethod
    def decode(self, payload: bytes) -> np.ndarray:
        """The float32 tensor of :attr:`shape`; :class:`SplitbenchError` for bytes that do not hold one."""

    def describe(self) -> dict[str, Any]:
        """What a result row and a server's ``info`` record about this codec."""
        return {"codec": self.name}

    @property
    def expected_bytes(self) -> int | None:
        """The payload's size where it is fixed (a receiver refuses any other), else None."""
        return None

    def _checked(self, tensor: np.ndarray, who: str) -> np.ndarray:
        tensor = np.asarray(tensor)
        if tensor.shape != self.shape:
            raise SplitbenchError(f"{who} gave a tensor of shape {list(tensor.shape)}; expected {list(self.shape)}")
        if tensor.dtype.kind != "f" or not np.isfinite(tensor).all():
            raise SplitbenchError(f"{who} gave a tensor that is not finite floating point")
        return tensor.astype(np.float32, copy=False)


class Float32(TensorCodec):
    name = "none"

    def encode(self, tensor: np.ndarray) -> bytes:
        return np.ascontiguousarray(tensor, dtype="<f4").tobytes()

    def decode(self, payload: bytes) -> np.ndarray:
        _check_size(self, payload)
        return self._checked(np.frombuffer(payload, dtype="<f4").reshape(self.shape).copy(), "the payload")

    @property
    def expected_bytes(self) -> int:
        return math.prod(self.shape) * 4


class MinMax8(TensorCodec):
    """Eq. 7 to 8 bits; eq. 8's float32 range travels in front (:data:`SIDE_INFO_BYTES`)."""

    name = "minmax8"

    def encode(self, tensor: np.ndarray) -> bytes:
        quantized = quantize(tensor, 8)
        return pack_range(quantized.minimum, quantized.maximum) + quantized.values.tobytes()

    def decode(self, payload: bytes) -> np.ndarray:
        _check_size(self, payload)
        low, high, body = unpack_range(payload)
        return dequantize(Quantized(np.frombuffer(body, dtype=np.uint8).reshape(self.shape), low, high, 8))

    @property
    def expected_bytes(self) -> int:
        return math.prod(self.shape) + SIDE_INFO_BYTES


class Pictured(TensorCodec):
    """Quantise (eq. 7), tile the C planes into one picture, code it with an image codec (seed 003)."""

    def __init__(self, shape: tuple[int, ...], spec: CodecSpec, layout: str) -> None:
        super().__init__(shape)
        if len(self.shape) != 3:
            raise SplitbenchError(f"{spec.name} carries C×H×W planes; the tensor here is {list(self.shape)}")
        self.name, self.spec, self.layout = spec.name, spec, layout
        self.codec = spec.build()
        rows, cols = tile_grid(self.shape[0])
        self.picture_size = (rows * self.shape[1], cols * self.shape[2])

    def encode(self, tensor: np.ndarray) -> bytes:
        sent = encode_features(self._checked(tensor, "the head"), self.codec, self.layout)
        return pack_range(sent.minimum, sent.maximum) + sent.data

    def decode(self, payload: bytes) -> np.ndarray:
        low, high, body = unpack_range(payload)
        try:  # the header's declared size first: a decoder allocates whatever it declares
            self.codec.check_declared(body, *self.picture_size)
            return decode_features(body, low, high, self.shape, self.codec, self.layout)  # type: ignore[arg-type]
        except (SplitbenchError, ValueError) as error:
            raise SplitbenchError(f"cannot decode the {self.name} payload: {error}") from None

    def describe(self) -> dict[str, Any]:
        return {"codec": self.name, "param": self.spec.param, "layout": self.layout, "bits": self.spec.bits,
                **dict(self.spec.options)}


class Learned(TensorCodec):
    """A feature codec trained by ``rd``: its encoder and range coder here, its decoder at the receiver.

    The payload is each entropy model's stream (one for a factorised prior, two for a
    hyperprior), each behind its 4-byte length: the bytes ``rd`` counts, plus that framing.
    """

    def __init__(self, shape: tuple[int, ...], path: Path, name: str) -> None:
        import torch

        from splitbench.compression.export import load_codec

        super().__init__(shape)
        self.name, self.path = name, path
        self.codec, self.recipe = load_codec(path)
        if tuple(self.recipe.shape) != self.shape:
            raise SplitbenchError(f"{name} was trained for {self.recipe.model} at {self.recipe.at} "
                                  f"({'x'.join(map(str, self.recipe.shape))}); the tensor here is "
                                  f"{'x'.join(map(str, self.shape))}")
        with torch.inference_mode():  # the latent's size, and how many streams a payload holds
            coded = self.codec.compress(torch.zeros(1, *self.shape))
        self.latent_size, self.streams = tuple(coded["shape"]), len(coded["strings"])

    def encode(self, tensor: np.ndarray) -> bytes:
        import torch

        tensor = self._checked(tensor, "the head")
        with torch.inference_mode():
            coded = self.codec.compress(torch.from_numpy(np.ascontiguousarray(tensor, dtype=np.float32))[None])
        return b"".join(LENGTH.pack(len(strings[0])) + strings[0] for strings in coded["strings"])

    def decode(self, payload: bytes) -> np.ndarray:
        import torch

        strings, offset = [], 0
        for _ in range(self.streams):
            if offset + LENGTH.size > len(payload):
                raise SplitbenchError(f"the {self.name} payload ends inside a stream's length")
            (length,) = LENGTH.unpack_from(payload, offset)
            offset += LENGTH.size
            if length == 0 or offset + length > len(payload):
                raise SplitbenchError(f"the {self.name} payload declares a {length}-byte stream; "
                                      f"{len(payload) - offset} bytes are left")
            if length > self.max_stream_bytes:  # the padding grows with the stream: no real one is this long
                raise SplitbenchError(f"the {self.name} payload declares a {length}-byte stream; a stream of "
                                      f"this codec holds at most {self.max_stream_bytes} bytes")
            strings.append([payload[offset:offset + length] + bytes(self._padding(length))])
            offset += length
        if offset != len(payload):
            raise SplitbenchError(f"the {self.name} payload has {len(payload) - offset} bytes after its streams")
        try:
            with torch.inference_mode():
                decoded = self.codec.decompress(strings, self.latent_size)["x_hat"]
        except Exception as error:  # the range decoder's own complaint about hostile bytes
            raise SplitbenchError(f"cannot decode the {self.name} payload: {type(error).__name__}") from None
        return self._checked(decoded[0, :, : self.shape[1], : self.shape[2]].numpy(), "the learned decoder")

    @property
    def max_stream_bytes(self) -> int:
        """The longest stream a receiver takes: 16 bits per latent symbol, several times what a
        trained codec spends (under 3 bits a symbol at the rates rd reaches), so that the padding
        below stays a few hundred bytes per symbol however large the message."""
        return 2 * self.recipe.channels * self.latent_size[0] * self.latent_size[1] + 1024

    def _padding(self, length: int) -> int:
        """Zero bytes after a ``length``-byte stream that CompressAI's rANS decoder cannot read past.

        It reads at most one 32-bit word per decoded symbol, per 4-bit chunk of an escaped
        value's length (a run of 0xF nibbles, which the zeros end) and per chunk of its value
        (at most 15 per such nibble, plus 15 per symbol): with S symbols and L bytes that is
        below 17·S + 32·L + 2 words. S ≤ the latent's elements, for either stream.
        """
        symbols = self.recipe.channels * self.latent_size[0] * self.latent_size[1]
        return 4 * (17 * symbols + 32 * length + 2) + 64

    def stream_bytes(self, payload: bytes) -> int:
        """The range coder's bytes in ``payload``, without the framing (what ``rd`` counts)."""
        return len(payload) - self.streams * LENGTH.size

    def describe(self) -> dict[str, Any]:
        recipe = self.recipe
        return {"codec": self.name, "file": str(self.path), "trained_for": f"{recipe.model} at {recipe.at}",
                "lambda": recipe.lam, "epochs": recipe.epochs, "channels": recipe.channels,
                "variant": recipe.variant, "entropy": recipe.entropy}


class UserCodec(TensorCodec):
    """``FILE.py:FUNCTION``: ``FUNCTION()`` returns an object with ``encode``/``decode`` (see the module doc)."""

    def __init__(self, shape: tuple[int, ...], name: str) -> None:
        from splitbench.zoo.sources import import_factory

        super().__init__(shape)
        self.name = name
        built = _user_call(import_factory(name, "codec"), (), name, "building it")
        if not (callable(getattr(built, "encode", None)) and callable(getattr(built, "decode", None))):
            raise SplitbenchError(f"codec {name} returned {type(built).__name__}, which has no encode and decode methods")
        self.codec = built

    def encode(self, tensor: np.ndarray) -> bytes:
        payload = _user_call(self.codec.encode, (np.ascontiguousarray(tensor, dtype=np.float32),), self.name, "encode")
        if not isinstance(payload, (bytes, bytearray)):
            raise SplitbenchError(f"codec {self.name}: encode returned {type(payload).__name__}, not bytes")
        return bytes(payload)

    def decode(self, payload: bytes) -> np.ndarray:
        decoded = _user_call(self.codec.decode, (payload, self.shape), self.name, "decode")
        return self._checked(decoded, f"codec {self.name}'s decode")


def tensor_codec(text: str, shape: tuple[int, ...], param: int | None = None, layout: str = "gray", bits: int = 8,
                 options: tuple[tuple[str, Any], ...] = ()) -> TensorCodec:
    """The codec ``--codec text`` names, for tensors of ``shape`` (``param``, ``layout``, ``bits`` and
    ``options`` for an image codec)."""
    if text == "none":
        return Float32(shape)
    if text == "minmax8":
        return MinMax8(shape)
    if is_learned(text):
        return Learned(shape, learned_file(text), text)
    if is_user_codec(text):
        return UserCodec(shape, text)
    from splitbench.codecs.features import layout_channels

    return Pictured(shape, CodecSpec(text, param, bits, layout_channels(layout), options), layout)


def check_trained_for(built: TensorCodec, zoo_model: ZooModel, cut: str, text: str, at: str | None = None) -> None:
    """A learned codec codes the cut it was trained at, for the model it was trained for: the same
    shape is not enough (another cut of that shape, another model). ``cut``: the canonical name;
    ``at``: the name the user gave it."""
    if not isinstance(built, Learned):
        return
    trained = built.recipe
    if trained.model != zoo_model.spec.name:
        raise SplitbenchError(f"--codec {text} was trained for {trained.model} at {trained.at}, "
                              f"not for {zoo_model.spec.name}")
    if zoo_model.cuts().resolve(trained.at).name != cut:
        raise SplitbenchError(f"--codec {text} was trained for {trained.model} at {trained.at}, not at {at or cut}")


def is_learned(text: str) -> bool:
    return text.startswith(LEARNED_PREFIX)


def is_user_codec(text: str) -> bool:
    """``FILE.py:FUNCTION``, ``dir/file:FUNCTION`` or ``package.module:FUNCTION`` (an image codec's
    ``NAME:V`` has no dot or slash before its colon)."""
    location, colon, _ = text.rpartition(":")
    return bool(colon) and not is_learned(text) and ("." in location or "/" in location)


def takes_parameter(text: str) -> bool:
    """Whether ``text`` is an image codec (which may take ``--qp``/``--quality`` and a layout)."""
    return text not in BASELINES and not is_learned(text) and not is_user_codec(text)


def learned_file(text: str) -> Path:
    """The exported codec file that ``learned:FILE`` or ``learned:RUN@λ[/E]`` names."""
    target = text[len(LEARNED_PREFIX):]
    if not target:
        raise SplitbenchError(f"--codec {text} names nothing: learned:FILE.safetensors or learned:RUN_FOLDER@λ")
    path = Path(target).expanduser()
    if "@" not in target or path.is_file():  # a file's name may hold an @
        if path.is_dir():
            raise SplitbenchError(f"--codec {text}: {path} is a folder; name a λ of its rd run (learned:{target}@λ) "
                                  "or a codec file")
        return path
    run, _, point = target.rpartition("@")
    return _run_codec(Path(run).expanduser(), point, text)


def transport_file(text: str) -> Path:
    """The file that holds a learned codec (``learned:…``) or a user's (``FILE.py:FUNCTION``, or a
    module's source for ``package.module:FUNCTION``): what a cache keys the codec by."""
    if is_learned(text):
        path = learned_file(text)
        if not path.is_file():
            raise SplitbenchError(f"--codec {text}: learned codec file not found: {path}")
        return path
    location = text.rpartition(":")[0]
    if location.endswith(".py") or "/" in location:
        path = Path(location).expanduser()
        if not path.is_file():
            raise SplitbenchError(f"codec file not found: {path}")
        return path
    import importlib.util

    try:
        found = importlib.util.find_spec(location)
    except Exception:  # noqa: BLE001 - finding it imports its parents, whose code may raise anything
        found = None
    if found is None or found.origin is None or not Path(found.origin).is_file():
        raise SplitbenchError(f"--codec {text}: no module {location} to import")
    return Path(found.origin)


def _run_codec(run: Path, point: str, text: str) -> Path:
    import pandas as pd

    table_path = run / "rd.csv"
    if not table_path.is_file():
        raise SplitbenchError(f"--codec {text}: {table_path} not found (learned:RUN@λ takes an rd result folder)")
    lam_text, _, epochs_text = point.partition("/")
    try:
        lam, epochs = float(lam_text), int(epochs_text) if epochs_text else None
    except ValueError:
        raise SplitbenchError(f"--codec {text}: λ and epochs must be numbers (RUN@λ or RUN@λ/EPOCHS)") from None
    try:
        table = pd.read_csv(table_path)
        lambdas = sorted(table["lambda"].unique())
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as error:
        raise SplitbenchError(f"--codec {text}: cannot read {table_path} as rd's table ({type(error).__name__})") from None
    if (table["split"] == "input").all():
        raise SplitbenchError(f"--codec {text}: {run} trained image codecs (--at input); learned:… takes a feature codec")
    rows = table[np.isclose(table["lambda"], lam)]
    if rows.empty:
        raise SplitbenchError(f"--codec {text}: {run} has no λ {lam:g}; its λ: {', '.join(f'{v:g}' for v in lambdas)}")
    if epochs is not None:
        budgets = sorted(rows["epochs"].unique())
        rows = rows[rows["epochs"] == epochs]
        if rows.empty:
            raise SplitbenchError(f"--codec {text}: λ {lam:g} was evaluated after {', '.join(map(str, budgets))} "
                                  f"epochs, not {epochs}")
    row = rows.sort_values("epochs").iloc[-1]
    if len(rows["variant"].unique()) > 1:
        raise SplitbenchError(f"--codec {text}: {run} trained several variants at λ {lam:g}; name the file instead")
    file = row.get("codec_file")
    if not isinstance(file, str) or not file:
        raise SplitbenchError(f"--codec {text}: {run} kept no codec file for λ {lam:g} (rd exports one per point "
                              f"since this version: rerun rd with the same options, which reuses its cache)")
    path = Path(file).expanduser()
    return path if path.is_absolute() or path.is_file() else run / path  # rd records absolute paths


def pack_range(minimum: float, maximum: float) -> bytes:
    return RANGE.pack(minimum, maximum)


def unpack_range(payload: bytes) -> tuple[np.float32, np.float32, bytes]:
    """Eq. 8's range and the rest of a quantised payload."""
    if len(payload) < RANGE.size:
        raise SplitbenchError(f"payload of {len(payload)} bytes holds no range (8 bytes)")
    low, high = RANGE.unpack_from(payload)
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise SplitbenchError("range is not finite or minimum > maximum")
    return np.float32(low), np.float32(high), payload[RANGE.size:]


def _check_size(codec: TensorCodec, payload: bytes) -> None:
    if len(payload) != codec.expected_bytes:
        raise SplitbenchError(f"{codec.name} payload must be {codec.expected_bytes} bytes, got {len(payload)}")


def _user_call(function: Any, arguments: tuple[Any, ...], name: str, what: str) -> Any:
    try:
        return function(*arguments)
    except SplitbenchError:
        raise
    except SystemExit as exit:
        raise SplitbenchError(f"codec {name} called sys.exit({exit.code!r}) in {what}") from None
    except Exception as error:
        raise SplitbenchError(f"codec {name} failed in {what}: {type(error).__name__}: {error}") from None
