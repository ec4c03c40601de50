"""Writing results: CSV + Markdown + JSON sidecar (+ plots), each file replaced atomically.

A reader never sees a half-written table: every file is written to a temporary file in
the same directory and moved into place with ``os.replace``, which is atomic on POSIX.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

import pandas as pd


def _file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


@contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; move it onto ``path`` on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode) as handle:
            yield handle
        # mkstemp makes the file private (0600); results are meant to be read by others.
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> Path:
    with atomic_open(path) as handle:
        handle.write(text)
    return path


def write_json(path: Path, payload: Any) -> Path:
    return write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def write_csv(path: Path, table: pd.DataFrame) -> Path:
    return write_text(path, table.to_csv(index=False, lineterminator="\n"))


def markdown_table(table: pd.DataFrame, floatfmt: str = "g") -> str:
    return table.to_markdown(index=False, floatfmt=floatfmt)


def warm_up_plotting() -> threading.Thread:
    """Import matplotlib in a background thread.

    Its import takes about a second; started before building a model (whose weight
    initialisation releases the GIL), it costs a command almost nothing.
    """

    def load() -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot  # noqa: F401

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    _WARM_UPS.append(thread)
    return thread


_WARM_UPS: list[threading.Thread] = []


def finish_warm_ups(timeout: float = 10.0) -> None:
    """Wait for background imports before the interpreter exits.

    A daemon thread stopped in the middle of an import can print to stderr at shutdown,
    which would break the promise of a one-line error (or a quiet ``--dry-run``).
    """
    while _WARM_UPS:
        _WARM_UPS.pop().join(timeout)


def save_figure(path: Path, draw: Callable[[Any], None], size: tuple[float, float] = (10, 4.5)) -> Path:
    """Draw with ``draw(axes)`` on a fresh figure and save it as PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and CI
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=size, layout="constrained")
    try:
        draw(axes)
        with atomic_open(path, "wb") as handle:
            figure.savefig(handle, format="png", dpi=120)
    finally:
        plt.close(figure)
    return path


def write_result(
    out_dir: Path,
    name: str,
    table: pd.DataFrame,
    provenance: dict[str, Any],
    markdown: str,
) -> list[Path]:
    """``name``.csv, ``name``.md and ``name``.json in ``out_dir``."""
    return [
        write_csv(out_dir / f"{name}.csv", table),
        write_text(out_dir / f"{name}.md", markdown.rstrip() + "\n"),
        write_json(out_dir / f"{name}.json", provenance),
    ]
