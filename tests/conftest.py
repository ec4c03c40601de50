"""Shared test helpers: where ../shared is, and markers that skip cleanly without it."""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPLITBENCH_SHARED", REPO.parent / "shared"))
SHARED_DATA = Path(os.environ.get("SPLITBENCH_DATA", SHARED / "data"))
SHARED_WEIGHTS = SHARED / "weights"

needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data at {SHARED_DATA}")
needs_shared_weights = pytest.mark.skipif(
    not SHARED_WEIGHTS.is_dir(), reason=f"no shared weights at {SHARED_WEIGHTS}"
)

warnings.filterwarnings("ignore", category=FutureWarning)


def shared_weights(name: str) -> Path:
    return SHARED_WEIGHTS / name


@functools.lru_cache(maxsize=None)
def zoo(name: str):
    """A zoo model with random weights, built once per test session (do not modify it)."""
    from splitbench.zoo import load_model

    return load_model(name)


def run_in_process(*args: str, cwd: Path | None = None):
    """``splitbench ARGS`` in this process, as a finished process (exit code, stdout, stderr).

    A subprocess pays seconds of torch start-up per call; bad-input cases, which fail before
    any work, need none of that isolation.
    """
    import contextlib
    import io
    import subprocess

    from splitbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    before = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 0
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(["splitbench", *args], code, out.getvalue(), err.getvalue())
