"""The edge's connection to ``splitbench serve``: one DEALER socket, requests matched by id (CURVE with keys)."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import zmq

from splitbench.errors import SplitbenchError
from splitbench.link.protocol import ProtocolError, parse_reply, request_frames, zmtp_frame_bytes
from splitbench.link.security import ClientKeys


class LinkClient:
    """Requests to the server at ``endpoint`` (``tcp://HOST:PORT``), one at a time per client."""

    def __init__(self, endpoint: str, timeout_s: float = 60.0, keys: ClientKeys | None = None) -> None:
        if not endpoint.startswith("tcp://"):
            endpoint = f"tcp://{endpoint}"
        self.endpoint, self.timeout_s, self.secure = endpoint, timeout_s, keys is not None
        self._context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        if keys is not None:  # CURVE: the server must prove it holds the secret half of server_public
            self._socket.curve_serverkey = keys.server_public
            self._socket.curve_publickey = keys.pair.public
            self._socket.curve_secretkey = keys.pair.secret
        try:
            self._socket.connect(endpoint)
        except zmq.ZMQError as error:
            self._socket.close()
            raise SplitbenchError(f"--server {endpoint}: {error}") from None
        self._ids = (f"{os.getpid()}-{id(self):x}-{n}" for n in itertools.count())
        self.last_reply_bytes = 0  # the last reply's frame as it came off the socket, ZMTP prefix included

    def __enter__(self) -> LinkClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._socket.close(linger=0)

    def prepare(self, op: str, payload: bytes = b"", **fields: Any) -> tuple[str, list[bytes]]:
        """A request's id and frames, not sent yet (a shaper may hold them first)."""
        request_id = next(self._ids)
        return request_id, request_frames(op, request_id, payload, **fields)

    def send_frames(self, frames: list[bytes]) -> None:
        self._socket.send_multipart(frames, copy=False)

    def send(self, op: str, payload: bytes = b"", **fields: Any) -> tuple[str, bytes]:
        """Send one request; its id and header bytes (for counting what went on the wire)."""
        request_id, frames = self.prepare(op, payload, **fields)
        self.send_frames(frames)
        return request_id, frames[0]

    def receive(self, request_id: str, timeout_s: float | None = None) -> dict[str, Any]:
        """The reply to ``request_id``; replies to earlier, abandoned requests are skipped."""
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._socket.poll(int(remaining * 1000) + 1):
                raise SplitbenchError(f"no reply from {self.endpoint} within "
                                      f"{self.timeout_s if timeout_s is None else timeout_s:g} s")
            frames = self._socket.recv_multipart()
            try:
                reply = parse_reply(frames)
            except ProtocolError as error:
                raise SplitbenchError(f"{self.endpoint} sent a malformed reply: {error}") from None
            if reply.get("id") == request_id:
                self.last_reply_bytes = len(frames[0]) + zmtp_frame_bytes(len(frames[0]))
                return reply

    def request(self, op: str, payload: bytes = b"", timeout_s: float | None = None, **fields: Any) -> dict[str, Any]:
        request_id, _ = self.send(op, payload, **fields)
        reply = self.receive(request_id, timeout_s)
        if not reply["ok"]:
            raise SplitbenchError(f"{self.endpoint} refused the request: {reply.get('error')}")
        return reply

    def info(self, timeout_s: float = 10.0) -> dict[str, Any]:
        return self.request("info", timeout_s=timeout_s)

    def check(self, expected: dict[str, Any], timeout_s: float = 10.0) -> dict[str, Any]:
        """The server's info, if every field in ``expected`` matches it; else one line naming the differences."""
        try:
            info = self.info(timeout_s)
        except SplitbenchError as error:
            hint = ("; a server that does not know this client's key, or a key that is not the server's, "
                    "never answers" if self.secure else "")
            raise SplitbenchError(f"no splitbench server answers at {self.endpoint} ({error}{hint})") from None
        different = [f"{key}: server {info.get(key)!r}, here {value!r}" for key, value in expected.items()
                     if info.get(key) != value]
        if different:
            raise SplitbenchError(f"the server at {self.endpoint} serves another setup ({'; '.join(different)})")
        return info
