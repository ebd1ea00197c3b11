"""``joblib-processes``: joblib's loky process pool, one ``Parallel`` for the whole fit.

How the data reaches the workers, and what ``max_nbytes`` does here:

* **X**: joblib's automatic memmapping. Every ndarray argument larger than
  ``max_nbytes`` is dumped once into a temporary folder (in ``/dev/shm`` when it
  exists and has room) and workers receive a file reference they map read-only
  (``mmap_mode="r"``). joblib recognises the same array object on later calls (a
  weak-keyed cache) and does not dump it again, so X is written once, in ``prepare``,
  and each task then carries a few hundred bytes.
* **Threshold**: :data:`MAX_NBYTES` = 0, set explicitly instead of joblib's default
  ``"1M"``. X is the only in-memory ndarray the strategy ever passes (parameters
  travel as ``bytes``, outputs are already memmaps), so 0 means "always share X":
  under ``"1M"``, an X under 1 MB (n < 65,536 at d = 2) would be pickled into every
  task of every iteration.
* **Outputs**: the E-step writes log responsibilities into an ``np.memmap`` opened
  ``w+`` in the same folder (joblib's documented way for workers to write into
  shared memory); memmap-backed arguments are always passed by reference,
  whatever the threshold. Statistics come back pickled (k(1 + d + d^2) floats).

Workers are loky's (fork + exec, so like ``spawn``: a fresh interpreter per
worker), started by the first call in ``prepare``; ``inner_max_num_threads=1`` sets
their BLAS/OpenMP thread variables to 1 (verified through threadpoolctl and
reported). loky keeps one process-wide executor for reuse; ``close`` shuts it down
so no worker outlives the strategy.

What joblib costs on top of the work: each ``Parallel`` call polls for its first
result with ``time.sleep(0.01)`` (joblib 1.6, ``Parallel._retrieve``), so a call
that does not finish at once takes at least that sleep, and each task carries
joblib's batch wrapper, which pickles to many times the size of the ``multiprocessing``
strategy's task. Both show at small n; ``python -m harness
bench-processes`` measures them.

With ``workers=1`` joblib runs every task in the calling process (its rule for
``n_jobs=1``): no worker is started and nothing is memmapped; :meth:`runtime_info`
says so (``backend`` is ``"sequential"``).

Everything but the dispatch (steps, buffers, deadline, report) is the shared base,
:class:`strategies.pool.base.ProcessPoolStrategy`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time

import numpy as np
import psutil
from joblib.externals.loky.backend import resource_tracker as loky_tracker

from harness.model.errors import InvalidParameterError
from strategies.pool import workers as tasks
from strategies.pool.base import TASKS_PER_WORKER, PoolResources, ProcessPoolStrategy
from strategies.pool.shared import SEGMENT_PREFIX, MemmapArray

#: joblib's ``max_nbytes`` (bytes): ndarray arguments above it are memmapped. 0
#: shares every X, however small (see the module docstring).
MAX_NBYTES = 0

#: loky stops workers idle for this long; a fit never pauses that long, and the
#: traffic counters follow the workers started in ``prepare``.
IDLE_WORKER_TIMEOUT = 3600

#: Seconds each start-up task sleeps, so that the batch spreads over all workers.
WARMUP_PAUSE = 0.05

#: /dev/shm is used for the temporary folder when it has at least this much room
#: (joblib's own rule, ``SYSTEM_SHARED_MEM_FS_MIN_SIZE``).
SHARED_MEM_MIN_FREE = 2 * 1024**3

_TASKS = {"fused": tasks.joblib_fused, "e_step": tasks.joblib_e_step}


def _temp_root() -> str:
    """Where the folder goes: ``$JOBLIB_TEMP_FOLDER``, else /dev/shm, else the temp dir."""
    configured = os.environ.get("JOBLIB_TEMP_FOLDER")
    if configured:
        return configured
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        stats = os.statvfs(shm)
        if stats.f_bsize * stats.f_bavail >= SHARED_MEM_MIN_FREE:
            return shm
    return tempfile.gettempdir()


def _executor_of(parallel: object) -> object | None:
    # joblib exposes no public handle on the loky executor behind a managed Parallel.
    backend = getattr(parallel, "_backend", None)
    return getattr(backend, "_workers", None)


class _JoblibResources(PoolResources):
    """The managed ``Parallel`` and its temporary folder."""

    def __init__(self) -> None:
        super().__init__()
        self.parallel = None
        self.folder: str | None = None

    def release(self) -> None:
        """Leave the ``Parallel``, stop loky's workers, delete the folder; never raises."""
        parallel, self.parallel = self.parallel, None
        if parallel is not None:
            executor = _executor_of(parallel)
            with contextlib.suppress(Exception):
                parallel.__exit__(None, None, None)
            if executor is not None:
                # MemmappingExecutor.terminate: shut the pool down (killing busy workers
                # after an error or Ctrl-C), then delete joblib's memmap folders.
                with contextlib.suppress(Exception):
                    executor.terminate(kill_workers=self.busy)
        super().release()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            with contextlib.suppress(Exception):
                loky_tracker.unregister(self.folder, "folder")
            self.folder = None


class JoblibProcessesStrategy(ProcessPoolStrategy):
    """Data-parallel over row chunks with ``joblib.Parallel(backend=loky)``.

    Parameters
    ----------
    workers : int
        ``n_jobs``; 1 runs in the calling process (joblib's rule).
    tasks_per_worker : int
    max_nbytes : int
        joblib's memmapping threshold in bytes (:data:`MAX_NBYTES`).
    task_timeout : float, optional
        See :class:`~strategies.pool.base.ProcessPoolStrategy`.
    """

    name = "joblib-processes"
    description = (
        "joblib Parallel (loky processes) reused for the fit, X memmapped once, "
        "per-chunk statistics back"
    )

    def __init__(
        self,
        workers: int = 1,
        *,
        tasks_per_worker: int = TASKS_PER_WORKER,
        max_nbytes: int = MAX_NBYTES,
        task_timeout: float | None = None,
    ) -> None:
        super().__init__(workers, tasks_per_worker=tasks_per_worker, task_timeout=task_timeout)
        if isinstance(max_nbytes, bool) or not isinstance(max_nbytes, int) or max_nbytes < 0:
            raise InvalidParameterError(f"max_nbytes must be a whole number; got {max_nbytes!r}")
        self.max_nbytes = max_nbytes
        # Workers watch this process and exit if it dies without closing them.
        self._task_context = tasks.JoblibTaskContext(os.getpid())

    def _reset_state(self) -> None:
        super()._reset_state()
        self._start_method = ""
        self._backend = ""

    def _new_resources(self) -> _JoblibResources:
        return _JoblibResources()

    def _start(self, X: np.ndarray, resources: PoolResources) -> list[dict[str, object]]:
        from joblib import Parallel, delayed
        from joblib._parallel_backends import LokyBackend

        assert isinstance(resources, _JoblibResources)
        resources.folder = tempfile.mkdtemp(
            prefix=f"{SEGMENT_PREFIX}joblib_{os.getpid()}_", dir=_temp_root()
        )
        # loky's resource tracker deletes the folder if this process dies without
        # cleaning up (crash, SIGKILL), as it does for joblib's own folders.
        loky_tracker.register(resources.folder, "folder")

        start = time.perf_counter()
        parallel = Parallel(
            n_jobs=self.workers,
            backend=LokyBackend(inner_max_num_threads=1, idle_worker_timeout=IDLE_WORKER_TIMEOUT),
            max_nbytes=self.max_nbytes,
            mmap_mode="r",
            temp_folder=resources.folder,
            batch_size=1,
            pre_dispatch="all",
        )
        parallel.__enter__()
        resources.parallel = parallel
        warmup = delayed(tasks.joblib_warmup)
        reports = self._run(
            [warmup(None, self._task_context, WARMUP_PAUSE) for _ in range(2 * self.workers)],
            "start-up",
        )
        self._prepare_pool_seconds = time.perf_counter() - start

        start = time.perf_counter()
        # The first call that passes X dumps it to the folder; later calls reuse the file.
        self._run(
            [warmup(X, self._task_context, 0.0) for _ in range(self.workers)], "data placement"
        )
        self._prepare_data_seconds = time.perf_counter() - start

        executor = _executor_of(parallel)
        if executor is None:  # n_jobs=1: joblib's sequential backend, in this process
            self._backend = "sequential"
            return []
        self._backend = "loky"
        context = getattr(executor, "_context", None)
        self._start_method = context.get_start_method() if context is not None else "loky"
        pids = sorted(
            set(getattr(executor, "_processes", {}) or {}) | {int(r["pid"]) for r in reports}
        )
        by_pid = {int(r["pid"]): r for r in reports}
        resources.processes = [psutil.Process(pid) for pid in pids]
        return [by_pid.get(pid, {"pid": pid}) for pid in pids]

    def _new_buffer(self, shape: tuple[int, int]) -> MemmapArray:
        assert isinstance(self._resources, _JoblibResources) and self._resources.folder
        return MemmapArray(self._resources.folder, shape)

    def _chunk_calls(self, step: str, blob: bytes, buffer: object | None) -> list:
        from joblib import delayed

        task = delayed(_TASKS.get(step, tasks.joblib_m_step))
        if buffer is None:
            return [task(self.X, a, b, blob, self._task_context) for a, b in self._chunks]
        out = buffer.ref  # type: ignore[attr-defined]
        return [task(self.X, a, b, blob, out, self._task_context) for a, b in self._chunks]

    def _execute(self, calls: object) -> list:
        resources = self._resources
        assert isinstance(resources, _JoblibResources) and resources.parallel is not None
        return resources.parallel(calls)

    def _is_worker_death(self, failure: BaseException) -> bool:
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        return isinstance(failure, TerminatedWorkerError)

    def _extra_info(self) -> dict[str, object]:
        folder = self._resources.folder if isinstance(self._resources, _JoblibResources) else None
        return {
            "backend": self._backend,
            "start_method": self._start_method,
            "data_sharing": "joblib memmapping" if self._backend == "loky" else "in-process",
            "max_nbytes": self.max_nbytes,
            "mmap_mode": "r",
            "temp_folder": folder,
        }
