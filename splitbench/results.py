"""Writing results: CSV + Markdown + JSON sidecar (+ plots), published whole or not at all.

A reader never sees a half-written file: every file is written to a temporary file in the
same directory and moved into place with ``os.replace``, which is atomic on POSIX.

A command's files form one set. Inside :func:`result_set` everything written under ``--out``
goes to a staging folder inside it (``.splitbench-staging-*``) and is moved into place only
when all of it has been written, the JSON sidecar last; an error, an interrupt or a full disk
before that leaves the folder as it was. A lock file (``.splitbench.lock``) keeps two runs
into the same folder from interleaving their files.

The sidecar records each table of its set: sha256 of the CSV's bytes, row count and columns
(``tables``). :func:`read_table` checks them, so a damaged committed table is refused instead
of read.

Numbers in tables: ``inf`` is refused as a bug (a division by zero is not a measurement). A
missing value (NaN) is written as an empty cell and shown as ``n/a`` in Markdown; in a numeric
column the caller has not declared ``optional`` it also gets a ``warning:`` line, recorded in
the sidecar, since a number was promised there.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Collection
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterator

import numpy as np
import pandas as pd

from splitbench.errors import SplitbenchError

LOCK_NAME = ".splitbench.lock"
STAGING_PREFIX = ".splitbench-staging-"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def _file_mode() -> int:
    """The mode ``open()`` would give a new file: 0o666 less the process umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()


class DiskFull(SplitbenchError):
    """No space left (or quota exhausted) while writing ``path``."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no space left on the device for {path}; nothing half-written was kept")
        self.path = path


@contextmanager
def disk_errors(path: Path) -> Iterator[None]:
    """Turn a full disk while writing ``path`` into :class:`DiskFull` (one line, not a traceback)."""
    try:
        yield
    except OSError as error:
        if error.errno in _DISK_FULL:
            raise DiskFull(path) from None
        raise


@contextmanager
def locked(path: Path, waiting: str) -> Iterator[None]:
    """Hold the lock file ``path``; if another process holds it, say ``note: waiting``, then wait."""
    from filelock import FileLock, Timeout

    lock = FileLock(path)
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(f"note: {waiting}", file=sys.stderr)
            lock.acquire()
    except OSError as error:
        raise SplitbenchError(f"cannot lock {path} ({error.strerror})") from None
    try:
        yield
    finally:
        lock.release()


@contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary sibling of ``path`` for writing; move it onto ``path`` on success.

    Inside a :func:`result_set` of a folder above ``path``, the file goes to its staging folder.
    """
    target, _ = _staged(path)
    with disk_errors(path):
        target.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, mode) as handle:
                yield handle
            # mkstemp makes the file private (0600); results are meant to be read by others.
            os.chmod(temporary, _FILE_MODE)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def write_text(path: Path, text: str) -> Path:
    with atomic_open(path) as handle:
        handle.write(text)
    return path


def write_json(path: Path, payload: Any) -> Path:
    return write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def read_cached(path: Path) -> Any | None:
    """A JSON file a cache wrote, or None where it is missing or damaged (the entry is computed
    again). Caches need no lock to read: their files are only ever replaced whole."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def write_csv(path: Path, table: pd.DataFrame, optional: Collection[str] = ()) -> Path:
    """``table`` as CSV. ``optional``: the numeric columns where a missing value is expected.

    Inside a result set, the sidecar records the file's sha256, rows and columns.
    """
    _check_numbers(path, table, optional)
    content = table.to_csv(index=False, lineterminator="\n").encode("utf-8")  # the bytes the record hashes
    _, stage = _staged(path)
    if stage is not None:
        stage.tables[_relative(path, stage)] = table_record(content)
    with atomic_open(path, "wb") as handle:
        handle.write(content)
    return path


def table_record(content: bytes) -> dict[str, Any]:
    """What a sidecar records of one CSV table: row count, columns, sha256 of its bytes."""
    header, rows = _parsed(content)
    return {"rows": len(rows), "columns": header, "sha256": hashlib.sha256(content).hexdigest()}


def _check_numbers(path: Path, table: pd.DataFrame, optional: Collection[str]) -> None:
    """Refuse inf; warn of a missing value in a numeric column that promises one (see above)."""
    name = path.name
    numeric = table.select_dtypes(include="number")
    for column in numeric.columns:
        values = numeric[column].to_numpy(dtype=float, na_value=np.nan)
        infinite = np.flatnonzero(np.isinf(values))
        if len(infinite):
            raise ValueError(f"{name}: column {column} holds inf in {len(infinite)} row(s) (first: row {infinite[0]}); "
                             "a result table promises finite numbers")
        missing = int(np.isnan(values).sum())
        if missing and column not in optional:
            from splitbench.provenance import warn

            message = f"{name}: column {column} has no value in {missing} of {len(values)} row(s)"
            warn(message)
            _, stage = _staged(path)
            if stage is not None:  # the sidecar was collected before the table was written
                stage.warnings.append(message)


def markdown_table(table: pd.DataFrame, floatfmt: str = "g") -> str:
    """``table`` in Markdown; a missing value reads ``n/a``, not ``nan``.

    Numbers are written with ``floatfmt``, except in a column where it would mix notations
    (``1.205e+04`` beside ``5032``, ``7.7e-05`` beside ``0.001682``): there every number gets
    the same notation, plain with one number of decimals for the column, or scientific for
    all of it where its values span six orders of magnitude or more. Digits are those that
    ``floatfmt`` keeps; the CSV keeps every digit.
    """
    import re

    digits = int(match.group(1) or 6) if (match := re.fullmatch(r"\.?(\d*)g", floatfmt)) else None

    def column_format(values: pd.Series) -> str:
        numbers = [float(v) for v in values if isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
                   and np.isfinite(v)]
        written = [format(v, floatfmt) for v in numbers]
        if digits is None or len({"e" in w for w in written}) < 2:
            return floatfmt  # one notation already
        kept = [float(format(v, f".{digits}g")) for v in numbers]  # the digits floatfmt keeps
        sizes = [abs(v) for v in kept if v != 0]
        if max(sizes) / min(sizes) >= 1e6:
            mantissa = max(len(format(v, f".{digits - 1}e").split("e")[0].rstrip("0").partition(".")[2]) for v in kept)
            return f".{mantissa}e"
        decimals = max(len(np.format_float_positional(v, trim="-").partition(".")[2]) for v in kept)
        return f".{decimals}f"

    shown = table.astype(object).where(table.notna(), None)
    formats = [column_format(shown.iloc[:, i]) for i in range(shown.shape[1])]
    return shown.to_markdown(index=False, floatfmt=formats if formats else floatfmt, missingval="n/a")


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

    from splitbench.runs import caveats

    figure, axes = plt.subplots(figsize=size, layout="constrained")
    try:
        draw(axes)
        found = caveats()
        if found:  # a plot travels alone: it says what its figures are not
            title = getattr(figure, "_suptitle", None)  # keep a title the plot set itself
            note = "Note: " + "; ".join(found)
            figure.suptitle(f"{title.get_text()}\n{note}" if title is not None else note, fontsize=8,
                            color="firebrick")
        with atomic_open(path, "wb") as handle:
            figure.savefig(handle, format="png", dpi=120)
    finally:
        plt.close(figure)
    return path


def plain_log_ticks(axis: Any) -> None:
    """Label a log-scaled axis (``axes.xaxis`` or ``axes.yaxis``) 3, 10, 30, 100 instead of 3×10⁰, 10¹, 3×10¹, 10².

    Labelled ticks at 1 and 3 per decade (1, 2, 3, 5 where the axis spans about a decade, every
    integer under half of one, 1 per decade over four decades); the other ticks stay unlabelled.
    """
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    class PlainLogLocator(LogLocator):
        def tick_values(self, vmin: float, vmax: float) -> Any:
            low, high = sorted((vmin, vmax))
            decades = math.log10(high / low) if low > 0 else 10.0
            self.set_params(subs=tuple(range(1, 10)) if decades < 0.5 else (1, 2, 3, 5) if decades < 1.2
                            else (1, 3) if decades < 4 else (1,))
            return super().tick_values(vmin, vmax)

    def plain(value: float, _position: Any = None) -> str:
        if value <= 0:
            return ""
        if value >= 1 and float(value).is_integer():
            return f"{int(value):,}"
        return np.format_float_positional(float(f"{value:.6g}"), trim="-")

    axis.set_major_locator(PlainLogLocator(base=10))
    axis.set_major_formatter(FuncFormatter(plain))
    axis.set_minor_formatter(NullFormatter())


# --- result sets --------------------------------------------------------------------------------


@dataclass
class _Stage:
    """One result set being written: where it goes, where it is staged, what it recorded."""

    out: Path  # resolved
    folder: Path
    tables: dict[str, dict[str, Any]] = field(default_factory=dict)  # relative CSV path -> record
    sidecars: dict[str, dict[str, Any]] = field(default_factory=dict)  # relative JSON path -> provenance
    warnings: list[str] = field(default_factory=list)


_STAGES: ContextVar[tuple[_Stage, ...]] = ContextVar("splitbench_result_sets", default=())


def _enclosing(path: Path) -> _Stage | None:
    """The innermost result set being written whose folder is ``path`` or holds it."""
    stages = _STAGES.get()
    resolved = path.resolve() if stages else path
    return next((stage for stage in reversed(stages) if resolved.is_relative_to(stage.out)), None)


def _staged(path: Path) -> tuple[Path, _Stage | None]:
    """Where the file ``path`` is written now: in the staging folder of its result set, if any."""
    stage = _enclosing(path)
    if stage is None:
        return path, None
    return stage.folder / path.resolve().relative_to(stage.out), stage


def _relative(path: Path, stage: _Stage) -> str:
    return path.resolve().relative_to(stage.out).as_posix()


@contextmanager
def result_set(out_dir: Path) -> Iterator[None]:
    """Publish every file written under ``out_dir`` in this block together, or none of them.

    Nested sets of the same folder are one set (the outer one publishes).
    """
    if _enclosing(out_dir) is not None:
        yield
        return
    with disk_errors(out_dir):
        out_dir.mkdir(parents=True, exist_ok=True)
    with locked(out_dir / LOCK_NAME, f"waiting for another run writing into {out_dir}"):
        with disk_errors(out_dir):
            for stale in out_dir.glob(f"{STAGING_PREFIX}*"):  # left by a run that was killed (SIGKILL, OOM)
                shutil.rmtree(stale, ignore_errors=True)
            stage = _Stage(out_dir.resolve(), Path(tempfile.mkdtemp(dir=out_dir, prefix=STAGING_PREFIX)))
        token = _STAGES.set((*_STAGES.get(), stage))
        try:
            try:
                yield
                _write_sidecars(stage)
            except DiskFull as error:  # nothing has been moved into out_dir yet
                raise SplitbenchError(f"no space left on the device for {out_dir}: this run's results were not "
                                      f"published ({error.path.name} did not fit); the folder holds what it held "
                                      "before") from None
            _publish(stage)
        finally:
            _STAGES.reset(token)
            shutil.rmtree(stage.folder, ignore_errors=True)


def _write_sidecars(stage: _Stage) -> None:
    """Each sidecar with the records of the tables written beside it, and the set's warnings."""
    for name, provenance in stage.sidecars.items():
        folder = Path(name).parent
        tables = {Path(t).name: record for t, record in sorted(stage.tables.items()) if Path(t).parent == folder}
        known = list(provenance.get("warnings", []))
        payload = {**provenance, "warnings": known + [w for w in stage.warnings if w not in known], "tables": tables}
        with disk_errors(stage.out / name):
            target = stage.folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")
            os.chmod(target, _FILE_MODE)


def _publish(stage: _Stage) -> None:
    """Move the staged files into place, sidecars last: a reader that sees the new sidecar sees
    the tables it describes. Ctrl-C and SIGTERM wait until the last file is in place."""
    files = [p for p in stage.folder.rglob("*") if p.is_file() and not _is_temporary(p)]
    files.sort(key=lambda p: (p.relative_to(stage.folder).as_posix() in stage.sidecars, p.as_posix()))
    with _signals_deferred(), disk_errors(stage.out):
        for path in files:  # every folder first: a failing mkdir then leaves the old set untouched
            (stage.out / path.relative_to(stage.folder)).parent.mkdir(parents=True, exist_ok=True)
        for path in files:
            os.replace(path, stage.out / path.relative_to(stage.folder))


def _is_temporary(path: Path) -> bool:
    """An ``atomic_open`` temporary (``.NAME.XXXX.tmp``) that was never moved into place."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them to the usual handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    names = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda received, _frame: caught.append(received)) for number in names}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)  # None: set from C
        for number in caught:
            signal.raise_signal(number)


def write_result(
    out_dir: Path,
    name: str,
    table: pd.DataFrame,
    provenance: dict[str, Any],
    markdown: str,
    optional: Collection[str] = (),
) -> list[Path]:
    """``name``.csv, ``name``.md and ``name``.json in ``out_dir``, published as one set (with the
    other files of an enclosing :func:`result_set`). ``optional``: see :func:`write_csv`."""
    from splitbench import runs

    sidecar = out_dir / f"{name}.json"
    run = runs.current()
    with result_set(out_dir):
        _, stage = _staged(sidecar)
        assert stage is not None
        stage.sidecars[_relative(sidecar, stage)] = provenance  # written when the set is complete
        if run is not None:  # the command line's run: its configuration, to list, compare and re-run it
            write_text(out_dir / runs.CONFIG_NAME, run.to_yaml())
        return [
            write_csv(out_dir / f"{name}.csv", table, optional),
            write_text(out_dir / f"{name}.md", _with_caveats(markdown, provenance).rstrip() + "\n"),
            sidecar,
        ]


def _with_caveats(markdown: str, provenance: dict[str, Any]) -> str:
    """``markdown`` with the run's caveats (random weights, a subset, ...) under its first heading."""
    from splitbench.runs import caveat_header

    header = caveat_header(provenance)
    if not header:
        return markdown
    lines = markdown.split("\n")
    if lines and lines[0].startswith("#"):
        return "\n".join([lines[0], "", header.rstrip("\n"), *lines[1:]])
    return header + markdown


# --- reading results back -----------------------------------------------------------------------


def _parsed(content: bytes) -> tuple[list[str], list[list[str]]]:
    records = list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))
    return (records[0] if records else []), records[1:]


def read_sidecar(path: Path) -> dict[str, Any]:
    """A JSON sidecar; a damaged one is refused in one line."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SplitbenchError(f"{path} is damaged: not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise SplitbenchError(f"{path} is damaged: not a JSON object")
    return payload


def recorded_table(path: Path) -> tuple[Path, dict[str, Any]] | None:
    """The sidecar beside ``path`` that records it, and its record."""
    for sidecar in sorted(path.parent.glob("*.json")):
        tables = read_sidecar(sidecar).get("tables")
        if isinstance(tables, dict) and path.name in tables:
            return sidecar, tables[path.name]
    return None


def check_table(path: Path, record: tuple[Path, dict[str, Any]] | None = None) -> bytes:
    """The bytes of the CSV ``path``, checked: whole rows, and what its sidecar records."""
    if not path.is_file():
        where = f" (recorded in {record[0]})" if record else ""
        raise SplitbenchError(f"{path} is missing{where}")
    content = path.read_bytes()
    _check_shape(path, content)
    record = record or recorded_table(path)
    if record is not None:
        _check_record(path, content, *record)
    return content


def _check_shape(path: Path, content: bytes) -> None:
    try:
        header, rows = _parsed(content)
    except (UnicodeDecodeError, csv.Error) as error:
        raise SplitbenchError(f"{path} is damaged: not a CSV table ({error})") from None
    if not header:
        raise SplitbenchError(f"{path} is damaged: empty")
    if not content.endswith(b"\n"):
        raise SplitbenchError(f"{path} is damaged: it ends inside a row (no final newline); truncated?")
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise SplitbenchError(f"{path} is damaged: line {number} has {len(row)} fields, the header {len(header)}")


def _check_record(path: Path, content: bytes, sidecar: Path, record: dict[str, Any]) -> None:
    now = table_record(content)
    if record.get("columns") is not None and now["columns"] != record["columns"]:
        raise SplitbenchError(f"{path} is damaged: its columns are not the {len(record['columns'])} recorded in {sidecar}")
    if record.get("rows") is not None and now["rows"] != record["rows"]:
        raise SplitbenchError(f"{path} is damaged: {now['rows']} rows, {sidecar} records {record['rows']}")
    if record.get("sha256") is not None and now["sha256"] != record["sha256"]:
        raise SplitbenchError(f"{path} is damaged: its sha256 is not the one recorded in {sidecar}")


def read_table(path: Path) -> pd.DataFrame:
    """A committed CSV table, checked by :func:`check_table` before it is read."""
    return pd.read_csv(io.BytesIO(check_table(path)))


def verify_tables(root: Path) -> int:
    """Check every table that a sidecar under ``root`` records; how many were checked."""
    checked = 0
    for sidecar in sorted(root.rglob("*.json")):
        if any(part.startswith(".") for part in sidecar.relative_to(root).parts):
            continue
        tables = read_sidecar(sidecar).get("tables")
        for name, record in (tables.items() if isinstance(tables, dict) else []):
            check_table(sidecar.parent / name, (sidecar, record))
            checked += 1
    return checked
