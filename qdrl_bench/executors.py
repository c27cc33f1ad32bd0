"""Executors: where :func:`qdrl_bench.execute.execute_run` runs.

Every executor has the same small interface, driven by :func:`qdrl_bench.runner.run_sweep`:
``start(step_reporter)``, ``slots`` (runs it executes at once), ``submit(task) -> handle`` (a
run, or a :class:`~qdrl_bench.robustness.ConditionTask`; see
:func:`qdrl_bench.execute.execute_task`),
``wait(timeout) -> [(handle, result)]``, ``cancel_all()`` (Ctrl-C: stop what is in flight)
and ``close()``. Executors return results; only the driver writes to the store. The step
reporter given to ``start`` receives the training progress of the runs, in the driver process.

* :class:`InlineExecutor` — in the driver process, one run at a time (``local`` with
  ``workers: 1``): no start-up cost, Ctrl-C interrupts the run directly.
* :class:`LocalExecutor` — a ``concurrent.futures.ProcessPoolExecutor`` with the ``spawn``
  start method; each worker limits torch (and OpenMP / MKL) to one thread and ignores SIGINT
  (the driver decides when to stop). Step progress comes back over a ``multiprocessing``
  queue.
* :class:`RayExecutor` — Ray tasks (``pip install qdrl[ray]``): ``ray.init(num_cpus=workers)``
  starts a local cluster, or ``address`` joins an existing one. Tasks run the same
  :func:`~qdrl_bench.execute.execute_run`, so scores equal the local executor's seed for seed.
"""

from __future__ import annotations

import abc
import concurrent.futures as cf
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import threading
import time
from typing import Any

from qdrl_bench.execute import StepReporter, execute_task
from qdrl_bench.spec import ExecutorSpec, RunSpec
from qdrl_bench.store import FAILED, RunResult

__all__ = ["BaseExecutor", "InlineExecutor", "LocalExecutor", "RayExecutor", "make_executor",
           "worker_threads"]

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _limit_threads() -> None:
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    import torch  # heavy: imported where a run is about to execute

    torch.set_num_threads(1)


def worker_threads() -> int:
    """Threads torch may use in this process (1 inside executor workers)."""
    import torch  # heavy: imported only when asked

    return int(torch.get_num_threads())


class BaseExecutor(abc.ABC):
    """The executor interface (see the module docstring)."""

    slots: int = 1

    def start(self, reporter: StepReporter | None = None) -> None:  # noqa: B027 - optional
        """Prepare to run; ``reporter(run name, steps, total)`` receives step progress."""

    @abc.abstractmethod
    def submit(self, run: RunSpec) -> Any:
        """Start a run; return a handle."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> list[tuple[Any, RunResult]]:
        """Return the runs that completed (possibly none within ``timeout`` seconds)."""

    @abc.abstractmethod
    def cancel_all(self) -> None:
        """Stop every run in flight (their results are dropped)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release workers."""


class InlineExecutor(BaseExecutor):
    """Runs in the driver process, one at a time (torch limited to one thread)."""

    slots = 1

    def __init__(self) -> None:
        self._queue: list[tuple[int, RunSpec]] = []
        self._next = 0
        self._reporter: StepReporter | None = None

    def start(self, reporter: StepReporter | None = None) -> None:  # noqa: D102
        _limit_threads()
        self._reporter = reporter

    def submit(self, run: RunSpec) -> int:  # noqa: D102
        self._next += 1
        self._queue.append((self._next, run))
        return self._next

    def wait(self, timeout: float) -> list[tuple[Any, RunResult]]:  # noqa: D102
        if not self._queue:
            return []
        handle, run = self._queue.pop(0)
        return [(handle, execute_task(run, reporter=self._reporter))]

    def cancel_all(self) -> None:  # noqa: D102
        self._queue.clear()

    def close(self) -> None:  # noqa: D102
        self._reporter = None


_WORKER_QUEUE: Any = None
"""In a pool worker process: the queue its runs' progress goes back to the driver on."""


def _exit_with_parent(parent_pid: int, interval_s: float = 0.5) -> None:
    """Watch the parent from a daemon thread and end this process once it is gone.

    A driver killed with SIGKILL cannot stop its workers; without this, each went on training
    (about 500 MB apiece) for a sweep nobody would record. The parent is gone when this
    process has been re-parented (its parent pid is no longer ``parent_pid``).
    """
    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _init_worker(progress_queue: Any, parent_pid: int) -> None:
    global _WORKER_QUEUE
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent_pid)
    _limit_threads()
    _WORKER_QUEUE = progress_queue


def _queue_report(name: str, steps: int, total: int) -> None:
    """A pool worker's step reporter: the progress goes onto :data:`_WORKER_QUEUE`."""
    try:
        _WORKER_QUEUE.put_nowait((name, steps, total))
    except Exception:  # a full or closed queue only loses a progress tick
        pass


def _pool_execute(run: RunSpec) -> Any:
    return execute_task(run, reporter=_queue_report)


class LocalExecutor(BaseExecutor):
    """A spawn-context process pool of ``workers`` processes.

    Args:
        workers: Worker processes (>= 1).

    Raises:
        ValueError: If ``workers`` < 1.
    """

    def __init__(self, workers: int) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        self.slots = workers
        self._ctx = mp.get_context("spawn")
        self._pool: cf.ProcessPoolExecutor | None = None
        self._progress: Any = None
        self._reporter: StepReporter | None = None
        self._drain: threading.Thread | None = None
        self._stop = threading.Event()
        self._futures: set[cf.Future[RunResult]] = set()

    def start(self, reporter: StepReporter | None = None) -> None:  # noqa: D102
        self._reporter = reporter
        self._progress = self._ctx.Queue(maxsize=10_000)
        self._pool = self._new_pool()
        self._drain = threading.Thread(target=self._drain_progress, daemon=True)
        self._drain.start()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(max_workers=self.slots, mp_context=self._ctx,
                                      initializer=_init_worker,
                                      initargs=(self._progress, os.getpid()))

    def _drain_progress(self) -> None:
        while not self._stop.is_set():
            try:
                name, steps, total = self._progress.get(timeout=0.2)
            except queue_mod.Empty:
                continue
            except (EOFError, OSError, ValueError):
                return
            if self._reporter is not None:
                self._reporter(name, steps, total)

    def submit(self, run: RunSpec) -> cf.Future[RunResult]:  # noqa: D102
        if self._pool is None:
            self.start(None)
        assert self._pool is not None
        try:
            fut = self._pool.submit(_pool_execute, run)
        except cf.process.BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            fut = self._pool.submit(_pool_execute, run)
        self._futures.add(fut)
        return fut

    def wait(self, timeout: float) -> list[tuple[Any, RunResult]]:  # noqa: D102
        if not self._futures:
            return []
        done, _ = cf.wait(self._futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        out: list[tuple[Any, RunResult]] = []
        for fut in done:
            self._futures.discard(fut)
            try:
                out.append((fut, fut.result()))
            except Exception as exc:  # the worker process died (OOM kill, segfault, ...)
                out.append((fut, RunResult(status=FAILED, reason=f"worker process failed: "
                                                                 f"{type(exc).__name__}: {exc}")))
        return out

    def cancel_all(self) -> None:  # noqa: D102
        self._futures.clear()
        if self._pool is None:
            return
        # ProcessPoolExecutor (before Python 3.14) has no public way to stop running tasks:
        # terminate its worker processes, then shut it down.
        terminate = getattr(self._pool, "terminate_workers", None)
        if terminate is not None:  # pragma: no cover - Python >= 3.14
            terminate()
        else:
            for proc in list(getattr(self._pool, "_processes", {}).values()):
                proc.terminate()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool = None

    def close(self) -> None:  # noqa: D102
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._drain is not None:
            self._drain.join(timeout=2)
        if self._progress is not None:
            self._progress.close()
            self._progress.join_thread()


def _ray_execute(run: RunSpec) -> Any:
    _limit_threads()
    return execute_task(run)


class RayExecutor(BaseExecutor):
    """Runs as Ray tasks of one CPU each; results come back to the driver.

    Args:
        workers: ``num_cpus`` of the local cluster started here, and the runs in flight.
        address: Join this cluster instead (``"auto"``, ``"ray://host:10001"``); ``None``
            starts a local one.

    Raises:
        ImportError: If Ray is not installed (``pip install "qdrl[ray]"``).
    """

    def __init__(self, workers: int, address: str | None = None) -> None:
        try:
            import ray  # an optional extra, imported only for this executor
        except ImportError as exc:
            raise ImportError("the ray executor needs Ray: pip install 'qdrl[ray]'") from exc
        self._ray = ray
        self.slots = workers
        self.address = address
        self._owns = False
        self._remote: Any = None
        self._refs: dict[Any, Any] = {}

    def start(self, reporter: StepReporter | None = None) -> None:  # noqa: D102
        ray = self._ray
        if not ray.is_initialized():
            env_vars = {v: "1" for v in _THREAD_VARS}
            if self.address is None:
                ray.init(num_cpus=self.slots, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": env_vars})
            else:
                ray.init(address=self.address, log_to_driver=False,
                         runtime_env={"env_vars": env_vars})
            self._owns = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_execute)

    def submit(self, run: RunSpec) -> Any:  # noqa: D102
        if self._remote is None:
            self.start(None)
        ref = self._remote.remote(run)
        self._refs[ref] = run
        return ref

    def wait(self, timeout: float) -> list[tuple[Any, RunResult]]:  # noqa: D102
        if not self._refs:
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        out: list[tuple[Any, RunResult]] = []
        for ref in ready:
            self._refs.pop(ref)
            try:
                out.append((ref, self._ray.get(ref)))
            except Exception as exc:  # task or worker died
                out.append((ref, RunResult(status=FAILED, reason=f"ray task failed: "
                                                                 f"{type(exc).__name__}: {exc}")))
        return out

    def cancel_all(self) -> None:  # noqa: D102
        for ref in list(self._refs):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # already finished or gone
                pass
        self._refs.clear()

    def close(self) -> None:  # noqa: D102
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False


def make_executor(spec: ExecutorSpec) -> BaseExecutor:
    """Build the executor a sweep names.

    ``local`` with one worker runs inline (in the driver process); with more, a process pool.

    Raises:
        ImportError: For ``ray`` when Ray is not installed.
    """
    if spec.kind == "ray":
        return RayExecutor(spec.workers, spec.address)
    if spec.workers == 1:
        return InlineExecutor()
    return LocalExecutor(spec.workers)
