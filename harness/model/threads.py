"""Thread and core counts, decided in one place.

* :func:`usable_cores`: the CPUs this process may run on (affinity, not the
  machine's total).
* :func:`effective_workers`: the worker count a strategy will use, with a flag when
  it oversubscribes the usable cores (allowed only when asked for).
* :func:`limit_blas`: BLAS/OpenMP pools of the loaded libraries held to a count
  while a block runs (threadpoolctl).
* :func:`thread_env`: environment variables that fix thread pools *before* the
  numeric libraries load, for child processes.

Part of the model layer, which strategies import: it may not import
``strategies`` or anything of ``harness.sweep`` and above.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_info, threadpool_limits

from harness.model.validation import check_workers

#: Variables read by OpenMP runtimes and the BLAS builds NumPy and SciPy ship with.
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


class OversubscriptionWarning(RuntimeWarning):
    """More workers were asked for than there are usable cores."""


def usable_cores() -> int:
    """CPUs this process may run on (respects affinity masks and cgroup cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def effective_workers(requested: int, *, warn: bool = True) -> tuple[int, bool]:
    """The worker count to use and whether it oversubscribes the usable cores.

    The request is honoured exactly (never silently capped): benchmarks must run
    what they say. Oversubscription is reported, with a warning when ``warn``.

    Returns
    -------
    workers : int
    oversubscribed : bool
    """
    workers = check_workers(requested)
    cores = usable_cores()
    oversubscribed = workers > cores
    if oversubscribed and warn:
        warnings.warn(
            f"{workers} workers requested but only {cores} usable core(s); results for this "
            "configuration are flagged as oversubscribed",
            OversubscriptionWarning,
            stacklevel=2,
        )
    return workers, oversubscribed


@contextmanager
def limit_blas(threads: int) -> Iterator[None]:
    """Hold every loaded BLAS library to ``threads`` threads inside the block."""
    with threadpool_limits(limits=check_workers(threads), user_api="blas"):
        yield


def thread_env(threads: int) -> dict[str, str]:
    """Environment for a child process whose numeric libraries must use ``threads``."""
    value = str(check_workers(threads))
    return dict.fromkeys(THREAD_ENV_VARS, value)


def thread_pools() -> list[dict[str, object]]:
    """The loaded BLAS/OpenMP pools and their current sizes (threadpoolctl), for results."""
    keys = ("user_api", "internal_api", "prefix", "num_threads", "version")
    return [{key: pool.get(key) for key in keys} for pool in threadpool_info()]
