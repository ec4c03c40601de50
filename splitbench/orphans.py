"""Processes that end with their parent: no worker outlives the sweep that started it."""

from __future__ import annotations

import os
import signal
import sys


PARENT_ENV = "SPLITBENCH_PARENT_PID"


def die_with_parent(sig: int = signal.SIGKILL, expected_parent: int | None = None) -> None:
    """Ask Linux to send ``sig`` to this process when its parent ends (``prctl(PR_SET_PDEATHSIG)``).

    The kernel delivers it, so it works whatever this process is busy with. A parent that
    ended *before* the request (while this process was still importing, say) sends nothing:
    so the parent is checked afterwards against ``expected_parent`` (default: the parent
    seen now, which catches only an end during the call). Elsewhere than Linux this does
    nothing.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    parent = os.getppid() if expected_parent is None else expected_parent
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sig, 0, 0, 0)
    if os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)


def announce_parent() -> None:
    """Tell the processes this one starts from now on (they inherit the environment) who their parent is."""
    os.environ[PARENT_ENV] = str(os.getpid())


def expected_parent() -> int | None:
    """The parent announced by :func:`announce_parent`, if any."""
    value = os.environ.get(PARENT_ENV)
    return int(value) if value and value.isdigit() else None
