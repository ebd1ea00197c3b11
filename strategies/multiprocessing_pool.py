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
:data:`~strategies._process_common.DEFAULT_START_METHOD`, ``forkserver``; the
environment variable ``GMM_HARNESS_START_METHOD`` overrides the default for a whole
sweep) and is reported by :meth:`runtime_info`, with the time ``prepare`` spent
placing the data and starting the pool, and the bytes moved to and from the workers
per iteration.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import psutil

import strategies._process_common as pc
from harness.model.errors import InvalidParameterError, WorkerError
from harness.model.gmm import DerivedParams, SufficientStats
from strategies.base import Strategy

#: Chunks per worker in the data-parallel strategy. One would minimise messages,
#: but on a shared machine a worker slowed by another program then holds the whole
#: iteration up; with two, a worker that finishes early takes the next chunk.
#: Messages stay tiny either way (about 300 B out and k(1 + d + d^2) floats back).
TASKS_PER_WORKER = 2


class _PoolResources:
    """What a prepared pool owns. One function releases it: close, GC or exit."""

    def __init__(self) -> None:
        self.executor: ProcessPoolExecutor | None = None
        self.processes: list[psutil.Process] = []
        self.segments: list[pc.SharedArray] = []
        self.busy = False


def _release_pool(resources: _PoolResources) -> None:
    """Stop the workers and unlink every segment; never raises, safe to call twice.

    Normal close: the executor tells idle workers to exit. After an error or a
    Ctrl-C, tasks may still be running; those workers are terminated at once rather
    than left to finish work nobody will read.
    """
    executor, resources.executor = resources.executor, None
    if executor is not None:
        known = {process.pid for process in resources.processes}
        for pid in list(getattr(executor, "_processes", None) or {}):
            if pid not in known:  # started but never reported (start-up failed)
                with contextlib.suppress(psutil.Error):
                    resources.processes.append(psutil.Process(pid))
        with contextlib.suppress(Exception):
            executor.shutdown(wait=False, cancel_futures=True)
        pc.stop_processes(resources.processes, terminate_first=resources.busy)
        with contextlib.suppress(Exception):
            executor.shutdown(wait=True)
    for segment in resources.segments:
        segment.release()
    resources.segments.clear()
    resources.processes = []


class _ProcessPoolStrategy(Strategy):
    """A ``ProcessPoolExecutor`` over X in shared memory; subclasses split the work.

    Parameters
    ----------
    workers : int
        Worker processes, started in ``prepare`` (exactly this many).
    start_method : {"fork", "spawn", "forkserver"}, optional
        Default: ``$GMM_HARNESS_START_METHOD`` if set, else ``"forkserver"``.
    use_kernels : bool, optional
        Run the compiled kernels in the workers. Default: when they are built.
        True when they are not raises :class:`~harness.model.errors.InvalidParameterError`.
    tasks_per_worker : int
        Row chunks per worker in each parallel step (:data:`TASKS_PER_WORKER`).
    """

    kind = "processes"
    parallel = True
    releases_gil = False  # each worker has its own interpreter and GIL
    uses_kernels = True

    def __init__(
        self,
        workers: int = 1,
        *,
        start_method: str | None = None,
        use_kernels: bool | None = None,
        tasks_per_worker: int = TASKS_PER_WORKER,
    ) -> None:
        super().__init__(workers)
        self.start_method = pc.resolve_start_method(start_method)
        kernel, reason = pc.load_kernels()
        if use_kernels and kernel is None:
            raise InvalidParameterError(f"use_kernels=True but {reason}")
        if not self.uses_kernels:
            if use_kernels:
                raise InvalidParameterError(
                    f"strategy {self.name!r} runs NumPy only (the kernels work on all "
                    "components of a row at once); use_kernels must not be True"
                )
            use_kernels = False
        self.use_kernels = (kernel is not None) if use_kernels is None else bool(use_kernels)
        if (
            isinstance(tasks_per_worker, bool)
            or not isinstance(tasks_per_worker, int)
            or (tasks_per_worker < 1)
        ):
            raise InvalidParameterError(
                f"tasks_per_worker must be an integer >= 1; got {tasks_per_worker!r}"
            )
        self.tasks_per_worker = tasks_per_worker
        self._resources: _PoolResources | None = None
        self._finalizer: weakref.finalize | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._chunks: list[tuple[int, int]] = []
        self._worker_reports: list[dict[str, object]] = []
        self._traffic: pc.WorkerTraffic | None = None
        self._failure: str | None = None
        self._buffer: pc.SharedArray | None = None
        self._handed_out: weakref.ref | None = None
        self._shift: np.ndarray | None = None
        self._data_mean: np.ndarray | None = None
        self._data_bytes = 0
        self._prepare_data_seconds: float | None = None
        self._prepare_pool_seconds: float | None = None
        self._log_resp_copies = 0
        self._last_call = ""

    # ---- life cycle -----------------------------------------------------------------

    def _setup(self, X: np.ndarray) -> None:
        resources = _PoolResources()
        self._resources = resources
        # Registered before anything is created, so that whatever exists is released
        # on close(), when the strategy is garbage-collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, _release_pool, resources)

        start = time.perf_counter()
        data = pc.SharedArray.copy_of(X)
        resources.segments.append(data)
        self._data_bytes = data.nbytes
        self._data_mean = X.mean(axis=0)
        self._prepare_data_seconds = time.perf_counter() - start

        start = time.perf_counter()
        context = multiprocessing.get_context(self.start_method)
        if self.start_method == "forkserver":
            # Workers fork from a server that has already imported NumPy and this code.
            context.set_forkserver_preload([pc.__name__])
        barrier = context.Barrier(self.workers)
        with pc.worker_thread_env():
            resources.executor = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=context,
                initializer=pc.init_worker,
                initargs=(data.handle, self.use_kernels, barrier, os.getpid()),
            )
            self._worker_reports = self._run([(pc.warmup_task, ())] * self.workers, "start-up")
        self._prepare_pool_seconds = time.perf_counter() - start

        resources.processes = [psutil.Process(int(r["pid"])) for r in self._worker_reports]
        self._traffic = pc.WorkerTraffic(resources.processes)
        self._chunks = pc.chunk_bounds(X.shape[0], self.workers * self.tasks_per_worker)

    def _teardown(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._resources = None
        self._reset_state()

    # ---- running tasks --------------------------------------------------------------

    def _executor(self) -> ProcessPoolExecutor:
        if self._resources is None or self._resources.executor is None:
            raise InvalidParameterError(f"strategy {self.name!r}: call prepare(X) first")
        if self._failure is not None:
            raise WorkerError(
                f"strategy {self.name!r} cannot continue after a worker failure "
                f"({self._failure}); call prepare(X) again"
            )
        return self._resources.executor

    def _run(self, calls: Sequence[tuple[Callable, tuple]], phase: str) -> list:
        """Run tasks on the pool and return their results in submission order.

        Raises
        ------
        WorkerError
            As soon as one task raises or a worker dies; the pool is then unusable
            until the next ``prepare`` (``close`` stops the workers still running).
        """
        executor = self._executor()
        resources = self._resources
        assert resources is not None
        futures = []
        resources.busy = True
        failure: BaseException | None = None
        try:
            futures = [executor.submit(fn, *args) for fn, args in calls]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                if future.done() and not future.cancelled() and future.exception() is not None:
                    failure = future.exception()
                    break
        except BrokenProcessPool as exc:
            failure = exc
        except BaseException:  # KeyboardInterrupt included: close() kills busy workers
            for future in futures:
                future.cancel()
            raise
        if failure is not None:
            for future in futures:
                future.cancel()
            raise self._worker_error(failure, phase) from failure
        resources.busy = False
        return [future.result() for future in futures]

    def _worker_error(self, failure: BaseException, phase: str) -> WorkerError:
        resources = self._resources
        if isinstance(failure, BrokenProcessPool):
            dead = [p.pid for p in (resources.processes if resources else []) if not pc.alive(p)]
            who = f"worker process(es) {dead}" if dead else "a worker process"
            message = (
                f"{who} of strategy {self.name!r} died during {phase} "
                f"({type(failure).__name__}: {failure})"
            )
        else:
            message = (
                f"a worker of strategy {self.name!r} raised during {phase}: "
                f"{type(failure).__name__}: {failure}"
            )
        self._failure = message
        return WorkerError(message)

    # ---- shared buffers -------------------------------------------------------------

    def _writable_buffer(self, k: int) -> pc.SharedArray:
        """The shared (n, k) buffer, replaced if the caller still holds the last result.

        ``e_step`` returns an array on this buffer. Reusing it saves mapping and
        faulting in n x k fresh pages every iteration (the EM driver drops the array
        after ``m_step``), but it must never overwrite an array someone still holds.
        """
        n = self.X.shape[0]
        held = self._handed_out is not None and self._handed_out() is not None
        buffer = self._buffer
        if buffer is None or held or buffer.handle.shape != (n, k):
            assert self._resources is not None
            if buffer is not None:
                buffer.release()
                self._resources.segments.remove(buffer)
            buffer = pc.SharedArray((n, k))
            self._resources.segments.append(buffer)
            self._buffer = buffer
            self._handed_out = None
        return buffer

    def _hand_out(self, buffer: pc.SharedArray) -> np.ndarray:
        lease = buffer.lease()
        self._handed_out = weakref.ref(lease)
        return lease.array()

    def _shared_log_resp(self, log_resp: object) -> pc.SharedArray:
        """A shared buffer holding ``log_resp``: ours as it is, or a copy into one."""
        n = self.X.shape[0]
        array = log_resp if isinstance(log_resp, np.ndarray) else np.asarray(log_resp)
        if array.ndim != 2 or array.shape[0] != n or array.shape[1] < 1:
            raise InvalidParameterError(
                f"log_resp must have shape (n_points, k) = ({n}, k); got {array.shape}"
            )
        if self._buffer is not None and self._buffer.holds(array):
            return self._buffer
        if array.dtype.kind not in "fiu":
            raise InvalidParameterError(f"log_resp must hold real numbers; got {array.dtype}")
        buffer = self._writable_buffer(array.shape[1])
        buffer.lease().array()[...] = array
        self._log_resp_copies += 1
        return buffer

    # ---- per-iteration bookkeeping --------------------------------------------------

    def _check_model(self, derived: DerivedParams) -> None:
        if derived.n_features != self.X.shape[1]:
            raise InvalidParameterError(
                f"parameters have {derived.n_features} features but the data has {self.X.shape[1]}"
            )

    def _begin(self, call: str) -> None:
        """Count traffic per iteration: an iteration starts with its E-step (or fused
        pass); an M-step on its own counts as one too."""
        if self._traffic is not None and (call != "m_step" or self._last_call != "e_step"):
            self._traffic.begin_iteration()
        self._last_call = call

    def _shift_for(self, k: int) -> np.ndarray:
        """Centre of the M-step's shifted sums: the last E-step's means, else the data mean."""
        if self._shift is not None and self._shift.shape == (k, self.X.shape[1]):
            return self._shift
        assert self._data_mean is not None
        return np.broadcast_to(self._data_mean, (k, self.X.shape[1])).copy()

    # ---- report ---------------------------------------------------------------------

    def _kernel_path(self) -> str:
        reported = {str(r["kernel"]) for r in self._worker_reports}
        if len(reported) == 1:
            return reported.pop()
        return "cython" if self.use_kernels else "numpy"

    def runtime_info(self) -> dict[str, object]:
        """Start method, kernel path, workers and their threads, prepare split, traffic.

        ``bytes_to_workers`` / ``bytes_from_workers`` are medians per iteration of the
        bytes the workers read and wrote (see
        :class:`~strategies._process_common.WorkerTraffic`); None before the first
        iteration.
        """
        reports = self._worker_reports
        info: dict[str, object] = {
            "start_method": self.start_method,
            "kernel": self._kernel_path(),
            "workers_started": len(reports),
            "effective_workers": len(reports),
            "worker_pids": [int(r["pid"]) for r in reports],
            "worker_blas_threads": max((int(r["blas_threads"]) for r in reports), default=None),
            "worker_openmp_threads": max((int(r["openmp_threads"]) for r in reports), default=None),
            "omp_threads": 1,
            "tasks_per_iteration": len(self._chunks),
            "data_sharing": "multiprocessing.shared_memory",
            "shared_memory_segments": [s.name for s in self._resources.segments]
            if self._resources
            else [],
            "shared_bytes": sum(s.nbytes for s in self._resources.segments)
            if self._resources
            else 0,
            "prepare_data_seconds": self._prepare_data_seconds,
            "prepare_pool_seconds": self._prepare_pool_seconds,
            "log_resp_copies": self._log_resp_copies,
        }
        if self._traffic is not None:
            info.update(self._traffic.summary())
        else:
            info.update(bytes_to_workers=None, bytes_from_workers=None, iterations_measured=0)
        return info

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers}, start_method={self.start_method!r})"


class MultiprocessingStrategy(_ProcessPoolStrategy):
    """Data-parallel over chunks of rows; X in shared memory; tiny messages."""

    name = "multiprocessing"
    has_fused_iteration = True
    description = (
        "process pool (concurrent.futures) over row chunks, X in shared memory, "
        "per-chunk statistics back"
    )

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        """Workers write their rows' log responsibilities into a shared (n, k) buffer.

        The returned array is a view of that buffer, valid for as long as it is
        referenced (also after ``close``); a later ``e_step`` writes into a new buffer
        while it is still held.
        """
        self._check_model(derived)
        self._begin("e_step")
        buffer = self._writable_buffer(derived.n_components)
        blob = pc.pack_model(derived)
        sums = self._run(
            [(pc.e_step_task, (a, b, blob, buffer.handle)) for a, b in self._chunks], "e_step"
        )
        self._shift = np.array(derived.means)
        return self._hand_out(buffer), float(np.sum(sums)) / self.X.shape[0]

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        """Per-chunk shifted sums from the shared responsibilities, merged in chunk order.

        ``log_resp`` as returned by :meth:`e_step` is read in place; any other array
        is first copied into shared memory (counted in ``log_resp_copies``).
        """
        buffer = self._shared_log_resp(log_resp)
        self._begin("m_step")
        k = buffer.handle.shape[1]
        shift = self._shift_for(k)
        blob = pc.pack_array(shift)
        results = self._run(
            [(pc.m_step_task, (a, b, blob, buffer.handle)) for a, b in self._chunks], "m_step"
        )
        parts = [
            SufficientStats.from_shifted_sums(mass, s1, s2, shift, b - a)
            for (mass, s1, s2), (a, b) in zip(results, self._chunks, strict=True)
        ]
        return SufficientStats.merge_all(parts)

    def fused_iteration(self, derived: DerivedParams) -> tuple[SufficientStats, float]:
        """One pass: each task returns its chunk's loglik and shifted sums (no n x k)."""
        self._check_model(derived)
        self._begin("fused")
        blob = pc.pack_model(derived)
        results = self._run([(pc.fused_task, (a, b, blob)) for a, b in self._chunks], "fused")
        shift = derived.means
        parts = [
            SufficientStats.from_shifted_sums(mass, s1, s2, shift, b - a)
            for (_, mass, s1, s2), (a, b) in zip(results, self._chunks, strict=True)
        ]
        loglik = float(np.sum([r[0] for r in results])) / self.X.shape[0]
        return SufficientStats.merge_all(parts), loglik


class MultiprocessingComponentsStrategy(_ProcessPoolStrategy):
    """Model-parallel, as in the seed notebook: one task per component.

    E-step: task ``j`` writes column ``j`` of the weighted log densities for all rows
    into the shared (n, k) buffer; normalising a row needs all its components, so a
    second, row-parallel pass normalises in place. M-step: task ``j`` computes
    component ``j``'s mass, mean and centred scatter over all rows (two passes, as
    the reference). Parallelism is capped by k (k = 4 on ``schreiber``), and every
    task reads all of X. The compiled kernels work on all components of a row at
    once and do not fit this split, so it always runs NumPy (``kernel`` in
    :meth:`runtime_info` says so).
    """

    name = "multiprocessing-components"
    has_fused_iteration = False
    uses_kernels = False
    description = "process pool, one task per component (the seed's split), X in shared memory"

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        """As :meth:`MultiprocessingStrategy.e_step`, split by component."""
        self._check_model(derived)
        self._begin("e_step")
        buffer = self._writable_buffer(derived.n_components)
        blob = pc.pack_model(derived)
        self._run(
            [
                (pc.component_density_task, (j, blob, buffer.handle))
                for j in range(derived.n_components)
            ],
            "e_step",
        )
        sums = self._run(
            [(pc.normalise_task, (a, b, buffer.handle)) for a, b in self._chunks], "e_step"
        )
        return self._hand_out(buffer), float(np.sum(sums)) / self.X.shape[0]

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        """One task per component: exact centred statistics over all rows."""
        buffer = self._shared_log_resp(log_resp)
        self._begin("m_step")
        k = buffer.handle.shape[1]
        results = self._run(
            [(pc.component_stats_task, (j, buffer.handle)) for j in range(k)], "m_step"
        )
        mass = np.array([r[0] for r in results])
        means = np.stack([r[1] for r in results])
        scatter = np.stack([r[2] for r in results])
        return SufficientStats(mass, means, scatter, self.X.shape[0])
