"""The tasks the ``dask`` strategy runs in its worker processes.

Each worker loads the compiled kernels once (:func:`_worker_init`, NumPy's reference
maths where they are not built), reads its block of X from the data file
(:func:`load_block`, the block's lineage) and per iteration computes that block's
statistics on one thread (:func:`fused_task`, :func:`e_step_task`,
:func:`m_step_task`), returning them with the task's own compute time, the worker's
address and the code path that ran. :mod:`strategies.dask_cluster` submits them.

Runs on the workers: may import the model and the kernels, never the client side
(:mod:`strategies.dask_cluster`), the harness's timing or files.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from harness.model.gmm import (
    DerivedParams,
    SufficientStats,
    reference_e_step,
    reference_m_step,
)


class _WorkerSetup:
    kernel: Any = None
    path: str = ""
    ready: bool = False


_WORKER = _WorkerSetup()


def _worker_init() -> None:
    """Once per worker process: BLAS to one thread, load the compiled kernels if built."""
    if _WORKER.ready:
        return
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    try:
        from kernels import gmm_kernels
    except ImportError:
        gmm_kernels = None
    _WORKER.kernel = gmm_kernels
    _WORKER.path = "numpy" if gmm_kernels is None else "cython"
    _WORKER.ready = True


def load_block(path: str, start: int, stop: int) -> np.ndarray:
    """Task: rows ``start:stop`` of the ``.npy`` file at ``path``, as an in-memory array."""
    _worker_init()
    data = np.load(path, mmap_mode="r")
    return np.array(data[start:stop], dtype=np.float64, order="C")


def _address() -> str:
    """This worker's address ("" when a task function is called outside a worker)."""
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:
        return ""


def fused_task(
    block: np.ndarray, derived: DerivedParams
) -> tuple[SufficientStats, float, float, str, str]:
    """Task: (centred stats of the block, log-likelihood sum, compute seconds, worker
    address, kernel path)."""
    _worker_init()
    began = time.perf_counter()
    kernel = _WORKER.kernel
    if kernel is None:
        log_resp, mean_loglik = reference_e_step(block, derived)
        stats, loglik = reference_m_step(block, log_resp), mean_loglik * block.shape[0]
    else:
        k, d = derived.means.shape
        shift = np.ascontiguousarray(derived.means)
        sums = mass, shifted_sum, shifted_outer = np.empty(k), np.empty((k, d)), np.empty((k, d, d))
        log_norm, means, precision = derived.kernel_arrays()
        loglik, _ = kernel.fused(block, log_norm, means, precision, shift, *sums, 1)
        stats = SufficientStats.from_shifted_sums(
            mass, shifted_sum, shifted_outer, shift, block.shape[0]
        )
    seconds = time.perf_counter() - began
    return stats, float(loglik), seconds, _address(), _WORKER.path


def e_step_task(
    block: np.ndarray, derived: DerivedParams
) -> tuple[np.ndarray, float, float, str, str]:
    """Task: (log responsibilities (rows, k), log-likelihood sum, seconds, address, path)."""
    _worker_init()
    began = time.perf_counter()
    kernel = _WORKER.kernel
    if kernel is None:
        log_resp, mean_loglik = reference_e_step(block, derived)
        loglik = mean_loglik * block.shape[0]
    else:
        log_resp = np.empty((block.shape[0], derived.n_components))
        loglik, _ = kernel.e_step(block, *derived.kernel_arrays(), log_resp, 1)
    seconds = time.perf_counter() - began
    return log_resp, float(loglik), seconds, _address(), _WORKER.path


def m_step_task(
    block: np.ndarray, log_resp: np.ndarray, shift: np.ndarray
) -> tuple[SufficientStats, float, float, str, str]:
    """Task: (centred stats of the block, 0.0, seconds, address, path)."""
    _worker_init()
    began = time.perf_counter()
    kernel = _WORKER.kernel
    if kernel is None:
        stats = reference_m_step(block, log_resp)
    else:
        k, d = shift.shape
        mass, shifted_sum, shifted_outer = np.empty(k), np.empty((k, d)), np.empty((k, d, d))
        kernel.m_step(block, log_resp, shift, mass, shifted_sum, shifted_outer, 1)
        stats = SufficientStats.from_shifted_sums(
            mass, shifted_sum, shifted_outer, shift, block.shape[0]
        )
    return stats, 0.0, time.perf_counter() - began, _address(), _WORKER.path


def worker_report() -> dict[str, object]:
    """What a worker runs with (called through ``Client.run``)."""
    from threadpoolctl import threadpool_info

    _worker_init()
    blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    return {"pid": os.getpid(), "kernel": _WORKER.path, "blas_threads": max(blas, default=1)}
