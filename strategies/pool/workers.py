"""Worker side of the process strategies: start-up, the parent watch, and the tasks.

* The ``ProcessPoolExecutor`` dispatcher: :func:`init_worker` (the pool's
  initializer) and the ``*_task`` functions, which find X and the output buffers in
  shared memory (:mod:`strategies.pool.shared`).
* The loky (joblib) dispatcher: the ``joblib_*`` functions, which receive X and the
  outputs as memmaps.

Every worker ignores Ctrl-C (only the parent reacts), holds its BLAS and OpenMP
pools to one thread, and exits within a second once the parent is gone
(:func:`watch_parent`). Nothing here times anything or writes files.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import ModuleType
from typing import NamedTuple

import numpy as np
import psutil

from strategies.pool.chunks import (
    component_log_density,
    component_statistics,
    e_step_rows,
    fused_statistics,
    load_kernels,
    m_step_rows,
    normalise_rows,
    unpack_array,
    unpack_model,
)
from strategies.pool.shared import SharedArrayHandle, attach, detach

#: Seconds a worker waits at the start-up barrier for the others.
STARTUP_TIMEOUT = 120.0


class _WorkerState:
    data: SharedArrayHandle | None = None
    kernel: ModuleType | None = None
    barrier: threading.Barrier | None = None


_WORKER = _WorkerState()


def limit_worker_threads() -> None:
    """Hold this process's BLAS and OpenMP pools to one thread (threadpoolctl).

    The environment variables set at start-up (:func:`worker_thread_env`) already do
    this for libraries loaded after them; this covers libraries a ``fork`` or
    ``forkserver`` child inherited already loaded.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def worker_report(kernel: str) -> dict[str, object]:
    """What a worker runs with: pid, code path, BLAS and OpenMP threads (threadpoolctl)."""
    from threadpoolctl import threadpool_info

    pools = threadpool_info()
    blas = [pool["num_threads"] for pool in pools if pool["user_api"] == "blas"]
    openmp = [pool["num_threads"] for pool in pools if pool["user_api"] == "openmp"]
    return {
        "pid": os.getpid(),
        "kernel": kernel,
        "blas_threads": max(blas, default=1),
        "openmp_threads": max(openmp, default=1),
    }


#: Seconds between a worker's checks that the process that started the pool lives.
PARENT_CHECK_SECONDS = 1.0


_PARENT_WATCH: list[threading.Thread] = []


def _exit_when_parent_dies(parent: psutil.Process) -> None:
    while True:
        time.sleep(PARENT_CHECK_SECONDS)
        try:
            running = parent.is_running() and parent.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            running = False
        if not running:
            os._exit(1)


def watch_parent(parent_pid: int) -> None:
    """In a worker: end this process within a second once ``parent_pid`` is gone.

    A parent that crashes or is killed with SIGKILL runs no clean-up, and neither
    ``ProcessPoolExecutor`` nor loky workers notice: they would wait on their task
    queue forever (loky's only until its idle timeout). Once they exit, the
    resource trackers (multiprocessing's and loky's, which outlive the parent until
    the last process holding their pipe exits) unlink the shared-memory segments
    and delete the memmap folder. Started once per process; does nothing when
    called in the parent itself (joblib runs ``n_jobs=1`` in the calling process).
    """
    if _PARENT_WATCH or parent_pid == os.getpid():
        return
    # psutil.Process remembers the creation time: a recycled pid is not mistaken for it.
    parent = psutil.Process(parent_pid)
    thread = threading.Thread(
        target=_exit_when_parent_dies, args=(parent,), name="parent-watch", daemon=True
    )
    thread.start()
    _PARENT_WATCH.append(thread)


def init_worker(
    data: SharedArrayHandle, use_kernels: bool, barrier: object, parent_pid: int
) -> None:
    """ProcessPoolExecutor initializer: signals, parent watch, kernels, thread limits, map X.

    Ctrl-C reaches every process of the terminal's process group; workers ignore it
    so that only the parent reacts (its ``close()`` stops them), instead of every
    worker printing a traceback and the pool breaking half-way.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch_parent(parent_pid)
    _WORKER.kernel = load_kernels() if use_kernels else None
    limit_worker_threads()
    _WORKER.data = data
    _WORKER.barrier = barrier  # type: ignore[assignment]
    attach(data)


def warmup_task() -> dict[str, object]:
    """First task of every worker: wait until all have started, then report.

    The barrier makes each worker run exactly one warm-up task, so ``prepare``
    returns only once every worker has started, mapped X and limited its threads.
    """
    if _WORKER.barrier is not None:
        _WORKER.barrier.wait(timeout=STARTUP_TIMEOUT)
    return worker_report("numpy" if _WORKER.kernel is None else "cython")


def _data() -> np.ndarray:
    if _WORKER.data is None:
        raise RuntimeError("worker was not initialised with the data")
    return attach(_WORKER.data)


def _kernel() -> ModuleType:
    if _WORKER.kernel is None:
        raise RuntimeError("worker was started without the compiled kernels")
    return _WORKER.kernel


def _output(handle: SharedArrayHandle) -> np.ndarray:
    if _WORKER.data is not None:
        detach(keep=(_WORKER.data.name, handle.name))  # buffers of earlier k
    return attach(handle)


def fused_task(start: int, stop: int, model_blob: bytes) -> tuple:
    """One chunk of the fused iteration; returns ``(loglik_sum, mass, sum, outer)``."""
    return fused_statistics(_data()[start:stop], unpack_model(model_blob), _kernel())


def e_step_task(start: int, stop: int, model_blob: bytes, out: SharedArrayHandle) -> float:
    """One chunk of the E-step, written into the shared output; returns its loglik sum."""
    log_resp = _output(out)
    return e_step_rows(
        _data()[start:stop], unpack_model(model_blob), log_resp[start:stop], _kernel()
    )


def m_step_task(start: int, stop: int, shift_blob: bytes, log_resp: SharedArrayHandle) -> tuple:
    """One chunk of the M-step from the shared responsibilities; returns shifted sums."""
    resp = _output(log_resp)
    return m_step_rows(_data()[start:stop], resp[start:stop], unpack_array(shift_blob), _kernel())


def component_density_task(j: int, model_blob: bytes, out: SharedArrayHandle) -> None:
    """Model-parallel E-step, first phase: column ``j`` of the weighted log densities."""
    component_log_density(_data(), unpack_model(model_blob), j, _output(out))


def normalise_task(start: int, stop: int, out: SharedArrayHandle) -> float:
    """Model-parallel E-step, second phase: normalise a chunk of rows in place."""
    return normalise_rows(_output(out)[start:stop])


def component_stats_task(j: int, log_resp: SharedArrayHandle) -> tuple:
    """Model-parallel M-step: mass, mean and centred scatter of component ``j``."""
    return component_statistics(_data(), _output(log_resp), j)


# --------------------------------------------------------------------------------------
# joblib (loky) worker tasks: arrays arrive as memmaps, passed by file reference
# --------------------------------------------------------------------------------------


class JoblibTaskContext(NamedTuple):
    """What every joblib task carries besides its data: the parent's pid."""

    parent_pid: int


def _joblib_kernel(context: JoblibTaskContext) -> ModuleType:
    """The kernel module; starts the parent watch on a worker's first task."""
    watch_parent(context.parent_pid)
    return load_kernels()


def joblib_warmup(
    X: np.ndarray | None, context: JoblibTaskContext, pause: float
) -> dict[str, object]:
    """Start-up task: load kernels, touch X (so its memmap is in place), report threads."""
    _joblib_kernel(context)
    if X is not None:
        float(X[0, 0])
    time.sleep(pause)  # keeps a worker busy, so the batch reaches every worker
    return worker_report("cython")


def joblib_fused(
    X: np.ndarray, start: int, stop: int, model_blob: bytes, context: JoblibTaskContext
) -> tuple:
    """:func:`fused_task` for joblib: ``X`` is the memmap joblib passed by reference."""
    return fused_statistics(X[start:stop], unpack_model(model_blob), _joblib_kernel(context))


def joblib_e_step(
    X: np.ndarray,
    start: int,
    stop: int,
    model_blob: bytes,
    out: np.ndarray,
    context: JoblibTaskContext,
) -> float:
    """:func:`e_step_task` for joblib: ``out`` is a writable memmap of shape (n, k)."""
    return e_step_rows(
        X[start:stop], unpack_model(model_blob), out[start:stop], _joblib_kernel(context)
    )


def joblib_m_step(
    X: np.ndarray,
    start: int,
    stop: int,
    shift_blob: bytes,
    log_resp: np.ndarray,
    context: JoblibTaskContext,
) -> tuple:
    """:func:`m_step_task` for joblib."""
    return m_step_rows(
        X[start:stop], log_resp[start:stop], unpack_array(shift_blob), _joblib_kernel(context)
    )
