"""A configuration's check: prepare, a few iterations from the common start, the facts.

The measurement process (:mod:`harness.sweep.measure`) runs :func:`run_check` before
any timing: ``prepare`` plus ``check_iterations`` EM iterations (or micro-problem runs,
each answer verified; or, for a library, its own differenced fits in
:mod:`harness.sweep.library_timing`), with BLAS held as the driver holds it and the
peak memory sampled. The first iteration is the budget probe when the spec asks for
one: it runs under a deadline and its extrapolated cost must fit the configuration's
time budget, else :class:`OverBudget`. Whatever fails, the strategy is closed before
the error leaves (:func:`closed_on_failure`).

Imports the model, the sweep's spec and the strategies' registry (through the
measurement); never the runner, the report or the CLI.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from harness.model.errors import HarnessError, NumericalError
from harness.sweep.formats import to_json
from harness.sweep.spec import configuration_seconds, max_iteration_seconds

if TYPE_CHECKING:
    from harness.sweep.measure import Measurement


class OverBudget(BaseException):
    """The first check iteration outlasted what the time budget allows one iteration.

    Raised from a SIGALRM handler anywhere inside the strategy's code, so, like
    :class:`KeyboardInterrupt`, it derives from :class:`BaseException`: the ``except
    Exception`` of a pool's error handling or of a library must not turn it into a
    worker failure.
    """


@contextlib.contextmanager
def closed_on_failure(
    strategy: Any, what: str, allowance: float, time_budget: float
) -> Iterator[None]:
    """Close ``strategy`` when the block raises; name the overrun when the deadline fired.

    Parameters
    ----------
    strategy : Strategy or MicroStrategy
        Prepared (or being prepared) in the block; left open when the block succeeds.
    what : str
        What the probe timed, for the message (``"one iteration"``, ``"one run"``, ...).
    allowance : float
        The probe's deadline in seconds.
    time_budget : float
        The time budget of one process of the configuration, in seconds.
    """
    try:
        yield
    except OverBudget as exc:
        strategy.close()
        if not exc.args:  # the deadline fired: the run took at least the allowance
            raise OverBudget(
                f"{what} at n takes over {allowance:.2f} s, the most a "
                f"process within the time budget of {time_budget:.3g} s per process allows",
                allowance,
                True,
            ) from None
        raise
    except BaseException:
        strategy.close()
        raise


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`OverBudget` in this (main) thread if the block outlasts ``seconds``.

    Pure-Python loops are interrupted on time; a long C call is interrupted when it
    returns (the runner's time limit covers anything that never returns).
    """
    if seconds is None or not math.isfinite(seconds):
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise OverBudget

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def pool_threads(pools: list[dict[str, Any]], user_api: str) -> int | None:
    counts = [
        int(pool["num_threads"])
        for pool in pools
        if pool.get("user_api") == user_api and pool.get("num_threads") is not None
    ]
    return max(counts) if counts else None


def run_check(measurement: Measurement) -> tuple[Any, dict[str, Any]]:
    """Prepare and run ``check_iterations`` EM iterations from the common start.

    The iterations are :func:`harness.sweep.em.em_iteration`, the driver's own, with BLAS
    held to :meth:`~strategies.base.Strategy.blas_threads` as :func:`harness.sweep.em.fit`
    holds it. With ``spec.probe``, the first iteration is also the budget probe: it
    runs under a deadline of :func:`max_iteration_seconds` and its time is
    extrapolated with :func:`configuration_seconds`.

    Returns
    -------
    strategy : Strategy
        Still prepared (open); the caller closes it.
    info : dict
        ``final_loglik``, ``iterations_checked``, ``used_fused``, ``runtime_info``,
        ``blas_threads``, ``omp_threads``, ``thread_pools``, ``peak_pss_bytes``,
        ``check_seconds``, ``iteration_seconds`` (median of the check iterations).

    Raises
    ------
    OverBudget
        With ``spec.probe``, when the first iteration overruns or its estimate
        exceeds the budget; ``args`` are the reason, the iteration's seconds and
        whether it overran (then the seconds are the deadline, a lower bound).
    """
    from harness.sweep.em import em_iteration

    measurement.load()
    if measurement.info.cls.whole_fit:
        from harness.sweep.library_timing import run_library_check

        return run_library_check(measurement)
    spec = measurement.spec
    if spec.problem != "gmm":
        return _run_micro_check(measurement)
    params = measurement.init
    logliks: list[float] = []
    fused = False

    def iteration(strategy: Any) -> None:
        nonlocal params, fused
        fused = bool(strategy.has_fused_iteration)
        params, loglik = em_iteration(strategy, params, fused=fused)
        logliks.append(loglik)

    strategy, observed = _checked_runs(measurement, iteration, "iteration")
    info = {
        "final_loglik": float(logliks[-1]),
        "iterations_checked": len(logliks),
        "used_fused": fused,
        **observed,
    }
    return strategy, info


def _checked_runs(
    measurement: Measurement, step: Callable[[Any], None], what: str
) -> tuple[Any, dict[str, Any]]:
    """Prepare a new strategy and call ``step(strategy)`` ``check_iterations`` times.

    The first call is the budget probe when ``spec.probe`` is set: it runs under the
    deadline of :func:`max_iteration_seconds` and its time, extrapolated with
    :func:`configuration_seconds`, must fit the budget (else :class:`OverBudget`).
    BLAS is held as the driver holds it, peak memory is sampled, and the strategy is
    closed if anything fails.

    Returns
    -------
    strategy : Strategy
        Still prepared (open); the caller closes it.
    observations : dict
        :func:`check_observations` of the runs.
    """
    from harness.model.threads import limit_blas, thread_pools

    spec = measurement.spec
    allowance = max_iteration_seconds(spec) if spec.probe else math.inf
    strategy = measurement.new_strategy()
    seconds: list[float] = []
    sampler = memory_sampler()
    with closed_on_failure(strategy, f"one {what}", allowance, spec.time_budget):
        start = time.perf_counter()
        with sampler or contextlib.nullcontext(), limit_blas(strategy.blas_threads()):
            preparing = time.perf_counter()
            strategy.prepare(measurement.dataset.X)
            measurement.check_prepare_seconds = time.perf_counter() - preparing
            for index in range(spec.check_iterations):
                began = time.perf_counter()
                with deadline(allowance if index == 0 else None):
                    step(strategy)
                seconds.append(time.perf_counter() - began)
                if index == 0 and spec.probe:
                    estimate = configuration_seconds(seconds[0], spec)
                    if estimate > spec.time_budget:
                        raise OverBudget(
                            f"estimated {estimate:.0f} s per process > time budget "
                            f"{spec.time_budget:.3g} s per process (first {what} at n: "
                            f"{seconds[0] * 1e3:.1f} ms)",
                            seconds[0],
                            False,
                        )
            runtime_info = dict(strategy.runtime_info())
            # What the driver holds BLAS to while the strategy runs, read back as it applies.
            pools = thread_pools()
        check_seconds = time.perf_counter() - start
    return strategy, check_observations(sampler, pools, runtime_info, check_seconds, seconds)


def check_observations(
    sampler: Any,
    pools: list[dict[str, Any]],
    runtime_info: dict[str, Any],
    check_seconds: float,
    seconds: list[float],
) -> dict[str, Any]:
    """What every check reports besides its answer: threads, memory, times."""
    peak = math.nan
    if sampler is not None:
        peak = float(getattr(sampler, "peak_bytes", math.nan) or math.nan)
    omp = pool_threads(pools, "openmp")
    if omp is None:  # no OpenMP runtime loaded: what one would get is the environment's
        omp = _int_or_none(os.environ.get("OMP_NUM_THREADS"))
    return {
        "runtime_info": jsonable(runtime_info),
        "blas_threads": pool_threads(pools, "blas"),
        "omp_threads": omp,
        "thread_pools": jsonable(pools),
        "peak_pss_bytes": peak,
        "check_seconds": check_seconds,
        "iteration_seconds": sorted(seconds)[len(seconds) // 2],
    }


#: Registry names whose code path is named after them when they do not report one.
_NAMED_PATHS = {"python": "python", "scipy": "scipy", "sklearn": "sklearn"}


def code_path(cls: Any, runtime_info: dict[str, Any]) -> dict[str, Any]:
    """``kernel`` (the code path that ran) and ``inline`` (no pool) of a checked strategy.

    ``runtime_info()["kernel"]`` when the strategy reports it (the process strategies
    say whether their workers ran the compiled kernels or NumPy); else ``cython`` for a
    strategy that needs the compiled kernels, the library's name for the pure-Python,
    SciPy and scikit-learn strategies, ``numpy`` for the rest. ``inline`` is
    ``runtime_info()["inline"]``, or True when a joblib strategy ran joblib's
    sequential backend (its rule for one worker: no pool at all).
    """
    kernel = runtime_info.get("kernel")
    if not kernel:
        name = str(getattr(cls, "name", ""))
        if getattr(cls, "needs_compiled", False):
            kernel = "cython"
        else:
            kernel = _NAMED_PATHS.get(name, "numpy")
    inline = runtime_info.get("inline")
    if inline is None:
        inline = str(runtime_info.get("backend", "")).lower() == "sequential"
    return {"kernel": str(kernel), "inline": bool(inline)}


def _run_micro_check(measurement: Measurement) -> tuple[Any, dict[str, Any]]:
    """The micro-problems' check: prepare, ``check_iterations`` runs, each answer verified.

    The first run is the budget probe when ``spec.probe`` is set (as the first EM
    iteration is in :func:`run_check`). A wrong answer raises: the configuration is
    recorded as failed with the problem's own message (see
    :mod:`harness.model.problems` for the tolerances).
    """
    from harness.model.problems import get_problem

    spec = measurement.spec
    verify = get_problem(spec.problem).verifier(measurement.dataset.X)
    runs = 0

    def run(strategy: Any) -> None:
        nonlocal runs
        answer = strategy.run()
        runs += 1
        wrong = verify(answer)
        if wrong is not None:
            raise NumericalError(f"wrong answer from {spec.strategy}: {wrong}")

    strategy, observed = _checked_runs(measurement, run, "run")
    return strategy, {
        "final_loglik": math.nan,
        "iterations_checked": runs,
        "used_fused": False,
        **observed,
    }


def memory_sampler() -> Any:
    """``harness.sweep.memory.PeakMemorySampler()`` when it exists and works here, else None."""
    try:
        from harness.sweep.memory import PeakMemorySampler

        return PeakMemorySampler()
    except (ImportError, HarnessError):
        return None


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def jsonable(value: Any) -> Any:
    """Round-trip through JSON (NumPy scalars and other objects become plain values)."""
    return json.loads(to_json(value))
