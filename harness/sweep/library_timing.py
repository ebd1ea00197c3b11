"""Timing whole-fit (``library``) strategies by differencing fits of different lengths.

A library's EM (:class:`strategies.library.LibraryStrategy`) runs a whole fit per
call, so its cost per iteration is not observable directly. A fit of ``N`` iterations
costs ``T(N) = fixed + N * per_iteration``, where ``fixed`` is everything that does not
repeat per iteration (argument checks, data conversion, the library's own
initialisation, a final E-step). One *pair* is a fit of ``s`` iterations and a fit of
``s + m``, run back to back, the order alternating from pair to pair so that a slow
drift of the machine does not favour either length::

    per_iteration = (T(s + m) - T(s)) / m
    fixed         = T(s) - s * per_iteration

``s`` is :data:`SHORT_ITERATIONS`; ``m`` is chosen once per configuration, before any
timing, so that the ``m`` differenced iterations last at least pyperf's ``min_time``
(the same span any other strategy's timed value lasts), and at least
:data:`MIN_EXTRA_ITERATIONS`.

In a sweep (:mod:`harness.sweep.measure`), a library configuration has the phases
:data:`harness.sweep.results.LIBRARY_PHASES`: ``prepare`` as any strategy, then
``iteration`` and ``fixed``, each pyperf value one pair (``fixed`` replays the pairs
``iteration`` timed: the two are one regression on the same fits). pyperf's loop count does not
apply: a pair of whole fits lasts far longer than the timer resolution that loops
exist to overcome, so each call runs one pair and returns the estimate times ``loops``
(pyperf divides by it again). A pair whose difference is not positive (noise larger
than the ``m`` iterations) is measured again, at most :data:`PAIR_ATTEMPTS` times; a
fixed cost within the noise (an estimate below :data:`FIXED_FLOOR_SECONDS`) is
recorded as that floor, since pyperf keeps positive values only.

The check (:func:`run_library_check`) runs a fit of ``s`` and of ``check_iterations``
iterations, the latter compared with the reference under the library's own
regularisation (:meth:`strategies.library.LibraryStrategy.agreement`): a library that
disagrees fails the configuration with the figures in its error.

:func:`fit_result` is the same differencing for one fit, for
:func:`harness.sweep.em.fit` (``python -m harness fit --strategy sklearn-fit``).

May import the model and the strategies' base; never the runner, report or CLI.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.model.errors import HarnessError, InvalidParameterError
from harness.model.gmm import REG_COVAR, GMMParams
from harness.sweep.check import (
    OverBudget,
    check_observations,
    closed_on_failure,
    deadline,
    memory_sampler,
)

#: Iterations of the short fit of each pair (one: the least work besides the fixed cost).
SHORT_ITERATIONS = 1
#: Fewest extra iterations of the long fit: with one, a single noisy iteration would be
#: the whole difference.
MIN_EXTRA_ITERATIONS = 2
#: Most extra iterations, whatever min_time asks for (bounds the cost of tiny sizes).
MAX_EXTRA_ITERATIONS = 256
#: Pairs tried before a non-positive difference becomes an error.
PAIR_ATTEMPTS = 3
#: What a fixed cost within the noise (estimate <= 0) is recorded as (pyperf keeps
#: positive values only); one nanosecond reads as "nothing measurable".
FIXED_FLOOR_SECONDS = 1e-9


class DifferencingError(HarnessError, RuntimeError):
    """Fits of different lengths did not differ by a positive time (noise dominated)."""


class LibraryDisagreementError(HarnessError, RuntimeError):
    """A library's fit disagrees with the reference beyond its stated tolerance."""


@dataclass(frozen=True)
class Pair:
    """One pair of whole fits: ``short`` and ``long`` iterations, their wall times."""

    short: int
    long: int
    short_seconds: float
    long_seconds: float

    @property
    def per_iteration(self) -> float:
        return (self.long_seconds - self.short_seconds) / (self.long - self.short)

    @property
    def fixed(self) -> float:
        return self.short_seconds - self.short * self.per_iteration


@dataclass(frozen=True)
class Differenced:
    """Pairs of fits and what they say (medians over pairs)."""

    pairs: tuple[Pair, ...]

    @property
    def per_iteration_values(self) -> list[float]:
        return [pair.per_iteration for pair in self.pairs]

    @property
    def fixed_values(self) -> list[float]:
        return [pair.fixed for pair in self.pairs]

    @property
    def per_iteration(self) -> float:
        return _median(self.per_iteration_values)

    @property
    def fixed(self) -> float:
        return _median(self.fixed_values)


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])


def run_pair(
    fit_seconds: Callable[[int], float], short: int, extra: int, *, long_first: bool = False
) -> Pair:
    """One pair: ``fit_seconds(short)`` and ``fit_seconds(short + extra)``, in the given order.

    Parameters
    ----------
    fit_seconds : callable(n_iter) -> float
        Runs one whole fit of ``n_iter`` iterations and returns its wall time.
    short, extra : int
    long_first : bool
        Run the long fit first.
    """
    if short < 1 or extra < 1:
        raise InvalidParameterError(f"need short >= 1 and extra >= 1; got {short}, {extra}")
    long = short + extra
    if long_first:
        long_seconds = fit_seconds(long)
        short_seconds = fit_seconds(short)
    else:
        short_seconds = fit_seconds(short)
        long_seconds = fit_seconds(long)
    return Pair(short, long, float(short_seconds), float(long_seconds))


def difference(
    fit_seconds: Callable[[int], float],
    *,
    pairs: int = 3,
    extra: int = 4,
    short: int = SHORT_ITERATIONS,
) -> Differenced:
    """``pairs`` interleaved pairs of fits (order alternating), each retried while not positive.

    Raises
    ------
    DifferencingError
        When a pair's difference stays non-positive for :data:`PAIR_ATTEMPTS` tries.
    """
    if pairs < 1:
        raise InvalidParameterError(f"pairs must be >= 1; got {pairs}")
    return Differenced(
        tuple(
            positive_pair(fit_seconds, short, extra, long_first=bool(i % 2)) for i in range(pairs)
        )
    )


def positive_pair(
    fit_seconds: Callable[[int], float], short: int, extra: int, *, long_first: bool = False
) -> Pair:
    """:func:`run_pair`, again while the long fit was not the slower (at most PAIR_ATTEMPTS)."""
    for _ in range(PAIR_ATTEMPTS):
        pair = run_pair(fit_seconds, short, extra, long_first=long_first)
        if pair.per_iteration > 0:
            return pair
        long_first = not long_first
    raise DifferencingError(
        f"a fit of {pair.long} iterations was not slower than one of {pair.short} in "
        f"{PAIR_ATTEMPTS} tries ({pair.long_seconds:.4g} s vs {pair.short_seconds:.4g} s): "
        "the noise exceeds the differenced iterations"
    )


def extra_iterations(per_iteration: float, min_time: float) -> int:
    """Extra iterations of the long fit so that they last ``min_time``, within the bounds."""
    if not (math.isfinite(per_iteration) and per_iteration > 0):
        return MIN_EXTRA_ITERATIONS
    wanted = math.ceil(min_time / per_iteration * (1 - 1e-9))  # 5.0000000001 is 5
    return int(min(max(wanted, MIN_EXTRA_ITERATIONS), MAX_EXTRA_ITERATIONS))


# ---- a prepared library strategy, timed ----------------------------------------------


class LibraryTimer:
    """Times one prepared library strategy from one start: pyperf time functions per phase.

    Parameters
    ----------
    strategy : LibraryStrategy
        Prepared.
    init : GMMParams
    timed : callable(call) -> float
        Wall time of one call (the measurement process's, with its slowdown hook).
    min_time : float
        pyperf's minimum seconds per value; sets the extra iterations.
    reg_covar : float
    """

    def __init__(
        self,
        strategy: Any,
        init: GMMParams,
        timed: Callable[[Callable[[], object]], float],
        min_time: float,
        reg_covar: float = REG_COVAR,
    ) -> None:
        self.strategy = strategy
        self.init = init
        self._timed = timed
        self.reg_covar = reg_covar
        self._long_first = False
        # The pairs timed for ``iteration``, in order: ``fixed`` is the same fits'
        # intercept, so its values replay them instead of running fits of their own.
        self._pairs: list[Pair] = []
        self._replayed = 0
        # Untimed warm-up pair: loads the library's code paths and estimates the
        # per-iteration time that sets the extra iterations.
        warm = run_pair(self.fit_seconds, SHORT_ITERATIONS, MIN_EXTRA_ITERATIONS)
        self.extra = extra_iterations(warm.per_iteration, min_time)

    def fit_seconds(self, n_iter: int) -> float:
        return self._timed(lambda: self.strategy.fit(self.init, n_iter, reg_covar=self.reg_covar))

    def pair(self) -> Pair:
        """The next pair, alternating which length runs first."""
        self._long_first = not self._long_first
        return positive_pair(
            self.fit_seconds, SHORT_ITERATIONS, self.extra, long_first=self._long_first
        )

    def time(self, phase: str, loops: int) -> float:
        """pyperf's ``time_func(loops)`` for ``iteration`` or ``fixed``: one pair per call.

        ``fixed`` takes the pairs ``iteration`` timed, one per call in the same order
        (both phases make the same number of calls), and times new pairs only beyond
        them (a pyperf worker process that times ``fixed`` alone).
        """
        if phase == "iteration":
            pair = self.pair()
            self._pairs.append(pair)
            value = pair.per_iteration
        elif phase == "fixed":
            if self._replayed < len(self._pairs):
                pair = self._pairs[self._replayed]
                self._replayed += 1
            else:
                pair = self.pair()
            value = max(pair.fixed, FIXED_FLOOR_SECONDS)
        else:
            raise InvalidParameterError(f"library strategies have no phase {phase!r}")
        return value * loops


# ---- the check ------------------------------------------------------------------------


def library_configuration_seconds(
    per_iteration: float, fixed: float, spec: Any, calls_per_phase: int
) -> float:
    """Estimated seconds of a library configuration's timed work (cf. ``configuration_seconds``).

    Each timed call of ``iteration`` is one pair: two fixed costs, ``2 s`` iterations
    and the extra iterations (at least ``min_time``); ``fixed`` replays those pairs in
    the in-process modes and times its own in pyperf's worker processes; ``prepare``
    is counted at ``min_time`` per call.
    """
    t, f = max(per_iteration, 0.0), max(fixed, 0.0)
    extra = extra_iterations(t, spec.min_time)
    pair = 2 * f + (2 * SHORT_ITERATIONS + extra) * t
    timed_phases = 1 if spec.processes == 0 else 2
    return (
        (spec.check_iterations + SHORT_ITERATIONS) * t
        + 2 * f
        + calls_per_phase * (timed_phases * pair + spec.min_time)
    )


def run_library_check(measurement: Any) -> tuple[Any, dict[str, Any]]:
    """The measurement process's check for a library strategy (see the module docstring).

    Same contract as :func:`harness.sweep.check.run_check`: returns the prepared
    strategy and the check's facts; raises :class:`~harness.sweep.check.OverBudget` on
    the budget probe and :class:`LibraryDisagreementError` when the fit disagrees with
    the reference.

    Parameters
    ----------
    measurement : harness.sweep.measure.Measurement
    """
    from harness.model.threads import limit_blas, thread_pools
    from harness.sweep.spec import calls_per_phase, max_iteration_seconds

    spec = measurement.spec
    init = measurement.init
    n_check = max(int(spec.check_iterations), SHORT_ITERATIONS + 1)
    strategy = measurement.new_strategy()
    sampler = memory_sampler()
    allowance = max_iteration_seconds(spec) if spec.probe else math.inf
    guard = closed_on_failure(strategy, "a fit of one iteration", allowance, spec.time_budget)
    with guard:
        start = time.perf_counter()
        with sampler or contextlib.nullcontext(), limit_blas(strategy.blas_threads()):
            strategy.prepare(measurement.dataset.X)
            began = time.perf_counter()
            # The budget probe: a fit of one iteration costs at least one iteration.
            with deadline(allowance):
                strategy.fit(init, SHORT_ITERATIONS)
            short_seconds = time.perf_counter() - began
            began = time.perf_counter()
            result = strategy.fit(init, n_check)
            long_seconds = time.perf_counter() - began
            pair = Pair(SHORT_ITERATIONS, n_check, short_seconds, long_seconds)
            per_iteration = pair.per_iteration if pair.per_iteration > 0 else long_seconds / n_check
            if spec.probe:
                estimate = library_configuration_seconds(
                    per_iteration, max(pair.fixed, 0.0), spec, calls_per_phase(spec)
                )
                if estimate > spec.time_budget:
                    raise OverBudget(
                        f"estimated {estimate:.0f} s per process > time budget "
                        f"{spec.time_budget:.3g} s per process "
                        f"(differenced iteration at n: {per_iteration * 1e3:.1f} ms, "
                        f"fixed cost {pair.fixed * 1e3:.1f} ms)",
                        per_iteration,
                        False,
                    )
            runtime_info = dict(strategy.runtime_info())
            pools = thread_pools()
        check_seconds = time.perf_counter() - start
        if result.iterations != n_check:
            raise LibraryDisagreementError(
                f"{strategy.name} ran {result.iterations} iterations when asked for {n_check}"
            )
        agreement = strategy.agreement(result, init)
        if not agreement.agrees:
            raise LibraryDisagreementError(f"{strategy.name} {agreement.describe()}")
    runtime_info.update(
        agreement=agreement.describe(),
        agreement_difference=agreement.difference,
        agreement_tolerance=agreement.tolerance,
        reference_reg_covar=agreement.reference_reg_covar,
    )
    info = {
        "final_loglik": float(result.mean_loglik),
        "iterations_checked": int(result.iterations),
        "used_fused": False,
        "whole_fit": True,
        **check_observations(sampler, pools, runtime_info, check_seconds, [per_iteration]),
        "fixed_seconds": pair.fixed,
    }
    return strategy, info


# ---- one fit for the driver -----------------------------------------------------------


def fit_result(
    strategy: Any,
    X: Any,
    init: GMMParams,
    *,
    max_iter: int,
    tol: float | None,
    reg_covar: float,
    on_iteration: Callable[[int, float, float], None] | None,
) -> Any:
    """:func:`harness.sweep.em.fit` for a whole-fit strategy.

    Runs the requested fit and, before it, a fit of one iteration; the per-iteration
    time is their difference over the extra iterations (every entry of
    ``iteration_seconds`` is that one figure) and ``fixed_seconds`` the rest of the
    one-iteration fit. With one iteration the two cannot be told apart:
    ``iteration_seconds`` is the whole fit and ``fixed_seconds`` NaN. ``loglik`` holds
    the final mean log-likelihood only (the library reports no other).
    """
    from harness.model.threads import limit_blas
    from harness.sweep.em import FitResult

    result = FitResult(strategy.name, strategy.workers, init, init, whole_fit=True)
    with limit_blas(strategy.blas_threads()):
        start = time.perf_counter()
        strategy.prepare(X)
        result.prepare_seconds = time.perf_counter() - start
        short_seconds = math.nan
        if max_iter > SHORT_ITERATIONS:
            start = time.perf_counter()
            strategy.fit(init, SHORT_ITERATIONS, reg_covar=reg_covar)
            short_seconds = time.perf_counter() - start
        start = time.perf_counter()
        fitted = strategy.fit(init, max_iter, reg_covar=reg_covar, tol=tol)
        seconds = time.perf_counter() - start
        iterations = fitted.iterations
        if iterations > SHORT_ITERATIONS and math.isfinite(short_seconds):
            pair = Pair(SHORT_ITERATIONS, iterations, short_seconds, seconds)
            per_iteration, fixed = pair.per_iteration, pair.fixed
        else:
            per_iteration, fixed = seconds / max(iterations, 1), math.nan
        result.iteration_seconds = [per_iteration] * iterations
        result.loglik = [fitted.mean_loglik]
        result.fixed_seconds = fixed
        result.converged = fitted.converged
        result.final = fitted.params
        result.runtime_info = dict(strategy.runtime_info())
    if on_iteration is not None:
        on_iteration(iterations - 1, fitted.mean_loglik, per_iteration)
    return result
