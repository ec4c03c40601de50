"""The wire format between ``splitbench link`` (edge) and ``splitbench serve`` (server).

Framing is ZeroMQ's (ZMTP 3 over TCP): a message is a list of frames, each delivered whole or
not at all. A request is two frames, a reply one:

- request: ``[header, payload]``. The header is UTF-8 JSON, at most ``MAX_HEADER_BYTES``:
  ``{"v": 1, "op": "infer", "id": "...", "input": "features", "codec": "bpg", "shape": [C, H, W]}``
  or ``{"v": 1, "op": "info", "id": "..."}`` (whose payload frame is empty). A request to a
  detector adds ``"image_size": [height, width]``, the original image's pixels (its boxes are
  drawn there). The payload is bytes whose meaning the header names, never a pickle:

  - ``input: "features"``: eq. 7's float32 minimum and maximum (8 bytes, little-endian), then
    the codec's bitstream; for codec ``minmax8``, the uint8 values in C×H×W order; for codec
    ``none``, float32 C×H×W little-endian (no range).
  - ``input: "image"``: a JPEG file of the model's input picture.

- reply: ``[header]``, UTF-8 JSON: ``{"v": 1, "id": ..., "ok": true, "top5": [[class, p], ...],
  "server_s": {"decode": s, "tail": s}}`` from a classifier, the ``info`` fields, or
  ``{"ok": false, "error": "..."}``. A detector replies ``"detections": [[x, y, w, h, score,
  category_id], ...]`` instead of ``top5``: COCO results rows (``bbox`` in the original image's
  pixels, COCO's category ids), best first, after the detector's own post-processing (the
  decoder ``eval`` and ``codec`` score), at most ``COCO_MAX_DETECTIONS`` per category (COCOeval
  counts no more; :func:`splitbench.detection.coco.coco_countable`) and ``MAX_DETECTIONS`` in
  all. The five coordinates and scores are float32 values, each written in the shortest
  decimal that reads back, through float32, to the same value (:func:`float32_numbers`;
  :func:`read_detections` reads them so), so that scoring a reply is scoring the server's own
  detections, bit for bit; ``server_s.tail`` includes the post-processing. A reply is at most
  ``MAX_REPLY_BYTES``: a header's 4 KB, and ``MAX_DETECTION_CHARS`` per detection.

Everything a peer sends is checked against what this server holds (shape, codec, sizes)
before it reaches a decoder. Headers are standard JSON both ways: at most ``MAX_HEADER_BYTES``
and ``MAX_HEADER_DEPTH`` levels of nesting (checked before parsing: Python's parser recurses,
and 4 KB of ``[`` is deeper than its stack), and never NaN or Infinity, which JSON does not
have; a reply that would hold one is refused (:class:`NonFiniteError`), not sent.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

VERSION = 1
MAX_HEADER_BYTES = 4096
MAX_HEADER_DEPTH = 8  # requests nest 2 levels ("shape"), replies 3 ("top5", "detections"); nothing needs more
MAX_DETECTIONS = 10_000  # per reply; a detector's own bound is COCO_MAX_DETECTIONS per category (80 x 100 for COCO)
# Six numbers of at most 24 characters (float64's longest form of a float32 is 1.2345678901234567e-05),
# five commas, two brackets and the comma before the next detection.
MAX_DETECTION_CHARS = 6 * 24 + 8
MAX_REPLY_BYTES = MAX_HEADER_BYTES + MAX_DETECTIONS * MAX_DETECTION_CHARS  # 1.5 MiB; a classifier's is < 1 KB
MAX_ID_CHARS = 64
OPS = ("info", "infer")
INPUTS = ("features", "image")


class ProtocolError(ValueError):
    """A message that does not follow this format; its text goes back to the peer."""


class NonFiniteError(ProtocolError):
    """A header that would hold NaN or ±Infinity: not JSON, so not sent."""


@dataclass(frozen=True)
class Request:
    op: str
    id: str
    input: str | None = None
    codec: str | None = None
    shape: tuple[int, ...] | None = None
    payload: bytes = b""
    image_size: tuple[int, int] | None = None  # a detector's: the original image's (height, width)


def zmtp_frame_bytes(size: int) -> int:
    """Bytes ZMTP 3 puts before a frame of ``size`` bytes: a flags byte and a 1- or 8-byte length."""
    return 2 if size < 256 else 9


def framing_bytes(header: bytes, payload_size: int) -> int:
    """Bytes a request adds to its payload at the application layer: the header and ZMTP's frame prefixes."""
    return len(header) + zmtp_frame_bytes(len(header)) + zmtp_frame_bytes(payload_size)


def encode_header(fields: dict[str, Any]) -> bytes:
    """Standard JSON: a non-finite number anywhere raises :class:`NonFiniteError` naming where it is."""
    header = {"v": VERSION, **fields}
    where = _non_finite(header, "")
    if where is not None:
        raise NonFiniteError(f"the reply would hold a non-finite number at {where or 'the top'}; JSON has none")
    return json.dumps(header, separators=(",", ":"), allow_nan=False).encode()


def _non_finite(value: Any, path: str) -> str | None:
    """The path of the first NaN or ±Infinity in ``value``, or None."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        found = _non_finite(item, f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]")
        if found is not None:
            return found.lstrip(".")
    return None


def request_frames(op: str, request_id: str, payload: bytes = b"", **fields: Any) -> list[bytes]:
    return [encode_header({"op": op, "id": request_id, **fields}), payload]


def parse_request(frames: list[bytes]) -> Request:
    """The request in ``frames``, or :class:`ProtocolError` saying what is wrong with it."""
    if len(frames) != 2:
        raise ProtocolError(f"a request is 2 frames (header, payload), got {len(frames)}")
    header, payload = frames
    fields = read_header(header)
    if fields.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {fields.get('v')!r}; this server speaks {VERSION}")
    op, request_id = fields.get("op"), fields.get("id")
    if op not in OPS:
        raise ProtocolError(f"unknown op {op!r}; valid: {', '.join(OPS)}")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_CHARS:
        raise ProtocolError(f"id must be a string of 1-{MAX_ID_CHARS} characters")
    if op == "info":
        return Request("info", request_id)
    kind, codec, shape = fields.get("input"), fields.get("codec"), fields.get("shape")
    if kind not in INPUTS:
        raise ProtocolError(f"unknown input {kind!r}; valid: {', '.join(INPUTS)}")
    if not isinstance(codec, str):
        raise ProtocolError("codec must be a string")
    if not (isinstance(shape, list) and 1 <= len(shape) <= 4
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 < s < 1 << 16 for s in shape)):
        raise ProtocolError("shape must be a list of 1-4 positive integers")
    image_size = fields.get("image_size")
    if image_size is not None and not _sizes(image_size, 2):
        raise ProtocolError("image_size must be a list of 2 positive integers (height, width)")
    return Request("infer", request_id, kind, codec, tuple(shape), payload,
                   tuple(image_size) if image_size is not None else None)  # type: ignore[arg-type]


def _sizes(value: Any, count: int) -> bool:
    return (isinstance(value, list) and len(value) == count
            and all(isinstance(s, int) and not isinstance(s, bool) and 0 < s < 1 << 16 for s in value))


def read_header(header: bytes, limit: int = MAX_HEADER_BYTES) -> dict[str, Any]:
    """A header frame's JSON object (at most ``limit`` bytes); :class:`ProtocolError` for anything else."""
    if len(header) > limit:
        raise ProtocolError(f"header is {len(header)} bytes; at most {limit}")
    try:
        text = header.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("header is not UTF-8 JSON") from None
    if (depth := json_depth(text)) > MAX_HEADER_DEPTH:
        raise ProtocolError(f"header nests {depth} levels deep; at most {MAX_HEADER_DEPTH}")
    try:
        fields = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except ProtocolError:
        raise
    except (ValueError, RecursionError):
        raise ProtocolError("header is not UTF-8 JSON") from None
    if not isinstance(fields, dict):
        raise ProtocolError("header is not a JSON object")
    return fields


# A JSON string (escapes skipped; one left open runs to the end) and a bracket: a reply of a
# thousand detections is scanned in regular expressions' C loops, not character by character.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*\\?(?:"|$)', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """How deep the arrays and objects of JSON ``text`` nest, counted in one pass without parsing it."""
    depth = deepest = 0
    for bracket in _BRACKET.findall(_STRING.sub("", text)):  # brackets inside strings do not nest
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _no_constant(name: str) -> float:
    raise ProtocolError(f"header holds {name}, which is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 parses to inf
        raise ProtocolError(f"header holds {text[:20]}, a number out of range")
    return value


def parse_reply(frames: list[bytes]) -> dict[str, Any]:
    """The reply's fields; a reply that breaks the format raises :class:`ProtocolError`."""
    if len(frames) != 1:
        raise ProtocolError(f"a reply is 1 frame, got {len(frames)}")
    fields = read_header(frames[0], MAX_REPLY_BYTES)
    if fields.get("v") != VERSION or not isinstance(fields.get("ok"), bool):
        raise ProtocolError("reply without version or ok")
    return fields


def reply_frames(request_id: str | None, **fields: Any) -> list[bytes]:
    header = encode_header({"id": request_id, **fields})
    if len(header) > MAX_REPLY_BYTES:  # a peer would refuse it: an error reply instead
        raise ProtocolError(f"the reply would be {len(header)} bytes; at most {MAX_REPLY_BYTES}")
    return [header]


def float32_numbers(values: Sequence[float] | np.ndarray) -> list[float]:
    """float32 ``values`` as Python floats that JSON writes in their shortest float32 form.

    ``0.1`` rather than float64's ``0.10000000149011612``: about half the characters. Each is
    checked to read back, as a float64 rounded to float32, to the same float32; the rare one
    that would not (a decimal on a float32 rounding boundary) keeps its float64 form, which
    always does.
    """
    exact = np.asarray(values, dtype=np.float32)
    short = [float(str(value)) for value in exact]  # numpy writes a float32's shortest unique decimal
    same = np.asarray(short, dtype=np.float64).astype(np.float32) == exact
    return [number if kept else float(value) for number, kept, value in zip(short, same, exact)]


def read_detections(value: Any) -> np.ndarray:
    """A reply's ``detections`` as an (n, 6) float64 array of COCO results rows ``x, y, w, h,
    score, category_id``, the five numbers read through float32 as the server wrote them;
    :class:`ProtocolError` for anything but a list of at most ``MAX_DETECTIONS`` such rows."""
    if not isinstance(value, list) or len(value) > MAX_DETECTIONS:
        raise ProtocolError(f"detections must be a list of at most {MAX_DETECTIONS} rows")
    for row in value:
        if not (isinstance(row, list) and len(row) == 6
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
                and isinstance(row[5], int) and 0 <= row[5] < 1 << 31 and row[2] >= 0 and row[3] >= 0):
            raise ProtocolError("a detection must be [x, y, w, h, score, category_id]: six numbers, w and h "
                                "at least 0, an integer category id")
    rows = np.asarray(value, dtype=np.float64).reshape(len(value), 6)
    rows[:, :5] = rows[:, :5].astype(np.float32)
    return rows
