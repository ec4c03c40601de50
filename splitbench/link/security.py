"""Who may talk to ``splitbench serve``: CURVE key pairs and the loopback rule.

ZeroMQ's CURVE mechanism (CurveZMQ: Curve25519 key exchange, every frame encrypted and
authenticated) runs under the socket: a peer that does not complete the handshake with the
right keys never produces a message. Keys live in ZeroMQ's certificate files (the format
``zmq.auth`` reads and ``curve_keygen`` writes)::

    KEYS/server.key          the server's public key: give it to every client (link --server-key)
    KEYS/server.key_secret   the server's key pair: stays with the server (serve --auth KEYS)
    KEYS/client.key_secret   a client's key pair (link --client-key)
    KEYS/clients/*.key       the public keys of the clients the server accepts

``serve --auth KEYS`` with a ``clients/`` folder accepts only the clients listed there;
``serve --auth FILE`` (a secret key file) accepts any client that knows the server's public
key. A server on a non-loopback address without ``--auth`` is refused unless asked for.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from splitbench import provenance
from splitbench.errors import SplitbenchError

SERVER_PUBLIC, SERVER_SECRET = "server.key", "server.key_secret"
CLIENT_PUBLIC, CLIENT_SECRET = "client.key", "client.key_secret"
CLIENTS = "clients"


@dataclass(frozen=True)
class KeyPair:
    public: bytes  # Z85, 40 characters
    secret: bytes


@dataclass(frozen=True)
class ServerKeys:
    pair: KeyPair
    clients: Path | None  # folder of accepted client public keys; None: any client with the server's key


@dataclass(frozen=True)
class ClientKeys:
    server_public: bytes
    pair: KeyPair


def check_curve() -> None:
    if not zmq.has("curve"):
        raise SplitbenchError("this libzmq was built without CURVE security; --auth and --server-key need it")


KEY_FILES = (SERVER_PUBLIC, SERVER_SECRET, CLIENT_PUBLIC, CLIENT_SECRET, f"{CLIENTS}/{CLIENT_PUBLIC}")


def check_key_folder(folder: Path) -> None:
    """Refuse a ``--make-keys`` folder that is a file or already holds keys (they are never overwritten)."""
    check_curve()
    if folder.exists() and not folder.is_dir():
        raise SplitbenchError(f"--make-keys {folder} is a file, not a folder")
    if existing := [name for name in KEY_FILES if (folder / name).exists()]:
        raise SplitbenchError(f"--make-keys {folder} already holds {existing[0]}; keys are never overwritten")


def make_keys(folder: Path) -> list[Path]:
    """A server key pair, a client key pair and the client's public key under ``clients/``: files 0600."""
    check_key_folder(folder)
    created = not folder.exists()
    try:
        (folder / CLIENTS).mkdir(parents=True, exist_ok=True, mode=0o700)
        if created:
            folder.chmod(0o700)
        written = []
        for base in ("server", "client"):
            pair = KeyPair(*zmq.curve_keypair())
            written.append(_write_key(folder / f"{base}.key", pair.public))
            written.append(_write_key(folder / f"{base}.key_secret", pair.public, pair.secret))
            if base == "client":
                written.append(_write_key(folder / CLIENTS / CLIENT_PUBLIC, pair.public))
    except OSError as error:
        raise SplitbenchError(f"--make-keys {folder}: {error.strerror or error}") from None
    return written


def _write_key(path: Path, public: bytes, secret: bytes | None = None) -> Path:
    """A ZeroMQ certificate file, created 0600 (never readable by others, not even for a moment)."""
    kind = "Secret" if secret else "Public"
    lines = [f"#   ZeroMQ CURVE {kind} Certificate (splitbench serve --make-keys)", "metadata", "curve",
             f'    public-key = "{public.decode()}"']
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write("\n".join(lines) + "\n")
    return path


def _read_key(path: Path, option: str, secret: bool) -> KeyPair:
    """The key pair (``secret``) or public key in a certificate file; one line for anything else."""
    if not path.is_file():
        raise SplitbenchError(f"{option} {path}: no such key file")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as error:
        raise SplitbenchError(f"{option} {path}: not a ZeroMQ CURVE key file ({error})") from None
    if secret and secret_key is None:
        raise SplitbenchError(f"{option} {path} holds a public key only; give the .key_secret file")
    try:
        if len(public) != 40 or (secret_key is not None and zmq.curve_public(secret_key) != public):
            raise ValueError
    except (ValueError, zmq.ZMQError):
        raise SplitbenchError(f"{option} {path}: its keys are not a valid CURVE key pair (40 Z85 characters)") from None
    if secret and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        provenance.warn(f"{option} {path} can be read by other users (mode {stat.S_IMODE(path.stat().st_mode):o}); "
                        f"chmod 600 it")
    return KeyPair(public, secret_key or b"")


def server_keys(path: Path) -> ServerKeys:
    """``serve --auth``: a keys folder (``server.key_secret``, optional ``clients/``) or a secret key file."""
    check_curve()
    if path.is_dir():
        if not (path / SERVER_SECRET).is_file():
            raise SplitbenchError(f"--auth {path}: no {SERVER_SECRET} in this folder "
                                  f"(make keys with: splitbench serve --make-keys {path})")
        clients = path / CLIENTS
        if clients.is_dir() and not any(clients.glob("*.key")):
            raise SplitbenchError(f"--auth {path}: {clients} lists no client keys (*.key), so nobody could connect")
        return ServerKeys(_read_key(path / SERVER_SECRET, "--auth", secret=True), clients if clients.is_dir() else None)
    return ServerKeys(_read_key(path, "--auth", secret=True), None)


def client_keys(server_key: Path, client_key: Path | None) -> ClientKeys:
    """``link --server-key`` and ``--client-key`` (without one: a fresh key pair, for servers that list no clients)."""
    check_curve()
    pair = _read_key(client_key, "--client-key", secret=True) if client_key else KeyPair(*zmq.curve_keypair())
    return ClientKeys(_read_key(server_key, "--server-key", secret=False).public, pair)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address, a name, ``*`` or an interface) can only be reached from this machine."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except (socket.gaierror, UnicodeError):
        return False  # "*", an interface name, or nothing this machine resolves: assume reachable
    return bool(addresses) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses)


def check_bind(host: str, authenticated: bool, insecure: bool) -> None:
    """Refuse a server reachable from other machines that anybody could use, unless ``--insecure-bind``."""
    if authenticated or is_loopback(host):
        return
    if not insecure:
        raise SplitbenchError(f"--host {host} is reachable from other machines and --auth is not given: anyone "
                              f"there could use this server. Give --auth KEYS (splitbench serve --make-keys KEYS), "
                              f"or --insecure-bind to serve without authentication")
    provenance.warn(f"--host {host} without --auth (--insecure-bind): anyone who reaches this port can send requests")
