"""Sweeps of whole points (prune ratios, rd λs, group counts) on one executor interface.

The same small sweep runs in this process and on a real local Ray cluster with two workers;
the rows must agree. A Ray worker runs torch on one thread where this process uses every
core, so training sums in another order: trained figures (rd's losses, FLGC's learned
connections and their accuracy) are compared with a stated tolerance, everything else exactly.
"""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import SHARED_DATA, needs_shared_data, needs_shared_weights, shared_weights
from splitbench.executors import InProcess, PointSweep, RayExecutor, Task, run_points

ray = pytest.importorskip("ray", reason="the ray extra is not installed")

MOBILENET = "mobilenet_v2-imagenet-int8dequant.pth"
RESNET20 = "cifar-resnet20-12fca82f.th"
REFERENCE_VIT = Path(__file__).resolve().parents[1] / "reports" / "checkpoints" / "vit-cifar10-fp16.safetensors"


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster with two workers for every test here (it takes seconds to start)."""
    assert not ray.is_initialized()
    executor = RayExecutor(None, 2)
    yield executor
    executor.shutdown()
    assert not ray.is_initialized()


def _powers(executor: Executor, keys: list[int], cache: dict[int, int], log: list[int]) -> list[int]:
    return run_points(executor, keys, PointSweep(
        cached=cache.get, task=lambda k: Task(divmod, (2 ** k, k)) if k else Task(divmod, (1, 0)),
        store=cache.__setitem__, on_result=lambda k, result: log.append(k)))


@pytest.mark.parametrize("where", ["in_process", "ray"])
def test_points_come_back_in_order_from_cache_or_task_and_a_failure_keeps_the_rest(where: str, request) -> None:
    executor = InProcess() if where == "in_process" else request.getfixturevalue("cluster")
    cache: dict[int, tuple[int, int]] = {3: (-1, -1)}  # a finished point is read, not recomputed
    log: list[int] = []
    assert _powers(executor, [5, 3, 4], cache, log) == [(6, 2), (-1, -1), (4, 0)]
    assert sorted(log) == [3, 4, 5] and log[0] == 3  # cached points are reported first
    assert cache == {3: (-1, -1), 5: (6, 2), 4: (4, 0)}
    with pytest.raises(ZeroDivisionError):  # point 0 fails; 6 finished beside it is still stored
        _powers(executor, [0, 6] if where == "ray" else [6, 0], cache, [])
    assert cache[6] == (10, 4)


@needs_shared_data
def test_a_prune_sweep_on_ray_gives_the_local_rows(cluster: RayExecutor, tmp_path: Path) -> None:
    from splitbench.pruning.sweep import SweepSettings, load_sweep_data, prune_store, run_sweep
    from splitbench.zoo import load_model

    vit = load_model("vit", str(REFERENCE_VIT))
    data, provenance = load_sweep_data(vit.spec, SHARED_DATA, proxy=8, test_limit=100)
    settings = SweepSettings(methods=("weight", "stability"), scopes=("uniform",), ratios=(0.5,), proxy=8,
                             timing_repeats=0)

    def sweep(executor: Executor, name: str) -> pd.DataFrame:
        cache = prune_store(tmp_path / name, vit.weights.sha256, settings, 100, provenance)
        return pd.DataFrame(run_sweep(vit.model, data, settings, cache, executor=executor).rows)

    local, remote = sweep(InProcess(), "local"), sweep(cluster, "ray")
    pd.testing.assert_frame_equal(local, remote)
    assert list(local["method"]) == ["original", "weight", "stability"]
    assert (local["params"].iloc[1:] == 9_524_842 - 6 * 256 * 2048).all() and local["top1"].iloc[0] > 40


@needs_shared_data
@needs_shared_weights
def test_an_rd_sweep_on_ray_gives_the_local_rows_within_thread_order_tolerance(cluster: RayExecutor,
                                                                              tmp_path: Path) -> None:
    from splitbench.compression.data import prepare
    from splitbench.compression.sweep import RDRequest, run_rd
    from splitbench.compression.train import RDSettings
    from splitbench.zoo import load_model

    model = load_model("mobilenet_v2", str(shared_weights(MOBILENET)))
    train = prepare(model, "bottleneck3", "imagenet-sample-1000", root=SHARED_DATA, limit=16, cache=tmp_path,
                    progress=False)
    test = prepare(model, "bottleneck3", "imagenet-val-1300", root=SHARED_DATA, limit=8, cache=tmp_path,
                   progress=False)

    def sweep(executor: Executor, name: str) -> pd.DataFrame:
        request = RDRequest(model, "bottleneck3", ["none"], [0.5, 4.0], [0.0], 8, "factorized",
                            RDSettings(epochs=1, warmup_epochs=1, batch_size=8), train, test, tmp_path / name,
                            torch.device("cpu"), progress=False)
        return run_rd(request, executor)

    local, remote = sweep(InProcess(), "local"), sweep(cluster, "ray")
    assert list(remote["lambda"]) == [0.5, 4.0]
    exact = ["variant", "alpha", "lambda", "codec_params", "bpp_actual", "top1", "top5", "agreement", "train_images"]
    pd.testing.assert_frame_equal(local[exact], remote[exact])
    trained = ["bpp_estimated", "train_bpp", "train_task_loss"]
    pd.testing.assert_frame_equal(local[trained], remote[trained], rtol=1e-4)
    assert (local["bpp_actual"] > 0).all()


@needs_shared_data
@needs_shared_weights
def test_a_group_sweep_on_ray_gives_the_local_rows(cluster: RayExecutor, tmp_path: Path) -> None:
    from splitbench.grouping.sweep import GroupSettings, group_store, load_group_data, run_group_sweep
    from splitbench.zoo import load_model

    dense = load_model("cifar_resnet20", str(shared_weights(RESNET20)))
    data, provenance = load_group_data(dense.spec, SHARED_DATA, 128, 100)
    settings = GroupSettings(groups=(4,), duplicate_tops=(0, 3), epochs=1, timing_repeats=0)

    def sweep(executor: Executor, name: str) -> pd.DataFrame:
        cache = group_store(tmp_path / name, dense.weights.sha256, settings, data, provenance)
        rows = run_group_sweep(dense, data, settings, cache, torch.device("cpu"), executor=executor)
        return pd.DataFrame(rows).drop(columns=["train_s"])  # wall time

    local, remote = sweep(InProcess(), "local"), sweep(cluster, "ray")
    pd.testing.assert_frame_equal(local.iloc[:1], remote.iloc[:1])  # the dense model: nothing trained
    assert [(r.groups, r.duplicate_top) for r in remote.itertuples()] == [(1, 0), (4, 0), (4, 3)]
    # The learned assignment follows training, which rounds differently on one thread (a Ray
    # worker) than on two: a connection may flip, so trained figures agree within tolerance.
    trained_local, trained_remote = local.iloc[1:], remote.iloc[1:]
    assert (abs(trained_remote["top1"] - trained_local["top1"]) <= 2.0).all()
    pd.testing.assert_series_equal(trained_local["params"], trained_remote["params"], rtol=0.01, check_dtype=False)
    assert local["params"].iloc[1] < local["params"].iloc[0] and local["top1"].iloc[0] > 80


@pytest.mark.parametrize("command", [["prune", "vit"], ["rd", "mobilenet_v2", "--weights", "none"],
                                     ["group", "cifar_resnet20", "--weights", "none"]])
def test_every_point_sweep_takes_an_executor_and_names_the_valid_ones(command: list[str], tmp_path: Path) -> None:
    from conftest import run_in_process

    done = run_in_process(*command, "--executor", "dusk", "--out", str(tmp_path / "out"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr == "error: unknown executor 'dusk'; valid executors: local, ray\n"
    planned = run_in_process(*command, "--executor", "ray", "--dry-run", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert planned.returncode == 0, planned.stderr
    assert "executor" in planned.stdout and "ray" in planned.stdout
    # Points side by side on Ray would time each other: CPU-time columns are left empty (rd has none).
    assert ("CPU-time columns left empty on Ray" in planned.stdout) == (command[0] != "rd")
