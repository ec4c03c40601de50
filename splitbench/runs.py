"""A user's runs: one command with its fully resolved options, and the folder it wrote.

Every command run from the command line is a :class:`RunConfig`: the command's name and the
value of every option after parsing, defaults included. Its :meth:`~RunConfig.key` (a hash of
the options that can change a result) names the run's folder, so two configurations never share
one:

    runs/<command>/<model>-<cut>-<key[:8]>/        (the root: $SPLITBENCH_RUNS, else ./runs)

The folder holds the configuration as ``config.yaml`` beside the results. Given back with
``--config FILE`` it fills the same options, and so the same key; ``splitbench rerun DIR`` does
that into the same folder, where the command's caches return the cached points.

The committed reproductions under ``reports/`` are written only when a command is told to
(``--out reports/...``, as ``reports/reproduce.sh`` does). :func:`check_folder` refuses an
``--out`` that holds the results of another configuration, so none is overwritten silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from splitbench.errors import SplitbenchError

RUNS_ENV = "SPLITBENCH_RUNS"
CONFIG_NAME = "config.yaml"
CONFIG_VERSION = 1

# Options that decide where and how fast a run goes, not what it measures: they stay out of
# the key, so the same configuration with more workers or another cache folder is the same run.
OPERATIONAL = frozenset({"out", "dry_run", "config", "cache", "workers", "loader_workers"})


@dataclass(frozen=True)
class RunConfig:
    """One command and its resolved options (parameter name -> plain value)."""

    command: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", {name: _plain(value) for name, value in self.options.items()})

    def key(self) -> str:
        """A hash of the command and every option that can change its results (hex, 16 digits)."""
        measured = {name: value for name, value in self.options.items() if name not in OPERATIONAL}
        text = json.dumps({"command": self.command, "options": measured}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def differences(self, other: RunConfig) -> dict[str, tuple[Any, Any]]:
        """Options (the command too) whose values differ, operational ones aside: name -> (ours, theirs)."""
        names = sorted((set(self.options) | set(other.options)) - OPERATIONAL)
        found = {name: (self.options.get(name), other.options.get(name)) for name in names
                 if self.options.get(name) != other.options.get(name)}
        if self.command != other.command:
            found = {"command": (self.command, other.command), **found}
        return found

    def to_yaml(self) -> str:
        import yaml

        document = {"splitbench": CONFIG_VERSION, "command": self.command, "key": self.key(),
                    "options": self.options}
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)

    @classmethod
    def read(cls, path: Path) -> RunConfig:
        """The configuration in ``path`` (a run's ``config.yaml``, or the run folder itself)."""
        import yaml

        path = Path(path)
        if path.is_dir():
            path = path / CONFIG_NAME
        try:
            document = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise SplitbenchError(f"no run configuration at {path}") from None
        except (OSError, UnicodeDecodeError) as error:
            raise SplitbenchError(f"cannot read {path} ({getattr(error, 'strerror', None) or error})") from None
        except yaml.YAMLError as error:
            raise SplitbenchError(f"{path} is not valid YAML ({str(error).splitlines()[0]})") from None
        if not isinstance(document, dict) or not isinstance(document.get("command"), str) \
                or not isinstance(document.get("options", {}), dict):
            raise SplitbenchError(f"{path} is not a splitbench run configuration (needs `command:` and `options:`)")
        return cls(document["command"], document.get("options") or {})


def _plain(value: Any) -> Any:
    """A YAML- and JSON-friendly form of an option value (paths become strings)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


# --- the run being executed ---------------------------------------------------------------------

_CURRENT: ContextVar[RunConfig | None] = ContextVar("splitbench_run", default=None)


def current() -> RunConfig | None:
    """The configuration of the command running in this context (None: called from Python)."""
    return _CURRENT.get()


@contextmanager
def running(config: RunConfig) -> Iterator[RunConfig]:
    """Make ``config`` the :func:`current` run for the duration of the block."""
    token = _CURRENT.set(config)
    try:
        yield config
    finally:
        _CURRENT.reset(token)


def runs_root() -> Path:
    """Where runs go by default: ``$SPLITBENCH_RUNS``, else ``runs/`` in the working folder."""
    return Path(os.environ.get(RUNS_ENV) or "runs").expanduser()


def folder_name(label: str) -> str:
    """``label`` as one folder name (model names such as ``timm:x`` or ``nets/my.py:build``)."""
    return re.sub(r"[^\w.-]+", "-", label).strip("-") or "run"


def run_folder(command: str, label: str) -> Path:
    """``<runs root>/<command>/<label>-<key[:8]>``: the current run's default folder."""
    config = current()
    suffix = f"-{config.key()[:8]}" if config is not None else ""
    return runs_root() / command / f"{folder_name(label)}{suffix}"


def check_folder(out: Path) -> None:
    """Refuse ``out`` if it holds the results of another configuration than the current run's.

    A folder with no ``config.yaml`` (empty, new, or written before configurations were
    recorded) is accepted.
    """
    config = current()
    recorded = Path(out) / CONFIG_NAME
    if config is None or not recorded.is_file():
        return
    other = RunConfig.read(recorded)
    if other.key() == config.key():
        return
    changed = ", ".join(_describe_change(name, ours, theirs)
                        for name, (ours, theirs) in list(config.differences(other).items())[:3])
    raise SplitbenchError(f"{out} holds the results of another configuration ({changed}); "
                          "choose another --out, or delete that folder first")


def _describe_change(name: str, ours: Any, theirs: Any) -> str:
    option = name if name == "command" else f"--{name.replace('_', '-')}"
    return f"{option} {_shown(theirs)} there, {_shown(ours)} now"


# --- honest headers -----------------------------------------------------------------------------


# Commands whose figures are accuracies of the model's weights (profile and split count, train
# and group train their own).
WEIGHT_DEPENDENT = frozenset({"eval", "codec", "rd", "serve", "link", "plan", "prune"})


def caveats(provenance: dict[str, Any] | None = None) -> list[str]:
    """What a reader must know before trusting a run's figures: random weights, a subset of the
    data, a non-default preprocessing. Read from the current run's options, its recorded
    warnings and ``provenance`` (the result's sidecar, where there is one)."""
    from splitbench.provenance import recorded_warnings

    config = current()
    if config is None:
        return []
    options = config.options
    found = []
    weights = (provenance or {}).get("weights")
    source = weights.get("source") if isinstance(weights, dict) else None
    random = source == "none" or (source is None and options.get("weights") == "none") \
        or any(warning.startswith("random weights") for warning in recorded_warnings())
    if random and config.command in WEIGHT_DEPENDENT:
        found.append("random weights: accuracy figures are not the model's")
    for option, what in (("limit", "images"), ("test_limit", "test images"), ("train_limit", "training images")):
        if options.get(option):
            found.append(f"a subset, --{option.replace('_', '-')} {options[option]} {what}")
    for option in ("mean", "std"):
        if options.get(option):
            found.append(f"non-default normalisation --{option} {options[option]}")
    if options.get("preprocess") not in (None, "seed"):
        found.append(f"preprocessing --preprocess {options['preprocess']}")
    return found


def caveat_header(provenance: dict[str, Any] | None = None) -> str:
    """The Markdown note that heads a result with :func:`caveats` ('' where there are none)."""
    found = caveats(provenance)
    return "> **Note:** " + "; ".join(found) + ".\n\n" if found else ""


# --- listing and comparing runs -----------------------------------------------------------------

# Columns that are results, not settings: compared side by side, never joined on.
METRICS = ("top1", "top5", "map", "map50", "top1_drop", "top5_drop", "map_drop", "map50_drop", "ratio_percent",
           "bpp", "bpp_actual", "bpp_estimated", "feature_bytes", "jpeg_bytes", "elements", "macs", "params",
           "head_macs", "tail_macs", "transfer_bytes_fp32", "transfer_bytes_uint8", "reduction_percent",
           "head_ms", "tail_ms", "encode_ms", "decode_ms", "quantize_ms", "cum_macs", "test_top1", "train_top1",
           "train_loss", "agreement", "kept_channels", "param_bytes", "macs_executed", "latency_ms",
           "predicted_ms", "measured_ms", "bytes", "cpu_ms_1000", "cpu_ms_1000_b100", "cpu_ms_1000_b1",
           "wall_s", "eval_s", "train_s", "step_s", "epoch_s", "images_per_s", "detections", "cum_elements",
           # measured, though not numbers
           "output_shape", "transfer_shape", "smaller_than_input", "valid_cut", "kept_per_block")
# Columns that describe how a row was measured rather than which setting it is.
_CIRCUMSTANCES = ("images", "test_images", "train_images", "timing_images", "settings", "threads", "backend",
                  "seed", "wall_train_s", "warmup_s", "uncompressed_top1", "jpeg_bytes")


@dataclass(frozen=True)
class Run:
    """A finished run: its folder, configuration and main table."""

    folder: Path
    config: RunConfig
    table_path: Path | None
    finished: str | None
    weights: str | None
    data: str | None = None

    @property
    def label(self) -> str:
        return self.folder.name

    def table(self) -> pd.DataFrame:
        from splitbench.results import read_table

        if self.table_path is None:
            raise SplitbenchError(f"{self.folder} holds no result table")
        return read_table(self.table_path)


def open_run(folder: Path) -> Run:
    """The run in ``folder`` (it must hold a ``config.yaml``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SplitbenchError(f"no run folder at {folder}")
    config = RunConfig.read(folder)
    table = _main_table(folder, config.command)
    finished = weights = data = None
    if table is not None:
        sidecar = _sidecar(table)
        finished = sidecar.get("finished_utc")
        described, manifest = sidecar.get("weights"), sidecar.get("data")
        weights = described.get("source") if isinstance(described, dict) else None
        data = manifest.get("dataset") if isinstance(manifest, dict) else None
    return Run(folder, config, table, finished, weights, data)


def _main_table(folder: Path, command: str) -> Path | None:
    named = folder / f"{command}.csv"
    if named.is_file():
        return named
    tables = sorted(path for path in folder.glob("*.csv") if path.with_suffix(".json").is_file())
    return tables[0] if tables else None


def _sidecar(table: Path) -> dict[str, Any]:
    try:
        return json.loads(table.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}


def find_runs(root: Path | None = None) -> list[Run]:
    """Every run under ``root`` (default :func:`runs_root`), newest first."""
    root = Path(root) if root is not None else runs_root()
    if not root.is_dir():
        return []
    found = []
    for config in root.rglob(CONFIG_NAME):
        if any(part.startswith(".") for part in config.relative_to(root).parts):
            continue  # staging folders of a run in progress
        try:
            found.append(open_run(config.parent))
        except SplitbenchError:
            continue  # a damaged folder is not a run; `runs compare` on it names the problem
    return sorted(found, key=lambda run: (run.finished or "", str(run.folder)), reverse=True)


def key_figures(run: Run) -> str:
    """One short text of a run's headline figures (best top-1 or mAP, total GMACs, rows)."""
    try:
        table = run.table()
    except SplitbenchError:
        return "no table"
    parts = []
    for column, label in (("top1", "top-1"), ("map", "mAP"), ("test_top1", "test top-1")):
        if column in table and table[column].notna().any():
            parts.append(f"{label} {table[column].max():.4g}" + (" best" if len(table) > 1 else ""))
            break
    if "cum_macs" in table:
        parts.append(f"{table['cum_macs'].max() / 1e9:.4g} GMACs")
    if len(table) > 1:
        parts.append(f"{len(table)} rows")
    return ", ".join(parts)


def runs_table(runs: Iterable[Run], root: Path | None = None) -> pd.DataFrame:
    """The listing of ``splitbench runs``: one row per run (``run`` relative to ``root``)."""
    rows = []
    for run in runs:
        options = run.config.options
        limit = options.get("limit") or options.get("test_limit")
        weights = run.weights or options.get("weights") or ""
        rows.append({
            "run": _relative_to(run.folder, root),
            "model": options.get("model") or options.get("model_option") or "",
            "cut": options.get("at") or "",
            "data": options.get("dataset") or options.get("test_data") or run.data or "",
            "weights": Path(weights).name if "/" in weights else weights,
            "limit": "" if limit is None else str(limit),
            "date": (run.finished or "")[5:16].replace("T", " "),
            "figures": key_figures(run),
        })
    return pd.DataFrame(rows, columns=["run", "model", "cut", "data", "weights", "limit", "date", "figures"])


def _relative_to(folder: Path, root: Path | None) -> str:
    try:
        return str(folder.relative_to(root)) if root is not None else str(folder)
    except ValueError:
        return str(folder)


@dataclass(frozen=True)
class Comparison:
    """Two or more runs side by side: the settings that differ, and the metrics per setting."""

    settings: pd.DataFrame  # option, then one column per run
    metrics: pd.DataFrame  # the join columns, then <metric>[<run>] per run
    keys: list[str]
    compared: list[str]


def compare(runs: list[Run]) -> Comparison:
    """Join the runs' tables on their setting columns and put the same metrics side by side."""
    if len(runs) < 2:
        raise SplitbenchError("runs compare needs two or more run folders")
    commands = {run.config.command for run in runs}
    if len(commands) > 1:
        raise SplitbenchError(f"runs of different commands can't be compared: {', '.join(sorted(commands))}")
    labels = _labels(runs)
    settings = _settings(runs, labels)
    tables = [run.table() for run in runs]
    common = set.intersection(*(set(table.columns) for table in tables))
    metrics = [column for column in tables[0].columns if column in common and column in METRICS]
    keys = [column for column in tables[0].columns if column in common and column not in METRICS
            and column not in _CIRCUMSTANCES and _varies_or_shared(tables, column)]
    if not metrics:
        raise SplitbenchError("the runs' tables share no metric column to compare")
    joined = None
    for label, table in zip(labels, tables):
        part = table[keys + metrics].rename(columns={metric: f"{metric}[{label}]" for metric in metrics})
        part = part.drop_duplicates(subset=keys) if keys else part.head(1)
        joined = part if joined is None else (joined.merge(part, on=keys, how="outer") if keys
                                                 else pd.concat([joined, part], axis=1))
    ordered = keys + [f"{metric}[{label}]" for metric in metrics for label in labels]
    return Comparison(settings, joined[ordered].reset_index(drop=True), keys, metrics)


def _labels(runs: list[Run]) -> list[str]:
    """Short, distinct names for the runs: A, B, C, ... (the folders are in the settings table)."""
    return [chr(ord("A") + index) if index < 26 else f"R{index}" for index in range(len(runs))]


def _settings(runs: list[Run], labels: list[str]) -> pd.DataFrame:
    names = sorted({name for run in runs[1:] for name in runs[0].config.differences(run.config)})
    rows = [{"setting": "folder", **{label: str(run.folder) for label, run in zip(labels, runs)}}]
    if len({run.weights for run in runs}) > 1:
        rows.append({"setting": "weights (resolved)", **{label: run.weights for label, run in zip(labels, runs)}})
    for name in names:
        rows.append({"setting": f"--{name.replace('_', '-')}",
                     **{label: _shown(run.config.options.get(name)) for label, run in zip(labels, runs)}})
    return pd.DataFrame(rows)


def _shown(value: Any) -> str:
    return "(default)" if value is None else str(value)


def _varies_or_shared(tables: list[pd.DataFrame], column: str) -> bool:
    # A column that is constant within each table (the model's name, the image count of a
    # --limit run) is a setting of the run, named in the settings table, not a key of the row:
    # joining on it would keep two runs' rows apart.
    return any(table[column].nunique(dropna=False) > 1 for table in tables)


def plot_comparison(comparison: Comparison, runs: list[Run], path: Path) -> Path | None:
    """Where a curve says more than a table: rate against accuracy per run (codec, rd)."""
    from splitbench.results import save_figure

    tables = [run.table() for run in runs]
    for x, y in (("ratio_percent", "top1"), ("ratio_percent", "map"), ("bpp_actual", "top1"), ("bpp", "top1"),
                 ("params", "top1"), ("macs", "top1")):
        if all(x in table and y in table for table in tables):
            break
    else:
        return None
    labels = _labels(runs)

    def draw(axes: Any) -> None:
        for label, run, table in zip(labels, runs, tables):
            points = table[[x, y]].dropna().sort_values(x)
            axes.plot(points[x], points[y], marker="o", linestyle="", label=f"{label}: {run.label}")
        axes.set_xlabel(x)
        axes.set_ylabel(y)
        axes.set_title(f"{runs[0].config.command}: {y} against {x}")
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize="small")

    return save_figure(path, draw, size=(7, 4.5))
