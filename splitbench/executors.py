"""Where a sweep's independent tasks run: this machine's processes, or a Ray cluster.

Every executor is a :class:`concurrent.futures.Executor`: a sweep submits tasks (a module-level
function and picklable arguments) and reads the futures in the order it submitted them, so the
results land in the same caches and rows whichever executor ran them.

- ``local``: a process pool on this machine (``workers`` ≤ 1: in this process). Workers start
  from a forkserver and die with the sweep's process (:mod:`splitbench.orphans`).
- ``ray`` / ``ray:ADDRESS``: tasks go to Ray (``ray.init()`` starts a local cluster with
  ``workers`` CPUs; ``ray.init(address=ADDRESS)`` joins a running one). A task whose worker
  dies is run again by Ray (``max_retries``). Arguments travel through Ray's object store;
  paths inside them (cached head features) must name the same files on every node, so a
  multi-node cluster needs the cache on a shared file system (see the README).

Sweeps of whole points (a pruned model, an RD λ, an FLGC group count) go through
:func:`run_points`: each point comes from its cache or runs as one task, is stored as soon as
it finishes (in this process, so the cache lives where the sweep was started), and the results
come back in the points' order. Large inputs every task shares (a model, a data set) go through
:func:`shared` once instead of once per task.
"""

from __future__ import annotations

import importlib.machinery
import inspect
import multiprocessing
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from splitbench.checks import physical_cores, reachable
from splitbench.errors import SplitbenchError, unknown_name
from splitbench.orphans import announce_parent, die_with_parent, expected_parent

KINDS = ("local", "ray")
RAY_RETRIES = 3  # a task whose worker process dies runs again up to this many times


@dataclass(frozen=True)
class ExecutorSpec:
    """``local``, ``ray`` or ``ray:ADDRESS`` (the ``--executor`` option)."""

    kind: str = "local"
    address: str | None = None

    @classmethod
    def parse(cls, text: str) -> ExecutorSpec:
        kind, _, address = text.strip().partition(":")
        if kind not in KINDS:
            raise unknown_name("executor", kind, KINDS)
        if kind == "local" and address:
            raise SplitbenchError(f"--executor local takes no address, got '{text}'")
        if kind == "ray" and _ray() is None:
            raise SplitbenchError("--executor ray needs Ray on this machine: pip install 'splitbench[ray]'")
        spec = cls(kind, address or None)
        spec._check_reachable()
        return spec

    def _check_reachable(self) -> None:
        """A Ray address whose port does not answer fails now, not after the sweep's first stage
        (``ray.init`` itself retries for minutes before it gives up)."""
        if not self.address or self.address == "auto":
            return
        host, _, port = self.address.removeprefix("ray://").rpartition(":")
        if not host or not port.isdigit():
            raise SplitbenchError(f"--executor ray:{self.address}: an address is HOST:PORT (or auto)")
        if not reachable(host, int(port)):
            raise SplitbenchError(f"--executor ray:{self.address}: no Ray cluster there "
                                  f"(nothing answers on {host}:{port})")

    def __str__(self) -> str:
        return self.kind + (f":{self.address}" if self.address else "")


def open_executor(spec: ExecutorSpec, workers: int, *, import_main: bool = False) -> Executor:
    """The executor ``spec`` names, with ``workers`` processes where it starts them itself.

    Local workers do not import the caller's main module (an unguarded script would run again in
    each); ``import_main=True`` restores multiprocessing's way, for tasks defined in that script
    (which then needs its ``if __name__ == "__main__":`` guard)."""
    if spec.kind == "ray":
        return RayExecutor(spec.address, workers)
    if workers <= 1:
        return InProcess()
    # forkserver: workers never inherit this process's threads (torch's OpenMP pool, rich's
    # refresh thread), which fork could copy mid-lock; they start once per sweep and run no torch.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["splitbench.codecs._forkserver_preload"])
    announce_parent()  # the forkserver, started by this process, checks it is still its parent
    pool = ProcessPoolExecutor if import_main else _WorkerPool
    return pool(max_workers=workers, mp_context=context, initializer=_start_worker)


class _WorkerPool(ProcessPoolExecutor):
    """A process pool whose workers never run the caller's script again.

    multiprocessing prepares each worker by importing the parent's main module again (its file,
    or its module under ``python -m``, as ``__mp_main__``), so a script or notebook export that
    runs a sweep at top level, without an ``if __name__ == "__main__":`` guard, would start its
    sweep again in every worker. splitbench's tasks need nothing from the main module: while a
    worker starts, the main module names itself ``__main__`` by spec, which multiprocessing
    leaves alone. (Functions defined in the caller's script then cannot be sent to the workers:
    ``open_executor(..., import_main=True)`` keeps multiprocessing's behaviour for them.)
    """

    def _adjust_process_count(self) -> None:  # spawns the workers, on Python 3.10 as on 3.11+
        with _main_left_alone():
            super()._adjust_process_count()


_MAIN_SWAP = threading.Lock()  # one swap at a time: two pools starting workers in two threads


@contextmanager
def _main_left_alone() -> Iterator[None]:
    """``__main__`` named ``__main__`` by spec for the duration, so that a process started now does not re-run it."""
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if name == "__main__" or (name or "").endswith(".__main__") or (spec is None and not getattr(main, "__file__", None)):
        yield  # `python -m package` or an interactive session: multiprocessing re-runs nothing
        return
    with _MAIN_SWAP:
        main.__spec__ = importlib.machinery.ModuleSpec("__main__", None)
        try:
            yield
        finally:
            main.__spec__ = spec


def open_point_executor(spec: ExecutorSpec) -> Executor:
    """The executor of a sweep of whole points (prune, rd, group): ``local`` runs them one after
    another in this process, each using every core through torch's threads; a local Ray cluster
    gets one worker per core, each running a point on one thread."""
    return open_executor(spec, 1 if spec.kind == "local" else physical_cores())


def _start_worker() -> None:
    """Ctrl-C reaches the sweep's process, which stops cleanly; workers would each print a traceback.

    A worker also dies with its parent, the forkserver, which dies with the sweep's process.
    Without this, a sweep killed with -9 left the forkserver and its workers running forever:
    each holds the others alive (the forkserver lives while a worker does, and a worker's own
    end of its task queue never reports EOF).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(expected_parent=expected_parent())  # the forkserver, announced by its preload


class InProcess(Executor):
    """One worker: the same code path without processes (easier to debug and profile)."""

    slots = 1

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


class RayExecutor(Executor):
    """Tasks on a Ray cluster: a local one with ``workers`` CPUs, or the one at ``address``."""

    def __init__(self, address: str | None, workers: int) -> None:
        ray = _ray()
        if ray is None:
            raise SplitbenchError("--executor ray needs Ray on this machine: pip install 'splitbench[ray]'")
        self._ray = ray
        self._started_here = not ray.is_initialized()
        if self._started_here:
            try:
                if address:
                    ray.init(address=address, include_dashboard=False, configure_logging=False)
                else:
                    ray.init(num_cpus=max(1, workers), include_dashboard=False, configure_logging=False)
            except Exception as error:  # ConnectionError, TimeoutError, RuntimeError, ValueError: all say "unreachable"
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                raise SplitbenchError(f"--executor ray{':' + address if address else ''}: "
                                      f"no Ray cluster there ({first})") from None
        self._remote: dict[Callable[..., Any], Any] = {}

    @property
    def slots(self) -> int:
        """Tasks the cluster runs at once: one per CPU (each task asks for one)."""
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def share(self, value: Any) -> Any:
        """``value`` in the object store: tasks that take it as an argument read it from there."""
        return self._ray.put(value)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        if not inspect.isfunction(fn):  # Ray takes Python functions only; a builtin or a callable object rides along
            fn, args = _call, (fn, *args)
        remote = self._remote.get(fn)
        if remote is None:
            remote = self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(fn)
        return remote.remote(*args, **kwargs).future()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._started_here:
            self._ray.shutdown()


Key = TypeVar("Key")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Task:
    """One point's work: a module-level function and its arguments (picklable, or :func:`shared`)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass
class PointSweep(Generic[Key, Result]):
    """How a sweep finds, runs and keeps its points (see :func:`run_points`)."""

    cached: Callable[[Key], Result | None]  # a finished point's result, or None
    task: Callable[[Key], Task]  # the work that computes a missing one
    store: Callable[[Key, Result], None]  # keeps a result (called in this process, as it arrives)
    on_result: Callable[[Key, Result], None] = field(default=lambda key, result: None)  # progress


def run_points(executor: Executor, keys: Sequence[Key], sweep: PointSweep[Key, Result]) -> list[Result]:
    """Every key's result, in ``keys``' order: from the cache, or computed by a task on ``executor``.

    At most :func:`slots` tasks are in flight, so one in-process worker runs and stores the
    points one after another as before, and a cluster keeps all its CPUs busy. A result is
    stored as soon as its task finishes, so an interrupted sweep keeps every finished point;
    a failed task is raised after the others have finished and been stored.
    """
    results: dict[int, Result] = {}
    missing = []
    for index, key in enumerate(keys):
        found = sweep.cached(key)
        if found is None:
            missing.append(index)
        else:
            results[index] = found
            sweep.on_result(key, found)
    window, pending, failure = slots(executor), {}, None
    queue = iter(missing)
    while True:
        for index in queue if failure is None else ():  # after a failure: finish what runs, start nothing
            work = sweep.task(keys[index])
            pending[executor.submit(work.fn, *work.args)] = index
            if len(pending) >= window:
                break
        if not pending:
            break
        finished, _ = wait(pending, return_when=FIRST_COMPLETED)
        for future in finished:
            index = pending.pop(future)
            try:
                result = future.result()
            except Exception as error:  # the others still finish and are kept
                failure = failure or error
                continue
            sweep.store(keys[index], result)
            results[index] = result
            sweep.on_result(keys[index], result)
    if failure is not None:
        raise failure
    return [results[index] for index in range(len(keys))]


def slots(executor: Executor) -> int:
    """How many tasks ``executor`` runs at once."""
    if isinstance(executor, ProcessPoolExecutor):
        return executor._max_workers  # type: ignore[attr-defined]  # no public accessor
    return getattr(executor, "slots", 1)


def shared(executor: Executor, value: Any) -> Any:
    """``value`` as every task should receive it: put once in Ray's object store, or as it is.

    Ray reads an object-store reference back into its value when it is a task's direct
    argument, so a task function takes the data whichever executor runs it.
    """
    share = getattr(executor, "share", None)
    return share(value) if share is not None else value


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        return None
    return ray


def alone_timing_repeats(requested: int, executor: str, processes: int = 1) -> tuple[int, str | None]:
    """``--repeats``, or 0 where points do not run alone (Ray workers side by side, torchrun ranks), and
    the line that tells the user so (None where the repeats stand).

    Points timed next to each other measure each other's contention; their CPU-time columns are
    left empty instead (and so cached apart from timed ones: the repeats are part of the key).
    """
    if requested and (not executor.startswith("local") or processes > 1):
        where = "on Ray" if processes == 1 else f"under torchrun ({processes} processes)"
        return 0, (f"CPU-time columns left empty {where}: points timed side by side measure each other; "
                   "time with --executor local in one process")
    return requested, None
