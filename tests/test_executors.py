"""One executor interface behind the codec sweep: local processes or a real local Ray cluster."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import SHARED_DATA, needs_shared_data, needs_shared_weights, run_in_process, shared_weights
from splitbench.errors import SplitbenchError
from splitbench.executors import ExecutorSpec, InProcess, open_executor

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

MOBILENET = "mobilenet_v2-imagenet-int8dequant.pth"
SWEEP = ["mobilenet_v2", "--at", "bottleneck6", "--codec", "bpg", "--qp", "30,35,40", "--layout", "gray",
         "--dataset", "imagenet-val-1300", "--limit", "24", "--workers", "2"]
ROWS = ["codec", "param", "layout", "images", "feature_bytes", "top1", "top5"]


def test_executor_names_parse_and_bad_ones_end_in_one_line() -> None:
    assert ExecutorSpec.parse("local") == ExecutorSpec("local", None)
    assert ExecutorSpec.parse("ray:10.0.0.5:6379") == ExecutorSpec("ray", "10.0.0.5:6379")
    with pytest.raises(SplitbenchError, match=r"^unknown executor 'dask'; valid executors: local, ray$"):
        ExecutorSpec.parse("dask")
    with pytest.raises(SplitbenchError, match="^unknown executor 'rey'; did you mean ray"):
        ExecutorSpec.parse("rey")
    with pytest.raises(SplitbenchError, match="--executor local takes no address"):
        ExecutorSpec.parse("local:host")


def test_in_process_futures_carry_results_and_errors() -> None:
    with open_executor(ExecutorSpec(), 1) as executor:
        assert isinstance(executor, InProcess)
        assert executor.submit(pow, 2, 10).result() == 1024
        with pytest.raises(ZeroDivisionError):
            executor.submit(divmod, 1, 0).result()


def _sweep(tmp_path: Path, name: str, *extra: str) -> pd.DataFrame:
    done = run_in_process("codec", *SWEEP, "--weights", str(shared_weights(MOBILENET)), "--data", str(SHARED_DATA),
                          "--cache", str(tmp_path / f"cache-{name}"), "--out", str(tmp_path / name), *extra)
    assert done.returncode == 0, done.stderr
    return pd.read_csv(tmp_path / name / "codec.csv")[ROWS]


@needs_shared_data
@needs_shared_weights
def test_a_local_ray_cluster_gives_the_local_rows_even_when_a_worker_is_killed(tmp_path: Path) -> None:
    local = _sweep(tmp_path, "local")
    assert ray.is_initialized() is False
    killed: list[int] = []

    def kill_one_worker() -> None:  # a Ray worker process mid-sweep, as an OOM killer or a lost node would
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            for pid in _ray_task_workers():
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    remote = _sweep(tmp_path, "ray", "--executor", "ray")
    killer.join(5)
    assert killed, "no Ray worker ran a task"
    pd.testing.assert_frame_equal(local, remote)
    assert not ray.is_initialized()  # the sweep shut down the cluster it started


def _ray_task_workers() -> list[int]:
    """Ray worker processes that are running a splitbench task now (their title names the task)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if title.startswith(b"ray::run_task"):
                found.append(int(entry.name))
    return found


@needs_shared_data
def test_an_unreachable_ray_address_ends_in_one_line(tmp_path: Path) -> None:
    done = run_in_process("codec", "mobilenet_v2", "--weights", "none", "--data", str(SHARED_DATA), "--limit", "2",
                          "--codec", "bpg", "--qp", "35", "--executor", "ray:127.0.0.1:9",
                          "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("error: --executor ray:127.0.0.1:9: no Ray cluster there")
