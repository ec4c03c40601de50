"""sha256 of image files, remembered per file so that a rerun reads only the files that changed.

Caches key on what the images hold, so every byte is hashed once; hashing the 50 000 files of
CIFAR-10's training split takes seconds (``benchmarks/bench_fingerprint.py``), a ``stat``
each a fraction of one. The digest is kept beside the file's path, inode, size, mtime and
ctime (as git's index does), under ``cache/file-hashes/``. A file written in place
and given back its mtime (``touch -d``, ``cp -p``, an unpacked archive) still gets a new
ctime, which no user can set, so it is hashed again.

The store is one file per folder of images, replaced atomically: two runs that hash at once
lose at most each other's additions, which costs a rehash, never a wrong digest.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from splitbench.errors import SplitbenchError

# The default --cache of every command: the hashes live beside the caches they key.
HASH_CACHE = Path("cache") / "file-hashes"
# A file changed within this many seconds of being hashed could change again within the same
# timestamp tick and look unchanged: such digests are used but not stored (git's "racily clean").
_SETTLE_S = 2.0
_CHUNK = 1 << 20


@dataclass
class Digests:
    """The sha256 of each file, in order, and the new ones :meth:`remember` writes to the store."""

    values: list[str]
    store: Path | None = None
    entries: dict[str, tuple[str, str]] = field(default_factory=dict)  # the store's, with the new ones

    def remember(self) -> None:
        """Write the new digests to the store (once), so the next run reads only what changed.

        A separate step: a check before any work (``--dry-run`` included) hashes without writing.
        """
        if self.store is not None:
            _write_store(self.store, self.entries)
            self.store = None


def content_digests(paths: Iterable[str], folder: Path | None = None) -> Digests:
    """sha256 of each file in ``paths`` (in order), reading only files not seen unchanged before.

    ``folder`` holds the remembered digests (default :data:`HASH_CACHE`); where it cannot be
    written, the digests are computed all the same and forgotten.
    """
    cwd = os.getcwd()
    absolute = [os.path.join(cwd, path) for path in paths]  # a relative path names another file elsewhere
    if not absolute:
        return Digests([])
    store = _store_path(folder or HASH_CACHE, absolute)
    known = _read_store(store)
    digests, fresh = [], {}
    settled = time.time_ns() - _SETTLE_S * 1e9
    for path in absolute:
        info = _stat(path)
        key = f"{info.st_ino} {info.st_size} {info.st_mtime_ns} {info.st_ctime_ns}"
        cached = known.get(path)
        if cached is not None and cached[0] == key:
            digests.append(cached[1])
            continue
        digests.append(_sha256(path))
        if max(info.st_mtime_ns, info.st_ctime_ns) < settled:
            fresh[path] = (key, digests[-1])
    return Digests(digests, store, {**known, **fresh}) if fresh else Digests(digests)


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)  # follows a symlink: the digest is the target's
    except OSError:
        raise SplitbenchError(f"missing image: {path}") from None


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:  # hashlib.file_digest would need Python 3.11
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except OSError as error:
        raise SplitbenchError(f"cannot read image {path} ({error.strerror or error})") from None
    return digest.hexdigest()


def _store_path(folder: Path, paths: list[str]) -> Path:
    """One store per folder of images (their common folder), so a run loads only its own entries.

    The common folder of all paths is that of the first and the last in sorted order.
    """
    common = os.path.commonpath([os.path.dirname(min(paths)), os.path.dirname(max(paths))])
    return folder / f"{hashlib.sha256(common.encode()).hexdigest()[:24]}.txt"


def _read_store(store: Path) -> dict[str, tuple[str, str]]:
    """``path -> (stat key, digest)``; an unreadable or damaged store is ignored (everything is rehashed).

    Lines are ``path NUL stat-key NUL digest``: NUL is the one byte no path holds.
    """
    try:
        text = store.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    known = {}
    for line in text.splitlines():
        fields = line.split("\0")
        if len(fields) == 3 and len(fields[2]) == 64:
            known[fields[0]] = (fields[1], fields[2])
    return known


def _write_store(store: Path, entries: dict[str, tuple[str, str]]) -> None:
    from splitbench.results import atomic_open  # results imports pandas: only when a store is written

    lines = [f"{path}\0{key}\0{digest}\n" for path, (key, digest) in entries.items() if "\n" not in path]
    try:
        with atomic_open(store) as handle:
            handle.writelines(lines)
    except OSError:
        pass  # a read-only cache folder: the digests were computed, they are only not remembered
