"""``splitbench serve``: the server half of a split model, on a ZeroMQ ROUTER socket.

One thread owns the socket (ZeroMQ sockets are not thread-safe): it receives, checks the
framing and header, answers ``info`` at once and hands ``infer`` requests to a pool of
worker threads (torch releases the GIL in its kernels). Workers send their replies back to
the socket's thread over an in-process PUSH/PULL pair, which wakes its poll at once.

Whatever a message makes happen while it is read, parsed or answered ends as an error reply
to that message (one catch around each message's handling, on the socket's thread and in
the workers), and the server goes on; a frame larger than the limit makes ZeroMQ drop that
peer's connection (``MAXMSGSIZE``); a peer that disconnects mid-message never produces a
message at all. With :class:`~splitbench.link.security.ServerKeys` the socket speaks CURVE:
a peer without the right keys never gets past the handshake. SIGTERM and SIGINT stop taking
requests, finish and answer those in flight, and return.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

from splitbench.errors import SplitbenchError
from splitbench.link.endpoints import Receiver
from splitbench.link.protocol import (MAX_HEADER_BYTES, MAX_ID_CHARS, ProtocolError, Request, parse_request, read_header,
                                      reply_frames)
from splitbench.link.security import ServerKeys

POLL_MS = 100  # how often the loop looks at the stop flag while idle
MAX_ERROR_CHARS = 300  # an error reply names the problem; it never echoes a peer's bytes at length
_REPLIES = "inproc://splitbench-replies"


@dataclass
class ServerStats:
    """Counts of what the server did (updated under ``lock`` from worker threads)."""

    answered: int = 0
    refused: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the log
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, outcome: str, error: Exception | None = None) -> None:
        with self.lock:
            setattr(self, outcome, getattr(self, outcome) + 1)
            if error is not None and len(self.errors) < 20:
                text = str(error)[:MAX_ERROR_CHARS]
                self.errors.append(f"{time.strftime('%H:%M:%S')} {type(error).__name__}: {text}")
                print(f"serve: {outcome} a request: {text}", file=sys.stderr, flush=True)


class SplitServer:
    """The receiver of a split model behind ``tcp://HOST:PORT`` (port 0: any free one)."""

    def __init__(self, receiver: Receiver, weights_sha256: str | None, *, host: str = "127.0.0.1", port: int = 0,
                 workers: int = 1, max_message_bytes: int = 16 << 20, keys: ServerKeys | None = None) -> None:
        self.receiver, self.weights_sha256 = receiver, weights_sha256
        self.workers, self.max_message_bytes = workers, max_message_bytes
        self.stats = ServerStats()
        self._context = zmq.Context()
        self._authenticator: ThreadAuthenticator | None = None
        self._front = self._context.socket(zmq.ROUTER)
        self._front.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)  # per frame: a bigger one drops the peer
        self._front.setsockopt(zmq.LINGER, 1000)
        if keys is not None:
            self._secure(keys)
        try:
            self._front.bind(f"tcp://{host}:{port or '*'}")
        except zmq.ZMQError as error:
            self.close()
            raise SplitbenchError(f"cannot listen on {host}:{port}: {error}") from None
        self.endpoint = self._front.getsockopt_string(zmq.LAST_ENDPOINT)
        self._replies = self._context.socket(zmq.PULL)
        self._replies.bind(_REPLIES)
        self._local = threading.local()
        self._stop = threading.Event()

    def _secure(self, keys: ServerKeys) -> None:
        """CURVE on the front socket; with a clients folder, a ZAP handler that admits only those keys."""
        if keys.clients is not None:
            self._authenticator = ThreadAuthenticator(self._context)
            self._authenticator.start()
            self._authenticator.configure_curve(domain="*", location=str(keys.clients))
        self._front.curve_secretkey = keys.pair.secret
        self._front.curve_publickey = keys.pair.public
        self._front.curve_server = True

    def close(self) -> None:
        if self._authenticator is not None:
            self._authenticator.stop()
        self._context.destroy(linger=1000)

    def info(self) -> dict[str, Any]:
        return {**self.receiver.info(self.weights_sha256), "max_message_bytes": self.max_message_bytes,
                "max_header_bytes": MAX_HEADER_BYTES, "workers": self.workers}

    def stop(self) -> None:
        """Stop taking requests; :meth:`serve` returns once those in flight are answered."""
        self._stop.set()

    def serve(self, handle_signals: bool = True) -> ServerStats:
        """Answer requests until :meth:`stop`, SIGTERM or SIGINT."""
        previous = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for number in (signal.SIGTERM, signal.SIGINT):
                previous[number] = signal.signal(number, lambda *_: self._stop.set())
        poller = zmq.Poller()
        poller.register(self._front, zmq.POLLIN)
        poller.register(self._replies, zmq.POLLIN)
        in_flight = 0
        try:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="splitbench-serve") as pool:
                while not (self._stop.is_set() and in_flight == 0):
                    events = dict(poller.poll(POLL_MS))
                    if self._replies in events:
                        in_flight -= self._forward_replies()
                    if self._front in events and not self._stop.is_set():
                        in_flight += self._take_requests(pool)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
            self.close()
        return self.stats

    def _take_requests(self, pool: ThreadPoolExecutor) -> int:
        started = 0
        for frames in _waiting(self._front):
            try:
                started += self._take(frames, pool)
            except Exception as error:  # whatever a message provokes ends as its error reply; the server goes on
                self._refuse(frames, error)
        return started

    def _take(self, frames: list[bytes], pool: ThreadPoolExecutor) -> int:
        """Answer ``info`` now or hand ``infer`` to a worker: the number of requests started."""
        identity, body = frames[0], frames[1:]
        request = parse_request(body)
        if request.op == "info":
            self._front.send_multipart([identity, *reply_frames(request.id, ok=True, **self.info())])
            return 0
        pool.submit(self._answer, identity, request)
        return 1

    def _forward_replies(self) -> int:
        forwarded = 0
        for frames in _waiting(self._replies):
            self._front.send_multipart(frames)  # a peer gone meanwhile: ROUTER drops it
            forwarded += 1
        return forwarded

    def _refuse(self, frames: list[bytes], error: Exception) -> None:
        """The error reply to a message that could not be taken (the id it claims, if readable)."""
        reply = self._error_reply(_claimed_id(frames[1:]), error)
        try:
            self._front.send_multipart([frames[0], *reply])
        except zmq.ZMQError:  # the peer is gone: nothing to tell
            pass

    def _error_reply(self, request_id: str | None, error: Exception) -> list[bytes]:
        """A refusal names the problem in the request; any other failure only its kind (no internals leak)."""
        if isinstance(error, ProtocolError):
            self.stats.count("refused", error)
            return reply_frames(request_id, ok=False, error=str(error)[:MAX_ERROR_CHARS])
        self.stats.count("failed", error)
        return reply_frames(request_id, ok=False, error=f"internal error: {type(error).__name__}")

    def _answer(self, identity: bytes, request: Request) -> None:
        """In a worker thread: compute, then hand the reply to the socket's thread."""
        try:
            reply = reply_frames(request.id, ok=True, **self.receiver.answer(request))
            self.stats.count("answered")
        except Exception as error:  # a bad payload, a bug or a library failure: this request fails, the server goes on
            reply = self._error_reply(request.id, error)
        if not hasattr(self._local, "push"):
            self._local.push = self._context.socket(zmq.PUSH)
            self._local.push.connect(_REPLIES)
        self._local.push.send_multipart([identity, *reply])


def _waiting(socket: zmq.Socket) -> Iterator[list[bytes]]:
    """The messages ``socket`` holds now, without blocking."""
    while True:
        try:
            yield socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return


def _claimed_id(body: list[bytes]) -> str | None:
    """The id a malformed request claims, if it can be read at all (so the peer can match the error)."""
    try:
        value = read_header(body[0]).get("id") if body else None
    except Exception:  # on the error path itself: nothing may escape from here
        return None
    return value if isinstance(value, str) and len(value) <= MAX_ID_CHARS else None
