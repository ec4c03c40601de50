"""The one store of finished sweep points, for every study that sweeps (codec, prune, group, rd).

A sweep's points live in one folder per configuration, named by :func:`content_key` of what
determines them (weights, data by content, recipe, and the study's version). A point is a JSON
row (``NAME.json``) or, where the study keeps per-image figures, arrays (``NAME.npz``). Points
are replaced whole (:func:`~splitbench.results.atomic_open`): runs sharing a cache may both
measure one, and either's file is complete, so readers need no lock. A missing or damaged point
reads as ``None`` and is measured again; a full disk ends in one line naming the file.

Every key is built the same way: a sha256 of the sorted JSON of the fields plus ``version``,
which a study bumps when what its points hold changes. A longer sweep reuses a shorter one's
points because the swept values (ratios, λ, codecs) name the points, not the folder.

The loop that runs the missing points, locally or on Ray, is :func:`splitbench.executors.run_points`.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from splitbench.results import atomic_open, disk_errors, locked, read_cached, write_json


def content_key(fields: Mapping[str, Any], *, version: int, digits: int = 16) -> str:
    """A hex digest of ``fields`` and ``version`` (sorted JSON; values JSON cannot hold as text)."""
    text = json.dumps({"version": version, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:digits]


@dataclass(frozen=True)
class PointStore:
    """Finished points of one sweep configuration, in ``directory``."""

    directory: Path

    @classmethod
    def keyed(cls, root: Path, identity: Mapping[str, Any], *, version: int, digits: int = 16) -> PointStore:
        """The store under ``root`` named by :func:`content_key` of ``identity``."""
        return cls(Path(root) / content_key(identity, version=version, digits=digits))

    def file(self, name: str, suffix: str = ".json") -> Path:
        return self.directory / f"{name}{suffix}"

    def get(self, name: str) -> Any | None:
        """The point's JSON, or None where it is missing or damaged."""
        return read_cached(self.file(name))

    def put(self, name: str, row: Any) -> None:
        write_json(self.file(name), row)

    def get_arrays(self, name: str) -> dict[str, np.ndarray] | None:
        """The point's arrays (never unpickled), or None where they are missing or damaged."""
        path = self.file(name, ".npz")
        try:
            with np.load(path, allow_pickle=False) as stored:
                return {key: stored[key] for key in stored.files}
        except (FileNotFoundError, ValueError, OSError, zipfile.BadZipFile, EOFError):
            return None

    def put_arrays(self, name: str, arrays: Mapping[str, Any]) -> None:
        path = self.file(name, ".npz")
        with disk_errors(path.parent):
            path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(path, "wb") as handle:
            np.savez(handle, **arrays)

    @contextmanager
    def measuring(self, name: str, what: str) -> Iterator[None]:
        """Hold the point's lock while it is looked up and measured: a concurrent run on the same
        cache waits for this one's result instead of measuring the point again."""
        with disk_errors(self.directory):
            self.directory.mkdir(parents=True, exist_ok=True)
        with locked(self.file(name, ".lock"), f"waiting for another run measuring {what} in {self.directory}"):
            yield
