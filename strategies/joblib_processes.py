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
that does not finish at once takes at least about 10 ms, and each task carries
joblib's batch wrapper (about 5 kB pickled, against about 400 B for the
``multiprocessing`` strategy). Both show at small n; ``python -m harness
bench-processes`` measures them.

With ``workers=1`` joblib runs every task in the calling process (its rule for
``n_jobs=1``): no worker is started and nothing is memmapped; :meth:`runtime_info`
says so (``backend`` is ``"sequential"``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import tempfile
import time
import weakref
from collections.abc import Iterable

import numpy as np
import psutil
from joblib.externals.loky.backend import resource_tracker as loky_tracker

import strategies._process_common as pc
from harness.model.errors import HarnessError, InvalidParameterError, WorkerError
from harness.model.gmm import DerivedParams, SufficientStats
from strategies.base import Strategy

#: joblib's ``max_nbytes`` (bytes): ndarray arguments above it are memmapped. 0
#: shares every X, however small (see the module docstring).
MAX_NBYTES = 0

#: Chunks per worker, as :data:`strategies.multiprocessing_pool.TASKS_PER_WORKER`.
TASKS_PER_WORKER = 2

#: loky stops workers idle for this long; a fit never pauses that long, and the
#: traffic counters follow the workers started in ``prepare``.
IDLE_WORKER_TIMEOUT = 3600

#: Seconds each start-up task sleeps, so that the batch spreads over all workers.
WARMUP_PAUSE = 0.05

#: /dev/shm is used for the temporary folder when it has at least this much room
#: (joblib's own rule, ``SYSTEM_SHARED_MEM_FS_MIN_SIZE``).
SHARED_MEM_MIN_FREE = 2 * 1024**3


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


class _JoblibResources:
    """What a prepared strategy owns; one function releases it (close, GC or exit)."""

    def __init__(self) -> None:
        self.parallel = None
        self.folder: str | None = None
        self.processes: list[psutil.Process] = []
        self.busy = False


def _executor_of(parallel: object) -> object | None:
    # joblib exposes no public handle on the loky executor behind a managed Parallel.
    backend = getattr(parallel, "_backend", None)
    return getattr(backend, "_workers", None)


def _release_joblib(resources: _JoblibResources) -> None:
    """Leave the ``Parallel``, stop loky's workers, delete the folder; never raises."""
    parallel, resources.parallel = resources.parallel, None
    if parallel is not None:
        executor = _executor_of(parallel)
        with contextlib.suppress(Exception):
            parallel.__exit__(None, None, None)
        if executor is not None:
            # MemmappingExecutor.terminate: shut the pool down (killing busy workers
            # after an error or Ctrl-C), then delete joblib's memmap folders.
            with contextlib.suppress(Exception):
                executor.terminate(kill_workers=resources.busy)
    pc.stop_processes(resources.processes, terminate_first=resources.busy)
    resources.processes = []
    if resources.folder is not None:
        shutil.rmtree(resources.folder, ignore_errors=True)
        with contextlib.suppress(Exception):
            loky_tracker.unregister(resources.folder, "folder")
        resources.folder = None


class JoblibProcessesStrategy(Strategy):
    """Data-parallel over row chunks with ``joblib.Parallel(backend=loky)``.

    Parameters
    ----------
    workers : int
        ``n_jobs``; 1 runs in the calling process (joblib's rule).
    use_kernels : bool, optional
        Run the compiled kernels in the workers. Default: when they are built.
    tasks_per_worker : int
    max_nbytes : int
        joblib's memmapping threshold in bytes (:data:`MAX_NBYTES`).
    """

    name = "joblib-processes"
    kind = "processes"
    parallel = True
    releases_gil = False
    has_fused_iteration = True
    description = (
        "joblib Parallel (loky processes) reused for the fit, X memmapped once, "
        "per-chunk statistics back"
    )

    def __init__(
        self,
        workers: int = 1,
        *,
        use_kernels: bool | None = None,
        tasks_per_worker: int = TASKS_PER_WORKER,
        max_nbytes: int = MAX_NBYTES,
    ) -> None:
        super().__init__(workers)
        kernel, reason = pc.load_kernels()
        if use_kernels and kernel is None:
            raise InvalidParameterError(f"use_kernels=True but {reason}")
        self.use_kernels = (kernel is not None) if use_kernels is None else bool(use_kernels)
        # Workers watch this process and exit if it dies without closing them.
        self._task_context = pc.JoblibTaskContext(self.use_kernels, os.getpid())
        for label, value in (("tasks_per_worker", tasks_per_worker), ("max_nbytes", max_nbytes)):
            if (
                isinstance(value, bool)
                or not isinstance(value, int)
                or value < 0
                or (label == "tasks_per_worker" and value < 1)
            ):
                raise InvalidParameterError(
                    f"{label} must be a whole number"
                    f"{' >= 1' if label == 'tasks_per_worker' else ''}"
                    f"; got {value!r}"
                )
        self.tasks_per_worker = tasks_per_worker
        self.max_nbytes = max_nbytes
        self._resources: _JoblibResources | None = None
        self._finalizer: weakref.finalize | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._chunks: list[tuple[int, int]] = []
        self._worker_reports: list[dict[str, object]] = []
        self._traffic: pc.WorkerTraffic | None = None
        self._failure: str | None = None
        self._buffer: np.memmap | None = None
        self._buffer_path: str | None = None
        self._handed_out: weakref.ref | None = None
        self._shift: np.ndarray | None = None
        self._data_mean: np.ndarray | None = None
        self._start_method = ""
        self._backend = ""
        self._prepare_data_seconds: float | None = None
        self._prepare_pool_seconds: float | None = None
        self._log_resp_copies = 0
        self._last_call = ""

    # ---- life cycle -----------------------------------------------------------------

    def _setup(self, X: np.ndarray) -> None:
        from joblib import Parallel, delayed
        from joblib._parallel_backends import LokyBackend

        resources = _JoblibResources()
        self._resources = resources
        self._finalizer = weakref.finalize(self, _release_joblib, resources)
        resources.folder = tempfile.mkdtemp(
            prefix=f"{pc.SEGMENT_PREFIX}joblib_{os.getpid()}_", dir=_temp_root()
        )
        # loky's resource tracker deletes the folder if this process dies without
        # cleaning up (crash, SIGKILL), as it does for joblib's own folders.
        loky_tracker.register(resources.folder, "folder")
        self._data_mean = X.mean(axis=0)

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
        reports = self._call(
            (
                delayed(pc.joblib_warmup)(None, self._task_context, WARMUP_PAUSE)
                for _ in range(2 * self.workers)
            ),
            "start-up",
        )
        self._prepare_pool_seconds = time.perf_counter() - start

        start = time.perf_counter()
        # The first call that passes X dumps it to the folder; later calls reuse the file.
        self._call(
            (delayed(pc.joblib_warmup)(X, self._task_context, 0.0) for _ in range(self.workers)),
            "data placement",
        )
        self._prepare_data_seconds = time.perf_counter() - start

        executor = _executor_of(parallel)
        if executor is None:  # n_jobs=1: joblib's sequential backend, in this process
            self._backend = "sequential"
            self._worker_reports = []
        else:
            self._backend = "loky"
            context = getattr(executor, "_context", None)
            self._start_method = context.get_start_method() if context is not None else "loky"
            pids = sorted(
                set(getattr(executor, "_processes", {}) or {}) | {int(r["pid"]) for r in reports}
            )
            by_pid = {int(r["pid"]): r for r in reports}
            self._worker_reports = [by_pid.get(pid, {"pid": pid}) for pid in pids]
            resources.processes = [psutil.Process(pid) for pid in pids]
            self._traffic = pc.WorkerTraffic(resources.processes)
        self._chunks = pc.chunk_bounds(X.shape[0], self.workers * self.tasks_per_worker)

    def _teardown(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._resources = None
        self._reset_state()

    # ---- running tasks --------------------------------------------------------------

    def _call(self, tasks: Iterable, phase: str) -> list:
        """Run a batch of delayed calls on the managed ``Parallel``.

        Raises
        ------
        WorkerError
            When a task raises or a worker dies (loky's ``TerminatedWorkerError``).
        """
        resources = self._resources
        if resources is None or resources.parallel is None:
            raise InvalidParameterError(f"strategy {self.name!r}: call prepare(X) first")
        if self._failure is not None:
            raise WorkerError(
                f"strategy {self.name!r} cannot continue after a worker failure "
                f"({self._failure}); call prepare(X) again"
            )
        resources.busy = True
        try:
            results = resources.parallel(tasks)
        except HarnessError:
            raise
        except Exception as exc:
            self._failure = (
                f"a joblib worker of strategy {self.name!r} failed during {phase}: "
                f"{type(exc).__name__}: {exc}"
            )
            raise WorkerError(self._failure) from exc
        resources.busy = False
        return results

    # ---- shared output buffer -------------------------------------------------------

    def _writable_buffer(self, k: int) -> np.memmap:
        """The (n, k) memmap, replaced if the caller still holds the last result."""
        n = self.X.shape[0]
        held = self._handed_out is not None and self._handed_out() is not None
        if self._buffer is None or held or self._buffer.shape != (n, k):
            assert self._resources is not None and self._resources.folder is not None
            if self._buffer_path is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._buffer_path)  # pages live on while an array maps them
            self._buffer_path = os.path.join(
                self._resources.folder, f"log_resp_{secrets.token_hex(6)}.mmap"
            )
            self._buffer = np.memmap(self._buffer_path, dtype=np.float64, mode="w+", shape=(n, k))
            self._handed_out = None
        return self._buffer

    def _hand_out(self, buffer: np.memmap) -> np.ndarray:
        lease = pc.Lease(buffer, buffer.ctypes.data, buffer.shape, buffer.dtype)
        self._handed_out = weakref.ref(lease)
        return lease.array()

    def _shared_log_resp(self, log_resp: object) -> np.memmap:
        n = self.X.shape[0]
        array = log_resp if isinstance(log_resp, np.ndarray) else np.asarray(log_resp)
        if array.ndim != 2 or array.shape[0] != n or array.shape[1] < 1:
            raise InvalidParameterError(
                f"log_resp must have shape (n_points, k) = ({n}, k); got {array.shape}"
            )
        buffer = self._buffer
        if buffer is not None and pc.same_buffer(
            array, buffer.ctypes.data, buffer.shape, buffer.dtype
        ):
            return buffer
        if array.dtype.kind not in "fiu":
            raise InvalidParameterError(f"log_resp must hold real numbers; got {array.dtype}")
        buffer = self._writable_buffer(array.shape[1])
        buffer[...] = array
        self._log_resp_copies += 1
        return buffer

    # ---- steps ----------------------------------------------------------------------

    def _check_model(self, derived: DerivedParams) -> None:
        if derived.n_features != self.X.shape[1]:
            raise InvalidParameterError(
                f"parameters have {derived.n_features} features but the data has {self.X.shape[1]}"
            )

    def _begin(self, call: str) -> None:
        if self._traffic is not None and (call != "m_step" or self._last_call != "e_step"):
            self._traffic.begin_iteration()
        self._last_call = call

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        """Workers write their rows' log responsibilities into a shared (n, k) memmap.

        The returned array stays valid while referenced (also after ``close``).
        """
        from joblib import delayed

        self._check_model(derived)
        self._begin("e_step")
        buffer = self._writable_buffer(derived.n_components)
        blob = pc.pack_model(derived)
        sums = self._call(
            (
                delayed(pc.joblib_e_step)(self.X, a, b, blob, buffer, self._task_context)
                for a, b in self._chunks
            ),
            "e_step",
        )
        self._shift = np.array(derived.means)
        return self._hand_out(buffer), float(np.sum(sums)) / self.X.shape[0]

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        """Per-chunk shifted sums from the shared responsibilities, merged in chunk order."""
        from joblib import delayed

        buffer = self._shared_log_resp(log_resp)
        self._begin("m_step")
        k = buffer.shape[1]
        if self._shift is not None and self._shift.shape == (k, self.X.shape[1]):
            shift = self._shift
        else:
            assert self._data_mean is not None
            shift = np.broadcast_to(self._data_mean, (k, self.X.shape[1])).copy()
        blob = pc.pack_array(shift)
        results = self._call(
            (
                delayed(pc.joblib_m_step)(self.X, a, b, blob, buffer, self._task_context)
                for a, b in self._chunks
            ),
            "m_step",
        )
        parts = [
            SufficientStats.from_shifted_sums(mass, s1, s2, shift, b - a)
            for (mass, s1, s2), (a, b) in zip(results, self._chunks, strict=True)
        ]
        return SufficientStats.merge_all(parts)

    def fused_iteration(self, derived: DerivedParams) -> tuple[SufficientStats, float]:
        """One pass: each task returns its chunk's loglik and shifted sums (no n x k)."""
        from joblib import delayed

        self._check_model(derived)
        self._begin("fused")
        blob = pc.pack_model(derived)
        results = self._call(
            (
                delayed(pc.joblib_fused)(self.X, a, b, blob, self._task_context)
                for a, b in self._chunks
            ),
            "fused",
        )
        shift = derived.means
        parts = [
            SufficientStats.from_shifted_sums(mass, s1, s2, shift, b - a)
            for (_, mass, s1, s2), (a, b) in zip(results, self._chunks, strict=True)
        ]
        loglik = float(np.sum([r[0] for r in results])) / self.X.shape[0]
        return SufficientStats.merge_all(parts), loglik

    # ---- report ---------------------------------------------------------------------

    def runtime_info(self) -> dict[str, object]:
        """Backend, start method, kernel path, workers, memmapping, prepare split, traffic."""
        reports = self._worker_reports
        kernels = {str(r["kernel"]) for r in reports if "kernel" in r}
        kernel = (
            kernels.pop()
            if len(kernels) == 1
            else pc.kernel_path(pc.load_kernels()[0] if self.use_kernels else None)
        )
        info: dict[str, object] = {
            "backend": self._backend,
            "start_method": self._start_method,
            "kernel": kernel,
            "workers_started": len(reports),
            "effective_workers": len(reports) if reports else 1,
            "worker_pids": [int(r["pid"]) for r in reports],
            "worker_blas_threads": max(
                (int(r["blas_threads"]) for r in reports if "blas_threads" in r), default=None
            ),
            "worker_openmp_threads": max(
                (int(r["openmp_threads"]) for r in reports if "openmp_threads" in r), default=None
            ),
            "omp_threads": 1,
            "tasks_per_iteration": len(self._chunks),
            "data_sharing": "joblib memmapping" if self._backend == "loky" else "in-process",
            "max_nbytes": self.max_nbytes,
            "mmap_mode": "r",
            "temp_folder": self._resources.folder if self._resources else None,
            "prepare_data_seconds": self._prepare_data_seconds,
            "prepare_pool_seconds": self._prepare_pool_seconds,
            "log_resp_copies": self._log_resp_copies,
        }
        if self._traffic is not None:
            info.update(self._traffic.summary())
        else:
            info.update(bytes_to_workers=None, bytes_from_workers=None, iterations_measured=0)
        return info
