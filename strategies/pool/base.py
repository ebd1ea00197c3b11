"""One base class for the process-pool strategies; the dispatchers differ only in how
they start workers, place X and run a batch of tasks.

In the manner of joblib's backends: :class:`ProcessPoolStrategy` holds what every
process strategy does the same way (argument checks, state reset, model checks,
traffic counting, leased output buffers, the M-step and fused merges in chunk
order, task deadlines, Ctrl-C, the runtime report), and a dispatcher implements a
few hooks:

* :meth:`~ProcessPoolStrategy._start` starts the workers and places X, returning
  the workers' reports;
* :meth:`~ProcessPoolStrategy._chunk_calls` turns one step over the row chunks into
  the dispatcher's calls, and :meth:`~ProcessPoolStrategy._execute` runs them;
* :meth:`~ProcessPoolStrategy._new_buffer` allocates an (n, k) output workers write.

Capability flags are class attributes; hooks with a sensible default have one.
The dispatchers are :class:`strategies.multiprocessing_pool.ExecutorPoolStrategy`
(``concurrent.futures`` and shared memory) and
:class:`strategies.joblib_processes.JoblibProcessesStrategy` (loky and memmaps).
Nothing here times anything for results or writes files.
"""

from __future__ import annotations

import abc
import time
import weakref
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import psutil

from harness.model.errors import HarnessError, InvalidParameterError, WorkerError
from harness.model.gmm import DerivedParams, SufficientStats
from strategies.base import Strategy
from strategies.pool import control
from strategies.pool.chunks import chunk_bounds, kernel_unavailable_reason, pack_array, pack_model

#: Chunks per worker in the data-parallel steps. One would minimise messages, but on
#: a shared machine a worker slowed by another program then holds the whole
#: iteration up; with two, a worker that finishes early takes the next chunk.
#: Messages stay tiny either way (a few hundred bytes out, k(1 + d + d^2) floats back).
TASKS_PER_WORKER = 2

#: Phases whose durations the derived task deadline learns from.
_STEPS = frozenset({"fused", "e_step", "m_step"})


class PoolResources:
    """What a prepared pool owns; :meth:`release` frees it (close, GC or exit).

    Dispatchers subclass it and extend :meth:`release`; it must never raise and must
    be safe to call twice.
    """

    def __init__(self) -> None:
        self.processes: list[psutil.Process] = []
        self.buffers: list[object] = []  # SharedArray or MemmapArray, released last
        self.busy = False  # a call is running: its workers are killed, not waited for
        self.watchdog: control.Watchdog | None = None

    def stop_workers(self) -> None:
        control.stop_processes(self.processes, terminate_first=self.busy)
        self.processes = []

    def release(self) -> None:
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
        self.stop_workers()
        for buffer in self.buffers:
            buffer.release()  # type: ignore[attr-defined]
        self.buffers.clear()


class ProcessPoolStrategy(Strategy):
    """Data-parallel over row chunks on a pool of worker processes.

    Parameters
    ----------
    workers : int
        Worker processes.
    tasks_per_worker : int
        Row chunks per worker in each step (:data:`TASKS_PER_WORKER`).
    task_timeout : float, optional
        Seconds every pool call may take before its stuck workers are killed and the
        fit fails with :class:`~harness.model.errors.WorkerError` naming them.
        Default: ``$GMM_HARNESS_TASK_TIMEOUT`` if set, else derived from the
        measured calls (:class:`~strategies.pool.control.TaskDeadline`).
    """

    kind = "processes"
    parallel = True
    releases_gil = False  # each worker has its own interpreter and GIL
    needs_compiled = True
    has_fused_iteration = True
    #: The code path the workers run (``kernel`` in :meth:`runtime_info`).
    kernel: ClassVar[str] = "cython"
    #: How X reaches the workers (``data_sharing`` in :meth:`runtime_info`).
    data_sharing: ClassVar[str] = ""

    def __init__(
        self,
        workers: int = 1,
        *,
        tasks_per_worker: int = TASKS_PER_WORKER,
        task_timeout: float | None = None,
    ) -> None:
        super().__init__(workers)
        if (
            isinstance(tasks_per_worker, bool)
            or not isinstance(tasks_per_worker, int)
            or tasks_per_worker < 1
        ):
            raise InvalidParameterError(
                f"tasks_per_worker must be an integer >= 1; got {tasks_per_worker!r}"
            )
        self.tasks_per_worker = tasks_per_worker
        self.task_timeout = control.resolve_task_timeout(task_timeout)
        self._resources: PoolResources | None = None
        self._finalizer: weakref.finalize | None = None
        self._latch = control.InterruptLatch()
        self._reset_state()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return kernel_unavailable_reason() if cls.needs_compiled else None

    def _reset_state(self) -> None:
        self._chunks: list[tuple[int, int]] = []
        self._worker_reports: list[dict[str, object]] = []
        self._traffic: control.WorkerTraffic | None = None
        self._deadline = control.TaskDeadline(self.task_timeout)
        self._failure: str | None = None
        self._buffer: object | None = None
        self._handed_out: weakref.ref | None = None
        self._shift: np.ndarray | None = None
        self._data_mean: np.ndarray | None = None
        self._prepare_data_seconds: float | None = None
        self._prepare_pool_seconds: float | None = None
        self._log_resp_copies = 0
        self._last_call = ""

    # ---- dispatcher hooks -----------------------------------------------------------

    @abc.abstractmethod
    def _start(self, X: np.ndarray, resources: PoolResources) -> list[dict[str, object]]:
        """Start the workers and place X; fill ``resources`` as things are created.

        Sets ``_prepare_data_seconds`` and ``_prepare_pool_seconds``; returns one report
        per worker (:func:`strategies.pool.workers.worker_report`), or none when the
        tasks run in this process.
        """

    @abc.abstractmethod
    def _new_resources(self) -> PoolResources:
        """An empty resources object of the dispatcher's own type."""

    @abc.abstractmethod
    def _chunk_calls(self, step: str, blob: bytes, buffer: object | None) -> object:
        """The dispatcher's calls for one step (``fused``, ``e_step``, ``m_step``) over
        :attr:`_chunks`; ``buffer`` is the (n, k) output or input of the step."""

    @abc.abstractmethod
    def _execute(self, calls: object) -> list:
        """Run calls and return their results in order; raise what the pool raised."""

    @abc.abstractmethod
    def _new_buffer(self, shape: tuple[int, int]) -> object:
        """A new (n, k) float64 buffer workers can write (``lease``, ``holds``, ``ref``)."""

    def _dead_workers(self) -> list[int]:
        """Pids of the workers that died (default: those no longer running)."""
        resources = self._resources
        return [p.pid for p in (resources.processes if resources else []) if not control.alive(p)]

    def _is_worker_death(self, failure: BaseException) -> bool:
        """Whether ``failure`` is the pool reporting a dead worker (default: no)."""
        return False

    def _extra_info(self) -> dict[str, object]:
        """Dispatcher-specific keys of :meth:`runtime_info`."""
        return {}

    # ---- life cycle -----------------------------------------------------------------

    def _setup(self, X: np.ndarray) -> None:
        resources = self._new_resources()
        self._resources = resources
        # Registered before anything is created, so that whatever exists is released
        # on close(), when the strategy is garbage-collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, resources.release)
        self._latch.arm()
        self._data_mean = X.mean(axis=0)
        self._worker_reports = self._start(X, resources)
        if resources.processes:
            self._traffic = control.WorkerTraffic(resources.processes)
            resources.watchdog = control.Watchdog(resources.processes)
        self._chunks = chunk_bounds(X.shape[0], self.workers * self.tasks_per_worker)

    def _teardown(self) -> None:
        self._latch.uninstall()
        if self._finalizer is not None:
            self._finalizer()
        self._finalizer = None
        self._resources = None
        self._reset_state()

    # ---- running calls --------------------------------------------------------------

    def _run(self, calls: object, phase: str) -> list:
        """Run a batch of calls under the task deadline; results in submission order.

        Raises
        ------
        WorkerError
            As soon as a task raises, a worker dies or the deadline passes; the pool
            is then unusable until the next ``prepare`` (``close`` stops what runs).
        KeyboardInterrupt
            On Ctrl-C, also one that was swallowed on its way (see
            :class:`~strategies.pool.control.InterruptLatch`).
        """
        resources = self._resources
        if resources is None:
            raise InvalidParameterError(f"strategy {self.name!r}: call prepare(X) first")
        if self._failure is not None:
            raise WorkerError(
                f"strategy {self.name!r} cannot continue after a worker failure "
                f"({self._failure}); call prepare(X) again"
            )
        self._latch.check()
        watchdog = resources.watchdog
        resources.busy = True
        if watchdog is not None:
            watchdog.arm(self._deadline.limit())
        start = time.monotonic()
        try:
            results = self._execute(calls)
        except (KeyboardInterrupt, HarnessError):
            raise
        except Exception as exc:
            raise self._worker_error(exc, phase) from exc
        finally:
            if watchdog is not None:
                watchdog.disarm()
        if phase in _STEPS:  # start-up includes starting processes: not a step's cost
            self._deadline.record(time.monotonic() - start)
        resources.busy = False
        self._latch.check()
        return results

    def _worker_error(self, failure: BaseException, phase: str) -> WorkerError:
        resources = self._resources
        watchdog = resources.watchdog if resources is not None else None
        stuck = watchdog.describe() if watchdog is not None else None
        if stuck is not None:
            message = f"{stuck}, during {phase} of strategy {self.name!r}"
        elif self._is_worker_death(failure):
            dead = self._dead_workers()
            who = f"worker process(es) {dead}" if dead else "a worker process"
            message = (
                f"{who} of strategy {self.name!r} died during {phase} "
                f"({type(failure).__name__}: {failure})"
            )
        else:
            message = (
                f"a worker of strategy {self.name!r} failed during {phase}: "
                f"{type(failure).__name__}: {failure}"
            )
        self._failure = message
        return WorkerError(message)

    # ---- output buffers ------------------------------------------------------------

    def _writable_buffer(self, k: int) -> object:
        """The (n, k) output buffer, replaced if the caller still holds the last result.

        ``e_step`` returns an array on this buffer. Reusing it saves mapping and
        faulting in n x k fresh pages every iteration (the EM driver drops the array
        after ``m_step``), but it must never overwrite an array someone still holds.
        """
        n = self.X.shape[0]
        held = self._handed_out is not None and self._handed_out() is not None
        buffer = self._buffer
        if buffer is None or held or buffer.shape != (n, k):  # type: ignore[attr-defined]
            assert self._resources is not None
            if buffer is not None:
                buffer.release()  # type: ignore[attr-defined]
                self._resources.buffers.remove(buffer)
            buffer = self._new_buffer((n, k))
            self._resources.buffers.append(buffer)
            self._buffer = buffer
            self._handed_out = None
        return buffer

    def _hand_out(self, buffer: object) -> np.ndarray:
        lease = buffer.lease()  # type: ignore[attr-defined]
        self._handed_out = weakref.ref(lease)
        return lease.array()

    def _shared_log_resp(self, log_resp: object) -> object:
        """A buffer workers can read holding ``log_resp``: ours as it is, or a copy."""
        n = self.X.shape[0]
        array = log_resp if isinstance(log_resp, np.ndarray) else np.asarray(log_resp)
        if array.ndim != 2 or array.shape[0] != n or array.shape[1] < 1:
            raise InvalidParameterError(
                f"log_resp must have shape (n_points, k) = ({n}, k); got {array.shape}"
            )
        if self._buffer is not None and self._buffer.holds(array):  # type: ignore[attr-defined]
            return self._buffer
        if array.dtype.kind not in "fiu":
            raise InvalidParameterError(f"log_resp must hold real numbers; got {array.dtype}")
        buffer = self._writable_buffer(array.shape[1])
        buffer.lease().array()[...] = array  # type: ignore[attr-defined]
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

    def _merge(self, sums: Sequence[tuple], shift: np.ndarray) -> SufficientStats:
        """Per-chunk shifted sums to centred statistics, merged in chunk order."""
        parts = [
            SufficientStats.from_shifted_sums(mass, s1, s2, shift, b - a)
            for (mass, s1, s2), (a, b) in zip(sums, self._chunks, strict=True)
        ]
        return SufficientStats.merge_all(parts)

    # ---- the steps ------------------------------------------------------------------

    def e_step(self, derived: DerivedParams) -> tuple[np.ndarray, float]:
        """Workers write their rows' log responsibilities into a shared (n, k) buffer.

        The returned array is a view of that buffer, valid for as long as it is
        referenced (also after ``close``); a later ``e_step`` writes into a new buffer
        while it is still held.
        """
        self._check_model(derived)
        self._begin("e_step")
        buffer = self._writable_buffer(derived.n_components)
        sums = self._run(self._chunk_calls("e_step", pack_model(derived), buffer), "e_step")
        self._shift = np.array(derived.means)
        return self._hand_out(buffer), float(np.sum(sums)) / self.X.shape[0]

    def m_step(self, log_resp: np.ndarray) -> SufficientStats:
        """Per-chunk shifted sums from the shared responsibilities, merged in chunk order.

        ``log_resp`` as returned by :meth:`e_step` is read in place; any other array
        is first copied into a shared buffer (counted in ``log_resp_copies``).
        """
        buffer = self._shared_log_resp(log_resp)
        self._begin("m_step")
        shift = self._shift_for(buffer.shape[1])  # type: ignore[attr-defined]
        results = self._run(self._chunk_calls("m_step", pack_array(shift), buffer), "m_step")
        return self._merge(results, shift)

    def fused_iteration(self, derived: DerivedParams) -> tuple[SufficientStats, float]:
        """One pass: each task returns its chunk's loglik and shifted sums (no n x k)."""
        self._check_model(derived)
        self._begin("fused")
        results = self._run(self._chunk_calls("fused", pack_model(derived), None), "fused")
        loglik = float(np.sum([r[0] for r in results])) / self.X.shape[0]
        return self._merge([r[1:] for r in results], derived.means), loglik

    # ---- report ---------------------------------------------------------------------

    def runtime_info(self) -> dict[str, object]:
        """Code path, workers and their threads, prepare split, deadline and traffic.

        ``bytes_to_workers`` / ``bytes_from_workers`` are medians per iteration of the
        bytes the workers read and wrote (see
        :class:`~strategies.pool.control.WorkerTraffic`); None before the first
        iteration. ``task_timeout_seconds`` is the deadline the next call gets.
        """
        reports = self._worker_reports

        def most(key: str) -> int | None:
            return max((int(r[key]) for r in reports if key in r), default=None)  # type: ignore[call-overload]

        kernels = {str(r["kernel"]) for r in reports if "kernel" in r}
        info: dict[str, object] = {
            "kernel": kernels.pop() if len(kernels) == 1 else self.kernel,
            "workers_started": len(reports),
            "effective_workers": len(reports) if reports else 1,
            "worker_pids": [int(r["pid"]) for r in reports],  # type: ignore[call-overload]
            "worker_blas_threads": most("blas_threads"),
            "worker_openmp_threads": most("openmp_threads"),
            "omp_threads": 1,
            "tasks_per_iteration": len(self._chunks),
            "data_sharing": self.data_sharing,
            "prepare_data_seconds": self._prepare_data_seconds,
            "prepare_pool_seconds": self._prepare_pool_seconds,
            "log_resp_copies": self._log_resp_copies,
            "task_timeout_seconds": self._deadline.limit(),
            "task_timeout_fixed": self.task_timeout is not None,
        }
        info.update(self._extra_info())
        if self._traffic is not None:
            info.update(self._traffic.summary())
        else:
            info.update(bytes_to_workers=None, bytes_from_workers=None, iterations_measured=0)
        return info
