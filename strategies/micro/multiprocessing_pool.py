"""``summarize-multiprocessing`` and ``pairwise-multiprocessing``: a process pool.

``prepare`` copies the vector once into a :mod:`multiprocessing.shared_memory`
segment (named ``microh_<parent pid>_<random>`` so a leak is easy to spot in
/dev/shm) and starts a ``multiprocessing.Pool`` of ``workers`` processes (start method
``forkserver`` where it exists, else ``spawn``: never ``fork`` from a parent that may
run OpenMP threads). Each worker maps the segment once, in its initializer, and loads
the one-thread kernel. ``run`` maps one task per worker (a range of elements or rows:
a few dozen bytes each way) and adds the partial sums in task order. ``close`` (also
on an exception in ``prepare``, and when the strategy is garbage-collected) stops the
workers, then closes and unlinks the segment.

The workers run the same compiled kernel as ``*-cython``: what separates this
strategy's speed-up from threads' is the cost of the pool, not the per-element work.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import secrets
import signal
from multiprocessing import shared_memory

import numpy as np

from strategies.micro.base import ProcessMicroStrategy, per_problem, serial_kernel

SEGMENT_PREFIX = "microh_"

#: Seconds ``prepare`` waits for all workers to start before giving up.
STARTUP_TIMEOUT = 120.0


def start_method() -> str:
    """``forkserver`` where available, else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


# ---- worker side ---------------------------------------------------------------------

_WORKER: dict[str, object] = {}


#: Modules the forkserver imports once, so that each worker forked from it starts
#: with NumPy and the kernels loaded (only effective if this process's forkserver has
#: not started yet; harmless otherwise).
FORKSERVER_PRELOAD = ["numpy", "kernels.micro_kernels", "strategies.micro.multiprocessing_pool"]


def _init_worker(segment_name: str | None, n: int, problem: str, barrier: object) -> None:
    """Pool initializer: ignore Ctrl-C (the parent stops the pool), map x, load the kernel."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER["barrier"] = barrier
    import kernels

    _WORKER["kernel"] = serial_kernel(kernels.load_micro(), problem)
    if segment_name is None:
        _WORKER["x"] = np.empty(0)
    else:
        segment = shared_memory.SharedMemory(name=segment_name)
        _WORKER["segment"] = segment
        _WORKER["x"] = np.ndarray((n,), dtype=np.float64, buffer=segment.buf)


def _task(bounds: tuple[int, int]) -> float:
    return _WORKER["kernel"](_WORKER["x"], *bounds)  # type: ignore[operator]


def _started(_: int) -> int:
    """Start-up task: wait until every worker is up (each takes exactly one), give the pid."""
    _WORKER["barrier"].wait(timeout=STARTUP_TIMEOUT)  # type: ignore[attr-defined]
    return os.getpid()


# ---- parent side ---------------------------------------------------------------------


class _Resources:
    """What a prepared strategy owns; :func:`_release` frees it (close, GC or exit)."""

    def __init__(self) -> None:
        self.pool = None
        self.segment: shared_memory.SharedMemory | None = None


def _release(resources: _Resources) -> None:
    pool, resources.pool = resources.pool, None
    if pool is not None:
        # Idle workers hold nothing but the mapping: stopping them at once is safe.
        with contextlib.suppress(Exception):
            pool.terminate()
            pool.join()
    segment, resources.segment = resources.segment, None
    if segment is not None:
        with contextlib.suppress(Exception):
            segment.close()
        with contextlib.suppress(FileNotFoundError):
            segment.unlink()


class _MultiprocessingMicro(ProcessMicroStrategy):
    family = "multiprocessing"
    _new_resources = staticmethod(_Resources)
    _release = staticmethod(_release)

    def _setup(self, x: np.ndarray) -> None:
        super()._setup(x)
        n = x.shape[0]
        resources = self._resources
        name = None
        if n:
            name = f"{SEGMENT_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
            resources.segment = shared_memory.SharedMemory(name=name, create=True, size=x.nbytes)
            np.ndarray((n,), dtype=np.float64, buffer=resources.segment.buf)[:] = x
        method = start_method()
        context = multiprocessing.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(FORKSERVER_PRELOAD)
        barrier = context.Barrier(self.workers)
        resources.pool = context.Pool(
            self.workers, initializer=_init_worker, initargs=(name, n, self.problem, barrier)
        )
        # prepare returns once every worker has started, mapped x and loaded the kernel.
        self._pids = sorted(resources.pool.map(_started, range(self.workers), chunksize=1))

    def _map(self, pool: object, bounds: list[tuple[int, int]]) -> list[float]:
        return pool.map(_task, bounds, chunksize=1)  # type: ignore[attr-defined]

    def _pool_info(self) -> dict[str, object]:
        return {
            "start_method": start_method(),
            "data_sharing": "shared_memory" if self._resources.segment else "none",
        }


SummarizeMultiprocessing, PairwiseMultiprocessing = per_problem(_MultiprocessingMicro)
