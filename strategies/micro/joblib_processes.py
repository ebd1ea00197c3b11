"""``summarize-joblib-processes`` and ``pairwise-joblib-processes``: joblib's loky pool.

``prepare`` writes the vector once into a file in a private folder (in /dev/shm when
it exists, i.e. shared memory) and opens it as a read-only ``np.memmap``; joblib
passes memmap-backed arrays to its workers by reference (file name and offset, never
the data), so each task carries a few hundred bytes. One ``joblib.Parallel`` (loky,
one BLAS/OpenMP thread per worker) is entered in ``prepare``, its workers started by
a first call, and reused by every ``run``: one task per worker, each running the
one-thread kernel on its range. ``close`` leaves the ``Parallel``, stops loky's
workers and deletes the folder (also on an exception in ``prepare`` and at GC).

With ``workers=1`` joblib runs the task in the calling process (its rule for
``n_jobs=1``): no worker is started; :meth:`runtime_info` says ``backend: sequential``.
The 2-worker speed-up of this strategy is therefore over plain in-process work.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import numpy as np

from strategies.micro.base import ProcessMicroStrategy, per_problem, serial_kernel
from strategies.micro.multiprocessing_pool import SEGMENT_PREFIX


def _temp_root() -> str | None:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None


def _task(problem: str, x: np.ndarray, start: int, stop: int) -> float:
    import kernels

    return serial_kernel(kernels.load_micro(), problem)(x, start, stop)


def _pid() -> int:
    return os.getpid()


class _Resources:
    """What a prepared strategy owns; :func:`_release` frees it (close, GC or exit)."""

    def __init__(self) -> None:
        self.pool = None  # the entered joblib.Parallel
        self.folder: str | None = None


def _release(resources: _Resources) -> None:
    parallel, resources.pool = resources.pool, None
    if parallel is not None:
        # joblib has no public handle on the loky executor behind a Parallel.
        executor = getattr(getattr(parallel, "_backend", None), "_workers", None)
        with contextlib.suppress(Exception):
            parallel.__exit__(None, None, None)
        if executor is not None:
            with contextlib.suppress(Exception):
                executor.terminate(kill_workers=False)
    folder, resources.folder = resources.folder, None
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


class _JoblibProcessesMicro(ProcessMicroStrategy):
    family = "joblib-processes"
    _new_resources = staticmethod(_Resources)
    _release = staticmethod(_release)

    def __init__(self, workers: int = 1) -> None:
        super().__init__(workers)
        self._shared: np.ndarray | None = None

    def _setup(self, x: np.ndarray) -> None:
        from joblib import Parallel, delayed
        from joblib._parallel_backends import LokyBackend

        super()._setup(x)
        resources = self._resources
        n = x.shape[0]
        if n:
            resources.folder = tempfile.mkdtemp(
                prefix=f"{SEGMENT_PREFIX}joblib_{os.getpid()}_", dir=_temp_root()
            )
            path = os.path.join(resources.folder, "x.dat")
            writable = np.memmap(path, dtype=np.float64, mode="w+", shape=(n,))
            writable[:] = x
            writable.flush()
            del writable
            self._shared = np.memmap(path, dtype=np.float64, mode="r", shape=(n,))
        else:
            self._shared = x
        resources.pool = Parallel(
            n_jobs=self.workers, backend=LokyBackend(inner_max_num_threads=1), batch_size=1
        )
        resources.pool.__enter__()
        self._pids = sorted(set(resources.pool(delayed(_pid)() for _ in range(self.workers))))

    def _teardown(self) -> None:
        self._shared = None
        super()._teardown()

    def _map(self, pool: object, bounds: list[tuple[int, int]]) -> list[float]:
        from joblib import delayed

        shared = self._shared
        tasks = (delayed(_task)(self.problem, shared, start, stop) for start, stop in bounds)
        return pool(tasks)  # type: ignore[operator]

    def _pool_info(self) -> dict[str, object]:
        in_process = self._pids == [os.getpid()]
        return {
            "backend": "sequential" if in_process else "loky",
            "data_sharing": "memmap" if self._resources.folder else "none",
        }


SummarizeJoblibProcesses, PairwiseJoblibProcesses = per_problem(_JoblibProcessesMicro)
