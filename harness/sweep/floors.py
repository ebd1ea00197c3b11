"""Measured floors of an EM iteration: the least time the work could take on this machine.

For d = 2 the *exp floor*: NumPy's (SIMD) ``np.exp`` over ``n * k`` values on one
core (one exponential per point and component is the least an E-step does). For
d > 2 the *FLOP floor*: :func:`flops_per_iteration` FLOPs at the one-thread rate of
NumPy's DGEMM (:func:`dgemm_rate`). Either, divided by the workers, is what a
strategy's time per iteration is compared with ("x% of the floor": the floor's time
over the strategy's; 100% is at the floor).

Used by the sweep (measured once per workload size, stored in ``meta.json``) and by
``bench-compiled``. Measures with NumPy only; never touches files or strategies.
"""

from __future__ import annotations

import time

import numpy as np

#: Square size of the DGEMM whose one-thread rate sets the FLOP floor: large enough to
#: run at BLAS's peak (packed, cache-blocked), small enough to time in milliseconds.
DGEMM_SIZE = 512
#: Where a run folder's ``meta.json`` keeps the floors, by :func:`floor_key`.
FLOORS_KEY = "floors"
#: The range of the values the exp floor exponentiates: like the kernels' (log-densities
#: minus their row maximum).
EXP_RANGE = (-30.0, 0.0)


def floor_key(workload: str, n: int) -> str:
    """The key of a workload size's floor in ``meta.json`` (``"schreiber-n4000000"``)."""
    return f"{workload}-n{int(n)}"


def flops_per_iteration(n: int, d: int, k: int) -> float:
    """Useful FLOPs of one EM iteration with full covariances: ``2 n k d (d + 1)``.

    Per point and component, the E-step's product with the triangular precision
    factor, ``(x - mu) @ P``, is ``d (d + 1) / 2`` multiply-adds, and the M-step's
    weighted symmetric scatter ``r (x - m)(x - m)^T`` as many again; each multiply-add
    is two FLOPs. Terms linear in d (norms, means, the exp) are left out: the floor is
    a lower bound.
    """
    return 2.0 * n * k * d * (d + 1)


def dgemm_rate(size: int = DGEMM_SIZE, min_seconds: float = 0.2) -> float:
    """FLOP/s of NumPy's DGEMM on one thread (best of repeated ``size`` x ``size`` products)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size)), rng.standard_normal((size, size))
    out = np.empty((size, size))
    best = np.inf
    with threadpool_limits(limits=1, user_api="blas"):
        np.matmul(a, b, out=out)  # warm-up: BLAS start, pages
        spent = 0.0
        while spent < min_seconds:
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            elapsed = time.perf_counter() - start
            best, spent = min(best, elapsed), spent + elapsed
    return 2.0 * size**3 / best


def exp_values(count: int, seed: int = 0) -> np.ndarray:
    """``count`` float64 values in :data:`EXP_RANGE`, as the exp floor exponentiates."""
    return np.random.default_rng(seed).uniform(*EXP_RANGE, size=count)


def exp_seconds(values: np.ndarray, out: np.ndarray | None = None) -> float:
    """Seconds of one ``np.exp`` over ``values`` (NumPy's ufunc runs on one thread)."""
    out = np.empty_like(values) if out is None else out
    start = time.perf_counter()
    np.exp(values, out=out)
    return time.perf_counter() - start


def measure_floor(n: int, d: int, k: int, repeats: int = 3) -> dict[str, object]:
    """The floor of one EM iteration at ``(n, d, k)`` on one core, measured now.

    Returns
    -------
    dict
        ``kind`` (``"exp"`` or ``"flop"``), ``one_core_ms`` (the floor on one core; on
        W cores it is this over W) and ``basis`` (one sentence: what was measured).
        The exp floor is the best of ``repeats`` timings after a warm-up.
    """
    if d <= 2:
        values = exp_values(n * k)
        out = np.empty_like(values)
        exp_seconds(values, out)  # warm-up: pages
        best = min(exp_seconds(values, out) for _ in range(repeats))
        return {
            "kind": "exp",
            "one_core_ms": best * 1e3,
            "basis": f"np.exp over n*k = {n * k:,} values on one core",
        }
    rate = dgemm_rate()
    flops = flops_per_iteration(n, d, k)
    return {
        "kind": "flop",
        "one_core_ms": flops / rate * 1e3,
        "basis": (
            f"2 n k d (d+1) = {flops / 1e9:.2f} GFLOP at the one-thread DGEMM rate "
            f"({rate / 1e9:.1f} GFLOP/s)"
        ),
    }
