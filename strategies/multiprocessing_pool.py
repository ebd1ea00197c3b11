"""``multiprocessing`` and ``multiprocessing-components``: one process pool per fit.

What the seed notebook did, and what these strategies do instead:

=====================================  ==============================================
seed notebook                          here
=====================================  ==============================================
a new pool every iteration             one ``ProcessPoolExecutor``, started in
                                       ``prepare`` and reused until ``close``
X pickled to every worker, every task  X copied once into a
                                       :mod:`multiprocessing.shared_memory` segment;
                                       workers map it (no copy, no pickling)
n x k responsibilities pickled back    the fused iteration returns per-chunk sums
                                       (k + kd + kd^2 floats); the E-step writes into
                                       a shared (n, k) buffer
hundreds of idle processes             exactly ``workers`` processes
workers with multi-threaded BLAS       one BLAS/OpenMP thread per worker (environment
                                       at start-up plus threadpoolctl), verified and
                                       reported
a dead worker hangs the parent         ``concurrent.futures`` notices (the pool is
                                       *broken*) and the fit fails with
                                       :class:`~harness.model.errors.WorkerError`
=====================================  ==============================================

``multiprocessing`` is data-parallel: the rows are cut into ``workers *
tasks_per_worker`` contiguous chunks, each task computes its chunk's statistics, and
the parent merges them in chunk order (so the result does not depend on which
worker ran what). ``multiprocessing-components`` is the seed's model-parallel split:
one task per component, then a row-parallel normalisation pass.

``concurrent.futures.ProcessPoolExecutor`` rather than ``multiprocessing.Pool``:
when a ``Pool`` worker is killed the pool silently starts a replacement and the lost
task's result never arrives, so the parent waits forever; the executor marks itself
broken and every pending future raises ``BrokenProcessPool`` within milliseconds.

The start method is a constructor argument (default
:data:`~strategies.pool.control.DEFAULT_START_METHOD`, ``forkserver``; the
environment variable ``GMM_HARNESS_START_METHOD`` overrides the default for a whole
sweep) and is reported by :meth:`runtime_info`, with the time ``prepare`` spent
placing the data and starting the pool, and the bytes moved to and from the workers
per iteration. The shared base (:class:`strategies.pool.base.ProcessPoolStrategy`)
holds the steps, buffers, deadline and report; this module is the dispatcher: how
workers start, where X goes, how a batch of tasks runs and how the pool stops.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import psutil

from harness.model.gmm import DerivedParams, SufficientStats
from strategies.pool import control
from strategies.pool import workers as tasks
from strategies.pool.base import TASKS_PER_WORKER, PoolResources, ProcessPoolStrategy
from strategies.pool.chunks import pack_model
from strategies.pool.shared import SharedArray

#: Seconds between two looks at a running batch (failures, Ctrl-C).
POLL_SECONDS = 0.1

#: Seconds the manager thread of a stopped pool gets to finish before its result
#: pipe is closed under it.
MANAGER_JOIN_SECONDS = 2.0


class _ExecutorResources(PoolResources):
    """A ``ProcessPoolExecutor`` and its segments."""

    def __init__(self) -> None:
        super().__init__()
        self.executor: ProcessPoolExecutor | None = None

    def release(self) -> None:
        """Stop the workers, end the executor's manager thread, unlink every segment.

        Normal close: the executor tells idle workers to exit. After an error or a
        Ctrl-C, tasks may still be running; those workers are terminated at once.
        A worker killed while writing a result (a highdim result is larger than a
        pipe's buffer) leaves the manager thread reading half a message, and the
        parent itself holds the pipe's write end, so the read would never end and
        interpreter exit would wait on that thread for ever (``concurrent.futures``
        joins it at exit). Once every worker is gone, closing the parent's write end
        turns the read into end-of-file, and the thread ends.
        """
        executor, self.executor = self.executor, None
        if executor is not None:
            manager = getattr(executor, "_executor_manager_thread", None)
            result_queue = getattr(executor, "_result_queue", None)
            known = {process.pid for process in self.processes}
            for pid in list(getattr(executor, "_processes", None) or {}):
                if pid not in known:  # started but never reported (start-up failed)
                    with contextlib.suppress(psutil.Error):
                        self.processes.append(psutil.Process(pid))
            with contextlib.suppress(Exception):
                executor.shutdown(wait=False, cancel_futures=True)
            self.stop_workers()
            if manager is not None and manager.is_alive():
                manager.join(MANAGER_JOIN_SECONDS)
                if manager.is_alive() and result_queue is not None:
                    with contextlib.suppress(Exception):
                        result_queue._writer.close()
                    manager.join(MANAGER_JOIN_SECONDS)
            with contextlib.suppress(Exception):
                executor.shutdown(wait=True)
        super().release()


class ExecutorPoolStrategy(ProcessPoolStrategy):
    """The ``concurrent.futures`` dispatcher: X in shared memory, tasks by name.

    Parameters
    ----------
    workers : int
        Worker processes, started in ``prepare`` (exactly this many).
    start_method : {"fork", "spawn", "forkserver"}, optional
        Default: ``$GMM_HARNESS_START_METHOD`` if set, else ``"forkserver"``.
    tasks_per_worker : int
    task_timeout : float, optional
        See :class:`~strategies.pool.base.ProcessPoolStrategy`.
    """

    data_sharing = "multiprocessing.shared_memory"

    def __init__(
        self,
        workers: int = 1,
        *,
        start_method: str | None = None,
        tasks_per_worker: int = TASKS_PER_WORKER,
        task_timeout: float | None = None,
    ) -> None:
        self.start_method = control.resolve_start_method(start_method)
        super().__init__(workers, tasks_per_worker=tasks_per_worker, task_timeout=task_timeout)

    def _reset_state(self) -> None:
        super()._reset_state()
        self._pool_processes: dict[int, object] = {}
        self._manager = None

    def _new_resources(self) -> _ExecutorResources:
        return _ExecutorResources()

    def _start(self, X: np.ndarray, resources: PoolResources) -> list[dict[str, object]]:
        assert isinstance(resources, _ExecutorResources)
        start = time.perf_counter()
        data = SharedArray.copy_of(X)
        resources.buffers.append(data)
        self._prepare_data_seconds = time.perf_counter() - start

        start = time.perf_counter()
        context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            # Workers fork from a server that has already imported NumPy and this code.
            context.set_forkserver_preload([tasks.__name__])
        barrier = context.Barrier(self.workers)
        with control.worker_thread_env():
            resources.executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=tasks.init_worker,
                initargs=(data.handle, self.kernel == "cython", barrier, os.getpid()),
            )
            reports = self._run([(tasks.warmup_task, ())] * self.workers, "start-up")
        self._prepare_pool_seconds = time.perf_counter() - start
        self._pool_processes = dict(getattr(resources.executor, "_processes", None) or {})
        self._manager = getattr(resources.executor, "_executor_manager_thread", None)
        resources.processes = [psutil.Process(int(r["pid"])) for r in reports]
        return reports

    def _new_buffer(self, shape: tuple[int, int]) -> SharedArray:
        return SharedArray(shape)

    def _chunk_calls(self, step: str, blob: bytes, buffer: object | None) -> list:
        task = {"fused": tasks.fused_task, "e_step": tasks.e_step_task}.get(step, tasks.m_step_task)
        extra = () if buffer is None else (buffer.ref,)  # type: ignore[attr-defined]
        return [(task, (a, b, blob, *extra)) for a, b in self._chunks]

    def _execute(self, calls: object) -> list:
        resources = self._resources
        assert isinstance(resources, _ExecutorResources) and resources.executor is not None
        futures: list[Future] = []
        try:
            futures = [resources.executor.submit(fn, *args) for fn, args in calls]  # type: ignore[attr-defined]
            pending = set(futures)
            while pending:
                done, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_EXCEPTION)
                self._latch.check()
                for future in done:
                    if future.exception() is not None:
                        raise future.exception()  # type: ignore[misc]
        except BaseException:  # KeyboardInterrupt included: close() kills busy workers
            for future in futures:
                future.cancel()
            raise
        return [future.result() for future in futures]

    def _is_worker_death(self, failure: BaseException) -> bool:
        return isinstance(failure, BrokenProcessPool)

    def _dead_workers(self) -> list[int]:
        """The workers that died first, not those the broken pool then terminated.

        A broken ``ProcessPoolExecutor`` terminates (SIGTERM) every worker still
        running; once its manager thread has reaped them, their exit codes tell the
        one that died (any other code) from those it stopped.
        """
        if self._manager is not None:
            self._manager.join(MANAGER_JOIN_SECONDS)
        codes = {pid: getattr(p, "exitcode", None) for pid, p in self._pool_processes.items()}
        died = [pid for pid, code in codes.items() if code is not None and code != -signal.SIGTERM]
        return sorted(died) or super()._dead_workers()

    def _extra_info(self) -> dict[str, object]:
        buffers = self._resources.buffers if self._resources else []
        return {
            "start_method": self.start_method,
            "shared_memory_segments": [b.name for b in buffers],  # type: ignore[attr-defined]
            "shared_bytes": sum(b.nbytes for b in buffers),  # type: ignore[attr-defined]
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers}, start_method={self.start_method!r})"


class MultiprocessingStrategy(ExecutorPoolStrategy):
    """Data-parallel over chunks of rows; X in shared memory; tiny messages."""

    name = "multiprocessing"
    description = (
        "process pool (concurrent.futures) over row chunks, X in shared memory, "
        "per-chunk statistics back"
    )


class MultiprocessingComponentsStrategy(ExecutorPoolStrategy):
    """Model-parallel, as in the seed notebook: one task per component, in NumPy.

    E-step: task ``j`` writes column ``j`` of the weighted log densities for all rows
    into the shared (n, k) buffer; normalising a row needs all its components, so a
    second, row-parallel pass normalises in place. M-step: task ``j`` computes
    component ``j``'s mass, mean and centred scatter over all rows (two passes, as
    the reference). Parallelism is capped by k (k = 4 on ``schreiber``), and every
    task reads all of X. No compiled kernel returns one component's densities before
    normalisation, so this split runs NumPy (``kernel`` is ``"numpy"`` in
    :meth:`runtime_info`) and does not need the kernels to be built.
    """

    name = "multiprocessing-components"
    has_fused_iteration = False
    needs_compiled = False
    kernel = "numpy"
    description = (
        "process pool, one task per component (the seed's split), X in shared memory; "
        "runs NumPy, not the compiled kernels"
    )

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        """As :meth:`MultiprocessingStrategy.e_step`, split by component."""
        self._check_model(derived)
        self._begin("e_step")
        buffer = self._writable_buffer(derived.n_components)
        blob = pack_model(derived)
        k = derived.n_components
        self._run(
            [(tasks.component_density_task, (j, blob, buffer.ref)) for j in range(k)], "e_step"
        )
        sums = self._run(
            [(tasks.normalise_task, (a, b, buffer.ref)) for a, b in self._chunks], "e_step"
        )
        return self._hand_out(buffer), float(np.sum(sums)) / self.X.shape[0]

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        """One task per component: exact centred statistics over all rows."""
        buffer = self._shared_log_resp(log_resp)
        self._begin("m_step")
        k = buffer.shape[1]
        results = self._run(
            [(tasks.component_stats_task, (j, buffer.ref)) for j in range(k)], "m_step"
        )
        mass = np.array([r[0] for r in results])
        means = np.stack([r[1] for r in results])
        scatter = np.stack([r[2] for r in results])
        return SufficientStats(mass, means, scatter, self.X.shape[0])

    def fused_iteration(self, derived: DerivedParams) -> tuple[SufficientStats, float]:
        raise NotImplementedError(f"strategy {self.name!r} has no fused iteration")
